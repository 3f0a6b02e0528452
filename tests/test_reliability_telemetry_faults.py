"""Telemetry faults: a collector that is down, failing or stalled never holds the run.

The ``orchestrace`` command runs in subprocesses (started together, so the file costs the
slowest of them, not their sum) against an in-process OTLP receiver in each fault mode.
Each run must finish normally, write every span to its spans file, say which spans it could
not export, and exit within a few seconds of its own end. The export queue overflowing is
counted, and ``OTEL_SDK_DISABLED=true`` runs with no telemetry at all.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver
from support import make_run

from runtime.agent import RunConfig
from runtime.cli import main
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.liveness import PROBE_SECONDS
from telemetry.otlp_json import iter_spans_file
from telemetry.setup import setup_telemetry

SHUTDOWN_TIMEOUT = 1.0  # ORCHESTRACE_SHUTDOWN_TIMEOUT for these runs
#: The erroring receiver answers the exit's probe (telemetry/liveness.py), so the exit
#: waits while the exporter retries it, up to the exporter's own timeout: set to this.
ERROR_RETRY_SECONDS = 2.0
#: How long after its run starts a process may take to exit: the run itself (~0.3 s), the
#: bounded telemetry shutdown, and slack for a loaded machine.
EXIT_BOUND = 5.0 + PROBE_SECONDS + ERROR_RETRY_SECONDS
FAULTS = [("down", "grpc"), ("error", "grpc"), ("stall", "http/protobuf")]
RUNS = [("ok", "grpc"), *FAULTS]  # a healthy collector is the control
#: Processes still running this long after launch are killed (and fail the exit test). A
#: hang detector only: four interpreters start at once, and on a loaded 2-core machine that
#: alone took longer than 8 s. The exit bound above is measured from the run's start.
DEADLINE = 120.0
CLI_RUN = [sys.executable, "-m", "runtime.cli", "run", "spawn", "--quiet", "--time-scale", "0"]
CLI_RUN += ["--latency", "0"]


@dataclass
class Finished:
    """A subprocess run: its output lines with arrival times, and how it ended."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    returncode: int | None = None
    exited_at: float | None = None  # None: killed at the deadline
    stderr: str = ""
    spans_file: Path | None = None

    @property
    def stdout(self) -> str:
        return "".join(line for _, line in self.lines)

    def time_of(self, prefix: str) -> float:
        return next(t for t, line in self.lines if line.startswith(prefix))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    return env | {"PYTHONUNBUFFERED": "1"} | extra


@pytest.fixture(scope="module")
def fault_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Finished]]:
    """Start one run per fault mode at once; wait for all (killing any that overstay)."""
    receivers: list[OTLPReceiver] = []
    procs: dict[str, tuple[subprocess.Popen[str], Finished, threading.Thread]] = {}
    try:
        for mode, protocol in RUNS:
            if mode == "down":
                endpoint = f"127.0.0.1:{_free_port()}"
            else:
                receiver = OTLPReceiver().start()
                receivers.append(receiver)
                receiver.mode = mode  # type: ignore[assignment]
                grpc = protocol == "grpc"
                endpoint = receiver.grpc_endpoint if grpc else receiver.http_endpoint
            done = Finished(spans_file=tmp_path_factory.mktemp(mode) / "spans.jsonl")
            proc = subprocess.Popen(
                [*CLI_RUN, "--spans-file", str(done.spans_file)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(
                    OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                    OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                    OTEL_EXPORTER_OTLP_INSECURE="true",
                    ORCHESTRACE_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT),
                    **(
                        {"OTEL_EXPORTER_OTLP_TIMEOUT": str(ERROR_RETRY_SECONDS)}
                        if mode == "error"
                        else {}
                    ),
                ),
            )

            def read(proc: subprocess.Popen[str] = proc, done: Finished = done) -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    done.lines.append((time.monotonic(), line))
                # Each process's own exit time (waiting on them in turn would give a fast
                # one the exit time of a slower one before it).
                proc.wait()
                done.exited_at = time.monotonic()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            procs[mode] = (proc, done, reader)
        deadline = time.monotonic() + DEADLINE
        for proc, done, reader in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                done.returncode = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                reader.join(timeout=5)
                done.exited_at = None  # killed at the deadline
            reader.join(timeout=5)
            assert proc.stderr is not None
            done.stderr = proc.stderr.read()
        yield {mode: done for mode, (_, done, _) in procs.items()}
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for receiver in receivers:
            receiver.close()


@pytest.mark.parametrize("mode", [m for m, _ in FAULTS])
def test_the_run_finishes_normally_and_reports_what_it_could_not_export(
    fault_runs: dict[str, Finished], mode: str
) -> None:
    run = fault_runs[mode]
    text = run.stdout
    assert "[lead final answer]\nSummary: All 3 helpers" in text
    created = int(re.search(r"· (\d+) spans ·", text).group(1))  # type: ignore[union-attr]
    # the spans file is written first and completely, whatever the collector does
    assert run.spans_file is not None
    assert len(list(iter_spans_file(run.spans_file))) == created
    problem = re.search(r"^telemetry: otlp/\S+: (\d+) of (\d+) spans exported", text, re.M)
    assert problem is not None, text
    assert (int(problem.group(1)), int(problem.group(2))) == (0, created)
    if mode == "stall":  # the export never returned: nothing can be called dropped for sure
        assert re.search(
            r"spans exported \(0 failed to export, \d+ dropped or still queued at "
            r"the shutdown deadline\)$",
            text,
            re.M,
        ), text


@pytest.mark.parametrize("mode", ["ok", *(m for m, _ in FAULTS)])
def test_the_process_exits_within_a_few_seconds_of_its_end(
    fault_runs: dict[str, Finished], mode: str
) -> None:
    run = fault_runs[mode]
    assert run.exited_at is not None, "still running at the deadline"
    assert run.returncode == 0
    assert run.exited_at - run.time_of("trace id:") < EXIT_BOUND
    if mode == "ok":
        assert "telemetry: otlp" not in run.stdout  # every span got out: nothing to report


def test_a_full_export_queue_is_counted_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with OTLPReceiver() as receiver:
        receiver.mode = "stall"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        # one span per export; the first export stalls, four more fit in the queue
        monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
        telemetry = setup_telemetry(set_global=False)
        run = make_run(
            telemetry,
            model=ScriptedModel(latency=0),
            config=RunConfig(model="m", sleep=lambda _s: asyncio.sleep(0)),
            run_id="overflow",
        )
        ids: list[str] = []
        asyncio.run(run_scenario("spawn", run, on_start=ids.append))
        assert receiver.wait_for_stalled(1)
        receiver.mode = "ok"
        receiver.release()
        with caplog.at_level(logging.WARNING):
            assert telemetry.shutdown(timeout=10)  # nothing is stuck: the rest was dropped
            problems = telemetry.export_problems()
        created = telemetry.ended.count if telemetry.ended is not None else 0
        exported = len(receiver.spans())
        # what got out: the stalled export and what the queue held; the rest was dropped
        assert 0 < exported <= 5 < created
        assert problems == [
            f"otlp/http/protobuf: {exported} of {created} spans exported (0 failed to export, "
            f"{created - exported} dropped: export queue full, raise OTEL_BSP_MAX_QUEUE_SIZE)"
        ]
        assert any("spans not exported" in r.getMessage() for r in caplog.records)


def test_sdk_disabled_runs_with_no_telemetry_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        path = tmp_path / "spans.jsonl"
        out = io.StringIO()
        code = main(
            ["run", "spawn", "--time-scale", "0", "--latency", "0", "--spans-file", str(path)],
            out=out,
        )
        text = out.getvalue()
        assert code == 0
        assert "[lead final answer]\nSummary: All 3 helpers" in text
        assert "(telemetry disabled: no summary)" in text
        assert "telemetry:" not in text  # no exporter was set up
        assert not path.exists()
        assert receiver.request_count() == 0
