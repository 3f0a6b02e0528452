"""The benchmark keeps working: ``python -m bench --size tiny`` runs, and every count matches.

Only correctness is asserted (spans created = exported, messages sent = delivered, nothing
dropped, the JSON has its keys) — never a timing: timings belong to the benchmark's report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ["off", "otlp", "otlp+file"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench-tiny.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Correctness: all counts match, nothing dropped" in done.stdout
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
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
    assert set(results) >= {"overhead", "runs", "sdk_floor", "scale", "throughput", "summary"}


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
