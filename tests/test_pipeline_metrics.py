"""The telemetry pipeline's own health, and agents blocked in wait_for_message, as metrics.

Spans ended, exported, failed and dropped per exporter, and metric points exported and
failed, are observable counters read from the exporters' own counts; a run whose span
exporter fails (or stalls, or overflows its queue) shows it in the metrics a healthy metrics
pipeline receives — here the in-process OTLP receiver, traces and metrics on separate
receivers so that one can fail while the other works. The console report at exit says the
same. Agents waiting, and the longest wait in progress, come from the hub's register of
open waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OTLPReceiver, ReceivedMetric, attributes_to_dict
from prometheus_client.parser import text_string_to_metric_families
from support import make_run

from runtime.agent import RunConfig
from runtime.hub import AgentState, Envelope, Hub
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry import semconv as sc
from telemetry.export import CountingSpanExporter, SpanCounter, count_drops
from telemetry.metrics import Instruments
from telemetry.setup import Telemetry, setup_telemetry
from telemetry.spans import ContentPolicy
from telemetry.waits import OPEN_WAITS, OpenWaits

EXPORTER = sc.TELEMETRY_EXPORTER


async def _instant(_seconds: float) -> None:
    await asyncio.sleep(0)


def run_spawn(telemetry: Telemetry) -> None:
    run = make_run(
        telemetry,
        model=ScriptedModel(latency=0, sleep=_instant),
        config=RunConfig(model="claude-opus-4-8", sleep=_instant),
        run_id=uuid.uuid4().hex,
    )
    asyncio.run(run_scenario("spawn", run))


def latest(received: list[ReceivedMetric], name: str) -> dict[str, float]:
    """The last exported value of each point of a metric, keyed by its exporter attribute
    ("" when it has none)."""
    found: dict[str, float] = {}
    for metric in received:
        if metric.name != name:
            continue
        data = getattr(metric.metric, metric.metric.WhichOneof("data"))
        for point in data.data_points:
            attributes = attributes_to_dict(point.attributes)
            value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
            found[str(attributes.get(EXPORTER, ""))] = float(value)
    return found


def scraped(port: int) -> dict[str, dict[str, float]]:
    """Counter name (with _total) → exporter → value, from a Prometheus scrape endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("orchestrace_telemetry_"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                values = found.setdefault(sample.name, {})
                values[sample.labels.get("orchestrace_exporter", "")] = sample.value
    return found


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orchestrace")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # only when flushed
    return monkeypatch


@pytest.fixture
def receivers() -> Iterator[tuple[OTLPReceiver, OTLPReceiver]]:
    """(traces, metrics): two collectors, so one can fail while the other works."""
    with OTLPReceiver() as traces, OTLPReceiver() as metrics:
        yield traces, metrics
        traces.mode = "ok"
        traces.release()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- spans -----------------------------------------------------------------------------------
def test_a_failing_span_exporter_shows_in_the_metrics(
    env: pytest.MonkeyPatch, receivers: tuple[OTLPReceiver, OTLPReceiver], tmp_path: Path
) -> None:
    traces, metrics = receivers
    traces.mode = "error"  # UNAVAILABLE: retried until the export timeout, then failed
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.grpc_endpoint)
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0.5")
    env.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics.grpc_endpoint)
    telemetry = setup_telemetry(spans_file=tmp_path / "spans.jsonl", set_global=False)
    run_spawn(telemetry)
    assert telemetry.shutdown(timeout=20)
    ended = telemetry.ended.count if telemetry.ended is not None else 0
    assert ended > 10
    got = metrics.metrics()
    assert latest(got, sc.METRIC_SPANS_ENDED) == {"": ended}
    assert latest(got, sc.METRIC_SPANS_EXPORTED) == {"file": ended, "otlp/grpc": 0}
    assert latest(got, sc.METRIC_SPANS_FAILED) == {"file": 0, "otlp/grpc": ended}
    assert latest(got, sc.METRIC_SPANS_DROPPED) == {"file": 0, "otlp/grpc": 0}
    # the metrics pipeline itself is healthy: nothing failed yet when the last export left
    assert latest(got, sc.METRIC_POINTS_FAILED) == {"otlp/grpc": 0}
    # the console report at exit says the same
    assert telemetry.export_problems() == [
        f"otlp/grpc: 0 of {ended} spans exported ({ended} failed to export)"
    ]


def test_a_full_queue_is_counted_as_dropped_while_the_run_goes_on(
    env: pytest.MonkeyPatch, receivers: tuple[OTLPReceiver, OTLPReceiver]
) -> None:
    traces, _ = receivers
    traces.mode = "stall"
    port = _free_port()
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.http_traces_url)
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    env.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    env.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    env.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    # one span per export; the first export stalls, four more fit in the queue
    env.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    env.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    telemetry = setup_telemetry(set_global=False)
    try:
        run_spawn(telemetry)
        assert traces.wait_for_stalled(1)
        ended = telemetry.ended.count if telemetry.ended is not None else 0
        # before any shutdown: the drops are in the metrics a scrape reads
        during = scraped(port)
        kind = "otlp/http/protobuf"
        dropped = during["orchestrace_telemetry_spans_dropped_total"][kind]
        assert dropped >= ended - 5  # all but the stalled one and the four queued
        assert during["orchestrace_telemetry_spans_exported_total"][kind] == 0
        assert during["orchestrace_telemetry_spans_ended_total"][""] == ended
    finally:
        traces.mode = "ok"
        traces.release()
        assert telemetry.shutdown(timeout=10)
    exported = len(traces.spans())
    # read again: the scrape above may have run before the last span's end was counted
    ended = telemetry.ended.count if telemetry.ended is not None else 0
    counts = telemetry.pipeline_counts()
    [spans] = counts.span_exporters
    assert (spans.exported, spans.failed) == (exported, 0)
    # The live drop count comes from the SDK's queue-full path, which races with the export
    # thread taking a span off the full queue: it may count one span more than was lost
    # (a known limit, noted in docs/reliability.md). The exit report is exact.
    assert ended - exported <= spans.dropped <= ended - exported + 1
    assert telemetry.export_problems() == [
        f"otlp/http/protobuf: {exported} of {ended} spans exported (0 failed to export, "
        f"{ended - exported} dropped: export queue full, raise OTEL_BSP_MAX_QUEUE_SIZE)"
    ]


def test_spans_still_queued_at_the_shutdown_deadline_are_reported_as_dropped(
    env: pytest.MonkeyPatch, receivers: tuple[OTLPReceiver, OTLPReceiver]
) -> None:
    traces, metrics = receivers
    traces.mode = "stall"  # the trace collector accepts, then never answers
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.http_traces_url)
    env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    env.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics.grpc_endpoint)
    telemetry = setup_telemetry(set_global=False)
    run_spawn(telemetry)
    # the spans get the deadline less a reserve; the metrics' final export still goes out
    assert not telemetry.shutdown(timeout=2.0)
    assert metrics.wait_for_metric(sc.METRIC_SPANS_DROPPED, timeout=10)
    ended = telemetry.ended.count if telemetry.ended is not None else 0
    got = metrics.metrics()
    assert latest(got, sc.METRIC_SPANS_DROPPED) == {"otlp/http/protobuf": ended}
    assert latest(got, sc.METRIC_SPANS_EXPORTED) == {"otlp/http/protobuf": 0}
    assert telemetry.export_problems() == [
        f"otlp/http/protobuf: 0 of {ended} spans exported (0 failed to export, {ended} "
        "dropped or still queued at the shutdown deadline)"
    ]


def test_the_dropped_count_never_goes_down() -> None:
    # a stalled export that completes after the deadline must not shrink the counter
    telemetry = Telemetry(True, TracerProvider(), MeterProvider(), ContentPolicy(0))
    counter = CountingSpanExporter(InMemorySpanExporter(), "otlp/grpc")
    telemetry.counters.append(counter)
    telemetry.ended = SpanCounter()
    telemetry.ended.count = 10
    telemetry._traces_abandoned.set()
    assert telemetry.pipeline_counts().span_exporters[0].dropped == 10
    counter.exported = 10  # the stalled batch got through after all
    assert telemetry.pipeline_counts().span_exporters[0].dropped == 10


def test_the_drop_hook_is_installed_on_this_sdk() -> None:
    counter = CountingSpanExporter(InMemorySpanExporter(), "console")
    processor = BatchSpanProcessor(counter)
    try:
        assert count_drops(processor, counter)
        processor._batch_processor._metrics.drop_items(3)  # what the SDK calls on a full queue
        assert counter.queue_dropped == 3
    finally:
        processor.shutdown()

    class NoHook:
        pass

    assert not count_drops(NoHook(), counter)  # type: ignore[arg-type]


# --- metric points ---------------------------------------------------------------------------
def test_metric_points_that_fail_to_export_are_counted(
    env: pytest.MonkeyPatch, receivers: tuple[OTLPReceiver, OTLPReceiver]
) -> None:
    _, metrics = receivers
    env.setenv("OTEL_TRACES_EXPORTER", "none")
    env.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics.grpc_endpoint)
    env.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0.5")
    telemetry = setup_telemetry(set_global=False)
    run_spawn(telemetry)
    provider: Any = telemetry.meter_provider
    metrics.mode = "error"
    provider.force_flush(10_000)  # fails after its retries
    [counter] = telemetry.metric_counters
    failed = counter.failed
    assert failed > 0
    assert counter.exported == 0
    metrics.mode = "ok"
    provider.force_flush(10_000)  # reports the failure
    got = metrics.metrics()
    assert latest(got, sc.METRIC_POINTS_FAILED) == {"otlp/grpc": failed}
    assert telemetry.shutdown(timeout=10)
    assert counter.exported > 0


# --- agents waiting ---------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_open_waits_by_role() -> None:
    clock = Clock()
    waits = OpenWaits(clock)
    assert waits.by_role() == {}
    a = waits.begin("helper")
    clock.now += 30
    b = waits.begin("helper")
    c = waits.begin("lead")
    clock.now += 10
    assert waits.by_role() == {"helper": (2, 40.0), "lead": (1, 10.0)}
    waits.end(a)
    assert waits.by_role() == {"helper": (1, 10.0), "lead": (1, 10.0)}
    waits.end(b)
    waits.end(c)
    waits.end(c)  # twice: nothing more
    assert waits.by_role() == {"helper": (0, 0.0), "lead": (0, 0.0)}  # roles stay, at zero
    assert len(waits) == 0


@contextlib.contextmanager
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = Clock()
    monkeypatch.setattr(OPEN_WAITS, "clock", clock)
    yield clock


def _gauges(reader: InMemoryMetricReader) -> dict[str, dict[str, float]]:
    data = reader.get_metrics_data()
    out: dict[str, dict[str, float]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name in (sc.METRIC_AGENTS_WAITING, sc.METRIC_AGENT_WAIT_LONGEST):
                    out[metric.name] = {
                        str(dict(p.attributes or {})[sc.AGENT_ROLE]): float(p.value)  # type: ignore[union-attr]
                        for p in metric.data.data_points
                    }
    return out


@pytest.mark.asyncio
async def test_an_agent_blocked_in_wait_shows_how_long(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    Instruments.for_provider(provider)
    hub = Hub()
    hub.register("watcher", role="watcher")
    hub.register("other", role="other")
    with fake_clock(monkeypatch) as clock:
        task = asyncio.create_task(hub.wait("watcher", timeout=3600))
        await asyncio.sleep(0)
        assert hub.state("watcher") is AgentState.IDLING
        clock.now += 420
        gauges = _gauges(reader)
        assert gauges[sc.METRIC_AGENTS_WAITING]["watcher"] == 1
        assert gauges[sc.METRIC_AGENT_WAIT_LONGEST]["watcher"] == 420
        # a kill while waiting (the task is cancelled) closes the wait as well
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gauges = _gauges(reader)
        assert gauges[sc.METRIC_AGENTS_WAITING]["watcher"] == 0
        assert gauges[sc.METRIC_AGENT_WAIT_LONGEST]["watcher"] == 0
        # a wait that ends with a message
        task = asyncio.create_task(hub.wait("watcher", timeout=3600))
        await asyncio.sleep(0)
        assert _gauges(reader)[sc.METRIC_AGENTS_WAITING]["watcher"] == 1
        hub.post(hub_envelope(hub, "other", "watcher"))
        await task
        assert _gauges(reader)[sc.METRIC_AGENTS_WAITING]["watcher"] == 0
    provider.shutdown()


def hub_envelope(hub: Hub, sender: str, recipient: str) -> Envelope:
    return Envelope(hub.new_message_id(), sender, recipient, "hi", hub.now_ns())


# --- agents ended -----------------------------------------------------------------------------
def test_agents_ended_counts_each_final_state_once() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    states = Instruments.for_provider(provider).agent_states
    states.move("helper", None, "active")
    states.move("helper", "active", "crashed")
    states.move("lead", None, "active")
    states.move("lead", "active", "idling")
    states.move("lead", "idling", "done")
    states.move("helper", "crashed", None)  # retired at the end of the run: not a new end
    states.move("lead", "done", None)
    data = reader.get_metrics_data()
    assert data is not None
    [ended] = [
        m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == sc.METRIC_AGENTS_ENDED
    ]  # fmt: skip
    points = {
        (p.attributes[sc.AGENT_ROLE], p.attributes[sc.AGENT_STATE]): p.value  # type: ignore[index, union-attr]
        for p in ended.data.data_points
    }
    assert points == {("helper", "crashed"): 1, ("lead", "done"): 1}
    provider.shutdown()


def test_final_states_match_the_hub() -> None:
    assert {s.value for s in AgentState if s.ended} == sc.AGENT_FINAL_STATES
