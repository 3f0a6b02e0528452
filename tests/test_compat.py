"""One test per assumption ``telemetry/compat.py`` makes about the SDKs' internals.

When a release of opentelemetry-* or anthropic changes one, the test of that assumption
fails and says which (``.ci/newest`` runs these against the newest releases). The
behaviour built on them is tested elsewhere (test_otlp_proto.py, test_pipeline_metrics.py,
test_reliability_model_api.py); these pin the assumptions themselves.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
import pytest
from fake_messages_api import FakeMessagesAPI, MessageReply
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as SDKGrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.metrics.view import Aggregation, ExplicitBucketHistogramAggregation
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext, TraceFlags

from telemetry import compat
from telemetry.otlp_http import HttpSpanExporter


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


@pytest.mark.asyncio
async def test_anthropic_keeps_a_bodys_fields_as_given(api: FakeMessagesAPI) -> None:
    """Assumption: responses are built without validation; ``__dict__`` holds the values
    the body gave, and a required field the body lacks is absent or None."""
    api.enqueue(
        MessageReply(
            {
                "type": "message",
                "role": "assistant",
                "content": [5, {"type": "text", "text": "hi"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": -5},
            }
        )
    )
    async with anthropic.AsyncAnthropic(api_key="sk-test", base_url=api.url) as client:
        message = await client.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    fields = compat.given_fields(message)
    assert fields.get("id") is None, "anthropic now fills absent required fields: given_fields"
    assert fields["content"][0] == 5, "anthropic now validates content blocks: given_fields"
    usage = compat.given_fields(message.usage)
    assert usage["input_tokens"] == -5, "anthropic now validates usage: given_fields"
    assert usage.get("output_tokens") is None, "anthropic now fills usage: given_fields"
    assert compat.given_fields(5) == {}


def test_the_http_span_exporter_has_what_the_fast_path_uses() -> None:
    exporter = HttpSpanExporter()
    try:
        missing = [n for n in compat.HTTP_EXPORTER_INTERNALS if not hasattr(exporter, n)]
        assert not missing, f"the SDK's OTLP/HTTP span exporter lacks {missing}"
        size_check = compat.http_size_check()
        assert size_check is not None, "_common.RequestPayloadTooLargeError / _is_request_too_large"
        error, too_large = size_check
        assert issubclass(error, Exception)
        assert too_large(b"x" * 10, 5)
        assert not too_large(b"x", 5)
        assert callable(exporter._client.export), "_client.export(bytes)"
        operation = exporter._metrics.export_operation(1)
        assert isinstance(operation, contextlib.AbstractContextManager), (
            "_metrics.export_operation(count) is a context manager"
        )
        assert isinstance(exporter._max_request_size, int)
        assert exporter._shutdown is False
        assert exporter.fast
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


def test_the_grpc_span_exporter_builds_its_request_in_translate_data() -> None:
    method = getattr(SDKGrpcSpanExporter, compat.GRPC_TRANSLATE, None)
    assert callable(method), f"the SDK's gRPC span exporter has no {compat.GRPC_TRANSLATE}"
    # the export path calls it (on the base class that holds the export loop)
    sources = "".join(
        inspect.getsource(c)
        for c in SDKGrpcSpanExporter.__mro__
        if c.__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    )
    assert f"self.{compat.GRPC_TRANSLATE}(" in sources, (
        f"the SDK's gRPC exporter no longer sends what {compat.GRPC_TRANSLATE} returns"
    )


def test_the_batch_processor_reports_drops_to_a_replaceable_hook() -> None:
    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait()
            return SpanExportResult.SUCCESS

    processor = BatchSpanProcessor(Stuck(), max_queue_size=1, max_export_batch_size=1)
    dropped: list[int] = []
    try:
        found = compat.batch_drop_hook(processor)
        assert found is not None, (
            f"BatchSpanProcessor._batch_processor._metrics lacks {compat.DROP_HOOK_METHODS}"
        )

        hook: Any = found

        class Hook:
            def register_queue_size(self, get: object) -> None:
                hook.register_queue_size(get)

            def drop_items(self, count: int, error_type: str = "queue_full") -> None:
                dropped.append(count)
                hook.drop_items(count, error_type)

            def finish_items(self, count: int) -> None:
                hook.finish_items(count)

        compat.replace_batch_drop_hook(processor, Hook())
        # one span in the stuck export, one queued: at least three of five are dropped
        for i in range(5):
            context = SpanContext(1, i + 1, is_remote=False, trace_flags=TraceFlags(1))
            processor.on_end(ReadableSpan(f"s{i}", context))
    finally:
        release.set()
        processor.shutdown()  # type: ignore[no-untyped-call]
    assert sum(dropped) >= 3, "the batch processor no longer reports drops to _metrics"


def test_a_metric_exporters_preferences_are_readable() -> None:
    temporality: dict[type, AggregationTemporality] = {Counter: AggregationTemporality.DELTA}
    aggregation: dict[type, Aggregation] = {Counter: ExplicitBucketHistogramAggregation()}
    exporter = OTLPMetricExporter(
        preferred_temporality=temporality, preferred_aggregation=aggregation
    )
    got_temporality, got_aggregation = compat.metric_preferences(exporter)
    assert got_temporality[Counter] is AggregationTemporality.DELTA, "_preferred_temporality"
    assert got_aggregation[Counter] is aggregation[Counter], "_preferred_aggregation"


def test_dropped_counts_survive_a_rebuilt_span() -> None:
    context = SpanContext(1, 2, is_remote=False)
    events = compat.counted_list([Event("e", compat.counted_attributes({"a": 1}, 3))], 4)
    links = compat.counted_list([Link(context, compat.counted_attributes({"b": 2}, 5))], 6)
    span = ReadableSpan(
        "s",
        context,
        attributes=compat.counted_attributes({"c": 3}, 7),
        events=events,
        links=links,
    )
    assert span.dropped_attributes == 7, "BoundedAttributes.dropped -> dropped_attributes"
    assert span.dropped_events == 4, "BoundedList.dropped -> dropped_events"
    assert span.dropped_links == 6, "BoundedList.dropped -> dropped_links"
    assert span.events[0].dropped_attributes == 3
    assert span.links[0].dropped_attributes == 5
    assert compat.counted_attributes({"d": 1}, 0) == {"d": 1}
