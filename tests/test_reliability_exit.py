"""Exit paths: SIGINT, SIGTERM and SIGHUP during a run end every agent span saying so.

The ``orchestrace`` command runs in subprocesses (started together) with asyncio debug mode
on; each is signalled mid-run once its live output shows the run is under way. The process
must exit promptly with the conventional code, print the summary so far, leave a complete
spans file in which every agent span ends as interrupted, and leave no task pending. The
same interrupt is then driven in-process under fake time, for both scenarios.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import Traced

from runtime.agent import RunConfig
from runtime.hub import AgentState
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.otlp_json import iter_spans_file
from telemetry.records import SpanRecord

#: A signalled run must be gone this soon (it flushes a local file, nothing else). A hang
#: detector, generous for a loaded 2-core machine where three interpreters run at once.
EXIT_BOUND = 60.0
CLI = [sys.executable, "-m", "runtime.cli"]
#: (scenario, signal, the live line after which to send it, scripted latency)
RUNS = {
    "spawn-SIGINT": ("spawn", signal.SIGINT, "  [lead] get_status(", "0.05"),
    "spawn-SIGTERM": ("spawn", signal.SIGTERM, "  [lead] get_status(", "0.05"),
    "team-SIGTERM": ("team", signal.SIGTERM, "trace id:", "1"),
    # the terminal closed or the ssh connection dropped
    "spawn-SIGHUP": ("spawn", signal.SIGHUP, "  [lead] get_status(", "0.05"),
}


@dataclass
class Interrupted:
    """One signalled run: output, exit code, seconds from signal to exit, spans."""

    returncode: int | None = None
    exit_seconds: float | None = None
    stdout: str = ""
    stderr: str = ""
    spans: list[SpanRecord] = field(default_factory=list)


def _interrupt(
    scenario: str, sig: signal.Signals, after: str, latency: str, spans_file: Path
) -> tuple[subprocess.Popen[str], threading.Event, list[str], threading.Thread]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    env |= {"PYTHONUNBUFFERED": "1", "PYTHONASYNCIODEBUG": "1"}
    proc = subprocess.Popen(
        [*CLI, "run", scenario, "--latency", latency, "--spans-file", str(spans_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    signalled = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(after) and not signalled.is_set():
                proc.send_signal(sig)
                signalled.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, signalled, lines, reader


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Interrupted]]:
    started = {
        key: (_interrupt(scenario, sig, after, latency, path), path)
        for key, (scenario, sig, after, latency) in RUNS.items()
        for path in [tmp_path_factory.mktemp(key) / "spans.jsonl"]
    }
    results: dict[str, Interrupted] = {}
    try:
        for key, ((proc, signalled, lines, reader), path) in started.items():
            result = results[key] = Interrupted()
            if not signalled.wait(timeout=120):  # interpreter startup, four at once
                continue
            at = time.monotonic()
            try:
                proc.wait(timeout=EXIT_BOUND)
                result.exit_seconds = time.monotonic() - at
                result.returncode = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)  # it has read the last lines
            assert proc.stderr is not None
            result.stderr = proc.stderr.read()
            result.stdout = "".join(lines)
            result.spans = list(iter_spans_file(path)) if path.exists() else []
        yield results
    finally:
        for (proc, _, _, _), _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.mark.parametrize("key", list(RUNS))
def test_a_signal_ends_the_run_promptly_with_the_conventional_code(
    interrupted: dict[str, Interrupted], key: str
) -> None:
    run = interrupted[key]
    sig = RUNS[key][1]
    assert run.exit_seconds is not None, "not signalled, or did not exit in time"
    assert run.returncode == 128 + int(sig)
    assert f"[interrupted by {sig.name}]" in run.stdout
    assert re.search(
        rf"^Run {RUNS[key][0]} · trace \S+ · \d+ spans · \S+ · interrupted$", run.stdout, re.M
    )


@pytest.mark.parametrize("key", list(RUNS))
def test_every_agent_span_ends_saying_it_was_interrupted(
    interrupted: dict[str, Interrupted], key: str
) -> None:
    run = interrupted[key]
    sig = RUNS[key][1]
    created = int(re.search(r"· (\d+) spans ·", run.stdout).group(1))  # type: ignore[union-attr]
    assert len(run.spans) == created  # the spans file was flushed, completely
    agents = [s for s in run.spans if s.name.startswith("invoke_agent ")]
    expected = 4 if RUNS[key][0] == "spawn" else 3  # spawn: the lead and three helpers
    assert len(agents) == expected
    for span in agents:
        assert span.attributes["orchestrace.agent.end_reason"] == f"interrupted:{sig.name}"
        assert span.attributes["orchestrace.agent.state"] == "killed"
        assert span.status == "ERROR"
    (workflow,) = [s for s in run.spans if s.name.startswith("invoke_workflow ")]
    assert workflow.attributes["orchestrace.run.outcome"] == "interrupted"
    assert all(s.end_ns >= s.start_ns for s in run.spans)


@pytest.mark.parametrize("key", list(RUNS))
def test_no_task_is_left_pending_and_nothing_is_dumped(
    interrupted: dict[str, Interrupted], key: str
) -> None:
    stderr = interrupted[key].stderr
    for symptom in ("Task was destroyed but it is pending", "was never awaited", "Traceback"):
        assert symptom not in stderr


# --- the same interrupt, in-process, under fake time -------------------------------------------
@pytest.mark.parametrize("scenario", ["spawn", "team"])
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_an_interrupt_mid_run_ends_every_agent_and_leaves_no_task(
    traced: Traced, scenario: str
) -> None:
    run = traced.context(model=ScriptedModel(latency=1), config=RunConfig(model="m"))
    task = asyncio.create_task(run_scenario(scenario, run))
    await asyncio.sleep(3.5)  # spawn: helpers are sleeping; team: waiting for replies
    run.interrupted = "SIGINT"  # what the CLI's signal handler does
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(asyncio.all_tasks()) == 1
    agents = traced.named("invoke_agent ")
    assert len(agents) == (4 if scenario == "spawn" else 3)
    for span in agents:
        attrs = span.attributes or {}
        assert attrs["orchestrace.agent.end_reason"] == "interrupted:SIGINT"
        assert span.status.status_code.name == "ERROR"
    assert all(state is AgentState.KILLED for state in run.hub.states().values())
    (workflow,) = traced.named("invoke_workflow ")
    assert (workflow.attributes or {})["orchestrace.run.outcome"] == "interrupted"
    assert all(s.end_time is not None for s in traced.spans)
