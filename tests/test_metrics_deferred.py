"""Histogram measurements leave the agent's path: queued, then recorded by the SDK off it.

What must hold: a collection (export, scrape, shutdown) sees every measurement made before
it, with the exemplar of the span it was recorded under; the queue stays bounded; after
``close`` nothing is queued any more; and the worker records without any collection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util.types import Attributes

from telemetry.metrics import DeferredHistogram, Instruments, PendingRecords

#: Long enough that the worker never wakes on its own during a test.
NEVER = 3600.0


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def _points(reader: InMemoryMetricReader, name: str) -> list[HistogramDataPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
        if isinstance(p, HistogramDataPoint)
    ]


def test_a_collection_sees_every_queued_measurement_with_its_spans_exemplar(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    pending = PendingRecords(interval=NEVER)
    histogram = DeferredHistogram(
        provider.get_meter("t").create_histogram("t.duration", unit="s"), pending
    )
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("recorded under") as span:
        recorded_under = span.get_span_context()
        for value in (0.5, 1.5, 2.5):
            histogram.record(value, {"role": "helper"}, context=trace.set_span_in_context(span))
    assert pending.queued == 3  # the caller only queued them
    with tracer.start_as_current_span("collected under"):
        # A collection drains only through the instruments' observable; this one has no
        # such hook, so drain as the hook does, then collect.
        assert list(pending.observe_after_drain(None)) == []  # type: ignore[arg-type]
        (point,) = _points(reader, "t.duration")
    assert pending.queued == 0
    assert (point.count, point.sum, dict(point.attributes or {})) == (3, 4.5, {"role": "helper"})
    assert point.exemplars
    assert {(e.trace_id, e.span_id) for e in point.exemplars} == {
        (recorded_under.trace_id, recorded_under.span_id)
    }


def test_the_instruments_drain_before_every_collection(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    instruments = Instruments.for_provider(provider)
    assert instruments.pending is not None
    instruments.pending.interval = NEVER
    instruments.tool_duration.record(0.25, {"gen_ai.tool.name": "sleep"})
    instruments.delivery_latency.record(0.01, {"orchestrace.agent.role": "lead"})
    (tool,) = _points(reader, "gen_ai.execute_tool.duration")
    (delivery,) = _points(reader, "orchestrace.message.delivery.latency")
    assert (tool.count, tool.sum, delivery.count) == (1, 0.25, 1)
    assert instruments.pending.queued == 0


def test_no_op_providers_record_directly() -> None:
    from opentelemetry.metrics import NoOpMeterProvider

    instruments = Instruments.for_provider(NoOpMeterProvider())
    assert instruments.pending is None
    assert not isinstance(instruments.operation_duration, DeferredHistogram)


def test_the_queue_is_bounded_and_loses_nothing(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    pending = PendingRecords(interval=NEVER, batch=2, limit=4)
    histogram = DeferredHistogram(provider.get_meter("t").create_histogram("t.n"), pending)
    sizes = []
    for value in range(10):
        histogram.record(value)
        sizes.append(pending.queued)
    assert max(sizes) <= 4
    pending.close()
    (point,) = _points(reader, "t.n")
    assert (point.count, point.sum) == (10, sum(range(10)))


def test_after_close_measurements_are_recorded_directly(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    pending = PendingRecords(interval=NEVER)
    histogram = DeferredHistogram(provider.get_meter("t").create_histogram("t.late"), pending)
    histogram.record(1.0)
    pending.close()
    assert pending.queued == 0
    histogram.record(2.0)
    assert pending.queued == 0
    (point,) = _points(reader, "t.late")
    assert (point.count, point.sum) == (2, 3.0)


class _Signalling(Histogram):
    """A histogram that says on which thread it was recorded (a fake of the SDK's)."""

    def __init__(self) -> None:
        super().__init__("t.signal")
        self.recorded = threading.Event()
        self.threads: set[str] = set()

    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self.threads.add(threading.current_thread().name)
        self.recorded.set()


def test_the_worker_records_a_full_batch_without_any_collection() -> None:
    pending = PendingRecords(interval=NEVER, batch=2)
    fake = _Signalling()
    histogram = DeferredHistogram(fake, pending)
    histogram.record(1.0)  # starts the worker, which sleeps: nothing is due yet
    histogram.record(2.0)  # a full batch wakes it
    try:
        assert fake.recorded.wait(30), "the worker never recorded the batch"
        assert fake.threads == {"orchestrace-metrics"}
    finally:
        pending.close()


def test_an_idle_worker_exits_and_the_next_measurement_starts_another(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    # Milliseconds, not seconds: the worker gives up after one empty round.
    pending = PendingRecords(interval=0.001, idle_rounds=1)
    histogram = DeferredHistogram(provider.get_meter("t").create_histogram("t.idle"), pending)
    histogram.record(1.0)
    first = pending.worker  # None already if it has recorded and exited by now
    if first is not None:
        first.join(30)
        assert not first.is_alive(), "an idle worker should exit"
    assert pending.worker is None
    assert pending.queued == 0  # it recorded before leaving
    fake = _Signalling()
    DeferredHistogram(fake, pending).record(2.0)
    try:
        assert fake.recorded.wait(30), "no worker recorded the measurement after the restart"
        assert fake.threads == {"orchestrace-metrics"}
    finally:
        pending.close()
    (point,) = _points(reader, "t.idle")
    assert (point.count, point.sum) == (1, 1.0)


class _Failing(Histogram):
    """A histogram whose SDK side fails (a fake of a broken metrics pipeline)."""

    def __init__(self) -> None:
        super().__init__("t.failing")

    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        raise RuntimeError("metrics pipeline broken")


def test_a_failing_record_is_logged_and_never_raised(
    provider: MeterProvider, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    pending = PendingRecords(interval=NEVER)
    broken = DeferredHistogram(_Failing(), pending)
    fine = DeferredHistogram(provider.get_meter("t").create_histogram("t.fine"), pending)
    broken.record(1.0)
    fine.record(2.0)
    broken.record(1.5)
    with caplog.at_level(logging.ERROR, logger="telemetry.metrics"):
        assert pending.drain() == 3  # the failures do not stop the rest
        pending.close()
        broken.record(3.0)  # recorded directly after close: still not raised
    assert pending.failed == 3
    # One traceback for the first failure, a count when the pipeline closes: a broken
    # metrics SDK does not flood the log with one traceback per measurement.
    assert caplog.text.count("recording a histogram measurement failed") == 1
    assert caplog.text.count("Traceback") == 1
    assert "2 histogram measurements failed to record" in caplog.text
    (point,) = _points(reader, "t.fine")
    assert (point.count, point.sum) == (1, 2.0)
