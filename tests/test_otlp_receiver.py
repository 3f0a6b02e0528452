"""Tests for the in-process OTLP receiver, driven by the real OpenTelemetry SDK exporters.

Timing notes (SDK 1.45): both OTLP exporters treat ``timeout`` (seconds) as one budget for
the whole export, retries included, and only back off (``2**n * U(0.8, 1.2)`` s, or the
server's RetryInfo / Retry-After) when the backoff still fits in that budget. A timeout
under 0.8 s therefore means "one attempt, no backoff sleep"; ``retry_after = 0`` on the
receiver makes retries immediate. No test here sleeps.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, TypeVar

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext
from otlp_receiver import OTLPReceiver, Transport

SERVICE = "orchestrace-otlp-receiver-test"
TRANSPORTS: tuple[Transport, ...] = ("grpc", "http")


def span_exporter(
    receiver: OTLPReceiver,
    transport: Transport,
    *,
    timeout: float = 2.0,
    gzip: bool = False,
) -> SpanExporter:
    if transport == "grpc":
        return GrpcSpanExporter(
            endpoint=receiver.grpc_endpoint,
            insecure=True,
            timeout=timeout,
            compression=grpc.Compression.Gzip if gzip else None,
        )
    return HttpSpanExporter(
        endpoint=receiver.http_traces_url,
        timeout=timeout,
        compression=HttpCompression.Gzip if gzip else None,
    )


def metric_exporter(
    receiver: OTLPReceiver, transport: Transport, *, timeout: float = 2.0
) -> MetricExporter:
    if transport == "grpc":
        return GrpcMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=timeout)
    return HttpMetricExporter(endpoint=receiver.http_metrics_url, timeout=timeout)


def id_bytes(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def make_spans(names: Sequence[str] = ("work",)) -> tuple[ReadableSpan, ...]:
    """Finished SDK spans to feed straight into ``exporter.export``."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for name in names:
        tracer.start_span(name).end()
    provider.shutdown()
    return memory.get_finished_spans()


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


# --------------------------------------------------------------------- traces


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_spans_parent_link_and_resource_survive(
    receiver: OTLPReceiver, transport: Transport, gzip: bool
) -> None:
    exporter = span_exporter(receiver, transport, gzip=gzip)
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("orchestrace.tests", "1.2.3")
    try:
        with (
            tracer.start_as_current_span("parent") as parent,
            tracer.start_as_current_span("child") as child,
        ):
            pass
        child_ctx: SpanContext = child.get_span_context()
        link = Link(child_ctx, {"link.reason": "follows-from", "link.n": 7})
        with tracer.start_as_current_span("linked", links=[link]) as linked:
            pass

        assert receiver.wait_for_spans(3, timeout=2.0)
    finally:
        provider.shutdown()

    parent_ctx = parent.get_span_context()
    got_parent = receiver.span("parent")
    got_child = receiver.span("child")
    got_linked = receiver.span("linked")

    assert got_parent.trace_id == id_bytes(parent_ctx.trace_id, 16)
    assert got_parent.span_id == id_bytes(parent_ctx.span_id, 8)
    assert got_parent.parent_span_id == b""
    assert got_child.trace_id == id_bytes(child_ctx.trace_id, 16)
    assert got_child.span_id == id_bytes(child_ctx.span_id, 8)
    assert got_child.parent_span_id == id_bytes(parent_ctx.span_id, 8)
    assert got_linked.span_id == id_bytes(linked.get_span_context().span_id, 8)

    assert len(got_linked.span.links) == 1
    got_link = got_linked.span.links[0]
    assert got_link.trace_id == id_bytes(child_ctx.trace_id, 16)
    assert got_link.span_id == id_bytes(child_ctx.span_id, 8)
    assert {kv.key: kv.value for kv in got_link.attributes}["link.reason"].string_value == (
        "follows-from"
    )
    assert {kv.key: kv.value for kv in got_link.attributes}["link.n"].int_value == 7

    for span in (got_parent, got_child, got_linked):
        assert span.resource["service.name"] == SERVICE
        assert span.scope_name == "orchestrace.tests"
        assert span.scope_version == "1.2.3"
        assert span.transport == transport
    assert receiver.request_count(transport, "traces", "ok") == 3
    assert receiver.request_count() == 3
    if transport == "http":
        headers = receiver.http_headers()
        assert len(headers) == 3
        assert {h["content-type"] for h in headers} == {"application/x-protobuf"}
        assert {h.get("content-encoding") for h in headers} == {"gzip" if gzip else None}


# --------------------------------------------------------------------- metrics


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_metric_reader_force_flush_delivers_counter(
    receiver: OTLPReceiver, transport: Transport
) -> None:
    reader = PeriodicExportingMetricReader(
        metric_exporter(receiver, transport), export_interval_millis=60_000
    )
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": SERVICE})
    )
    try:
        counter = provider.get_meter("orchestrace.tests").create_counter("orchestrace.test.calls")
        counter.add(3, {"agent": "planner"})
        assert reader.force_flush(timeout_millis=2_000)
        assert receiver.wait_for_metric("orchestrace.test.calls", timeout=2.0)
    finally:
        provider.shutdown()

    assert "orchestrace.test.calls" in receiver.metric_names()
    metric = next(m for m in receiver.metrics() if m.name == "orchestrace.test.calls")
    assert metric.resource["service.name"] == SERVICE
    assert metric.transport == transport
    assert sum(point.as_int for point in metric.metric.sum.data_points) == 3
    assert receiver.request_count(transport, "metrics", "ok") >= 1


# --------------------------------------------------------------------- fault modes


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_error_mode_fails_export_without_backoff_sleep(
    receiver: OTLPReceiver, transport: Transport
) -> None:
    receiver.mode = "error"
    # 0.5 s < the first backoff (>= 0.8 s): the exporter gives up after one attempt.
    exporter = span_exporter(receiver, transport, timeout=0.5)
    try:
        result, elapsed = timed(lambda: exporter.export(make_spans()))
    finally:
        exporter.shutdown()
    assert result is SpanExportResult.FAILURE
    assert elapsed < 0.5
    assert receiver.request_count(transport, "traces", "error") == 1
    assert receiver.spans() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retry_after_makes_exporter_retry_then_succeed(
    receiver: OTLPReceiver, transport: Transport
) -> None:
    receiver.retry_after = 0.0
    receiver.fail_next(2)
    exporter = span_exporter(receiver, transport, timeout=2.0)
    try:
        result, elapsed = timed(lambda: exporter.export(make_spans(["retried"])))
    finally:
        exporter.shutdown()
    assert result is SpanExportResult.SUCCESS
    assert elapsed < 0.5
    assert receiver.request_count(transport, "traces", "error") == 2
    assert receiver.request_count(transport, "traces", "ok") == 1
    assert [s.name for s in receiver.spans()] == ["retried"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_persistent_error_stops_after_six_attempts(
    receiver: OTLPReceiver, transport: Transport
) -> None:
    receiver.mode = "error"
    receiver.retry_after = 0.0
    exporter = span_exporter(receiver, transport, timeout=2.0)
    try:
        result, elapsed = timed(lambda: exporter.export(make_spans()))
    finally:
        exporter.shutdown()
    assert result is SpanExportResult.FAILURE
    assert elapsed < 0.5
    # SDK 1.45: _MAX_RETRYS / _MAX_RETRIES = 6 attempts in total.
    assert receiver.request_count(transport, "traces", "error") == 6


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stall_mode_export_fails_within_exporter_timeout(
    receiver: OTLPReceiver, transport: Transport
) -> None:
    receiver.mode = "stall"
    exporter = span_exporter(receiver, transport, timeout=0.3)
    try:
        result, elapsed = timed(lambda: exporter.export(make_spans()))
    finally:
        exporter.shutdown()
    assert result is SpanExportResult.FAILURE
    assert 0.25 <= elapsed < 0.8
    assert receiver.request_count(transport, "traces", "stall") == 1
    if transport == "grpc":
        # The deadline ends the RPC, which frees the stalled handler at once.
        assert receiver.wait_until_unstalled(timeout=1.0)
    else:
        # OTLP/HTTP cannot see the client give up: the request stays stalled until
        # release() or close().
        assert receiver.stalled == 1
    assert receiver.spans() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_release_lets_a_stalled_export_succeed(
    receiver: OTLPReceiver, transport: Transport
) -> None:
    receiver.mode = "stall"
    exporter = span_exporter(receiver, transport, timeout=2.0)
    spans = make_spans(["slow"])
    results: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(spans)))
    try:
        worker.start()
        assert receiver.wait_for_stalled(1, timeout=1.0)
        assert receiver.spans() == []
        receiver.release()
        worker.join(timeout=1.0)
        assert not worker.is_alive()
    finally:
        exporter.shutdown()
    assert results == [SpanExportResult.SUCCESS]
    assert [s.name for s in receiver.spans()] == ["slow"]
    assert receiver.stalled == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_is_prompt_while_requests_are_stalled(transport: Transport) -> None:
    receiver = OTLPReceiver().start()
    receiver.mode = "stall"
    exporter = span_exporter(receiver, transport, timeout=5.0)
    spans = make_spans()
    results: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(spans)))
    try:
        worker.start()
        assert receiver.wait_for_stalled(1, timeout=1.0)
        _, elapsed = timed(receiver.close)
        assert elapsed < 0.5
        assert receiver.stalled == 0
    finally:
        receiver.close()
        # The stalled request was answered UNAVAILABLE / 503, so the exporter is now
        # waiting out a ~1 s backoff; shutdown() interrupts that wait.
        exporter.shutdown()
        worker.join(timeout=1.0)
    assert not worker.is_alive()
    assert results == [SpanExportResult.FAILURE]
    assert receiver.spans() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_batch_processor_shutdown_bounded_by_exporter_timeout(
    receiver: OTLPReceiver, transport: Transport
) -> None:
    receiver.mode = "stall"
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter(receiver, transport, timeout=0.3)))
    provider.get_tracer("test").start_span("queued").end()
    # The worker flushes the queue on shutdown; the stalled export is cut off by the
    # exporter timeout, not by BatchSpanProcessor (its export timeout is unused in 1.45).
    _, elapsed = timed(provider.shutdown)
    assert elapsed < 0.8
    assert receiver.request_count(transport, "traces", "stall") == 1


# --------------------------------------------------------------------- receiver basics


def test_endpoints_and_mode_validation(receiver: OTLPReceiver) -> None:
    assert receiver.grpc_endpoint == f"http://127.0.0.1:{receiver.grpc_port}"
    assert receiver.http_endpoint == f"http://127.0.0.1:{receiver.http_port}"
    assert receiver.http_traces_url == receiver.http_endpoint + "/v1/traces"
    assert receiver.http_metrics_url == receiver.http_endpoint + "/v1/metrics"
    with pytest.raises(ValueError, match="mode must be one of"):
        receiver.mode = "broken"  # type: ignore[assignment]
    assert receiver.mode == "ok"


def test_env_base_endpoint_is_http_endpoint(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    exporter: SpanExporter = HttpSpanExporter(timeout=1.0)
    try:
        assert exporter.export(make_spans(["via-env"])) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert [s.name for s in receiver.spans()] == ["via-env"]


def test_otlp_json_body_with_hex_ids(receiver: OTLPReceiver) -> None:
    trace_id = "5b8efff798038103d269b633813fc60c"
    span_id = "eee19b7ec3c1b174"
    parent_id = "eee19b7ec3c1b173"
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": SERVICE}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "json-scope"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": parent_id,
                                "name": "json-span",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "links": [{"traceId": trace_id, "spanId": parent_id}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    request = urllib.request.Request(
        receiver.http_traces_url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=1.0) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.read()) == {}
    span = receiver.span("json-span")
    assert span.trace_id == bytes.fromhex(trace_id)
    assert span.span_id == bytes.fromhex(span_id)
    assert span.parent_span_id == bytes.fromhex(parent_id)
    assert span.span.links[0].span_id == bytes.fromhex(parent_id)
    assert span.resource == {"service.name": SERVICE}
    assert span.scope_name == "json-scope"


@pytest.mark.parametrize(
    ("path", "content_type", "body", "status"),
    [
        ("/v1/logs", "application/x-protobuf", b"", 404),
        ("/v1/traces", "text/plain", b"x", 415),
        ("/v1/traces", "application/x-protobuf", b"\xff\xff\xff", 400),
    ],
)
def test_http_rejects_bad_requests(
    receiver: OTLPReceiver,
    path: str,
    content_type: str,
    body: bytes,
    status: Literal[400, 404, 415],
) -> None:
    request = urllib.request.Request(
        receiver.http_endpoint + path,
        data=body,
        headers={"Content-Type": content_type},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=1.0)
    assert excinfo.value.code == status
    excinfo.value.close()
    assert receiver.request_count() == 0


def test_close_is_idempotent_and_clear_resets() -> None:
    with OTLPReceiver() as receiver:
        exporter = span_exporter(receiver, "grpc")
        try:
            assert exporter.export(make_spans(["a", "b"])) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert receiver.wait_for_spans(2, timeout=1.0)
        assert not receiver.wait_for_spans(3, timeout=0.01)
        receiver.clear()
        assert receiver.spans() == []
        assert receiver.request_count() == 0
    receiver.close()
