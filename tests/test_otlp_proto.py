"""The fast OTLP span encoder writes exactly the SDK encoder's bytes; the exporters use it.

Every comparison is against ``opentelemetry-exporter-otlp-proto-common``'s ``encode_spans``
in the installed SDK, so a change of the SDK's encoding fails here.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from otlp_receiver import OTLPReceiver
from support import make_run

from runtime.agent import RunConfig
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.otlp_grpc import GrpcSpanExporter
from telemetry.otlp_http import HttpSpanExporter
from telemetry.otlp_proto import FastEncoder, Unencodable, encode_spans_protobuf
from telemetry.spans import ContentPolicy


def sdk_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())


async def instant(_seconds: float) -> None:
    await asyncio.sleep(0)


def scenario_spans(scenario: str, content: ContentPolicy) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orchestrace-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = make_run(
        provider,
        model=ScriptedModel(latency=0),
        config=RunConfig(model="claude-opus-4-8", sleep=instant),
        content=content,
        run_id="r1",
    )
    asyncio.run(run_scenario(scenario, run))
    provider.shutdown()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("scenario", ["spawn", "team"])
@pytest.mark.parametrize("capture", [0, 4000])
def test_real_runs_encode_to_the_sdk_bytes(scenario: str, capture: int) -> None:
    spans = scenario_spans(scenario, ContentPolicy(capture, capture=capture > 0))
    assert len(spans) > 20
    assert {s.kind for s in spans} >= {SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.INTERNAL}
    assert any(s.links for s in spans)
    assert encode_spans_protobuf(spans) == sdk_bytes(spans)


# --- generated spans ---------------------------------------------------------------------
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SCALARS = st.one_of(
    st.text(max_size=80),
    st.booleans(),
    INT64,
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=20),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(st.text(max_size=10), max_size=4).map(tuple),
    st.lists(INT64, max_size=4).map(tuple),
    st.lists(st.floats(), max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
    st.lists(SCALARS, max_size=3),
)
ATTRIBUTES = st.dictionaries(st.text(max_size=20), VALUES, max_size=8)
IDS64 = st.integers(min_value=1, max_value=2**64 - 1)
IDS128 = st.integers(min_value=1, max_value=2**128 - 1)
TIMES = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def contexts(draw: st.DrawFn) -> SpanContext:
    state = draw(
        st.lists(
            st.tuples(st.sampled_from(["vendor", "a1", "x@y"]), st.sampled_from(["v", "7", "q-1"])),
            max_size=2,
            unique_by=lambda kv: kv[0],
        )
    )
    return SpanContext(
        trace_id=draw(IDS128),
        span_id=draw(IDS64),
        is_remote=draw(st.booleans()),
        trace_flags=TraceFlags(draw(st.sampled_from([0, 1]))),
        trace_state=TraceState(state),
    )


def bounded(attributes: dict[str, Any], limit: int | None) -> BoundedAttributes:
    return BoundedAttributes(maxlen=limit, attributes=attributes, immutable=True)


@st.composite
def spans(draw: st.DrawFn, resources: Sequence[Resource]) -> ReadableSpan:
    limit = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=4)))
    events = [
        Event(
            draw(st.text(max_size=12)),
            bounded(draw(ATTRIBUTES), limit),
            timestamp=draw(TIMES),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    links = [
        Link(draw(contexts()), bounded(draw(ATTRIBUTES), limit))
        for _ in range(draw(st.integers(0, 3)))
    ]
    event_limit = draw(st.one_of(st.none(), st.integers(0, 2)))
    link_limit = draw(st.one_of(st.none(), st.integers(0, 2)))
    code = draw(st.sampled_from(list(StatusCode)))
    scope = draw(
        st.one_of(
            st.none(),
            st.builds(
                InstrumentationScope,
                st.sampled_from(["orchestrace", "other", ""]),
                st.sampled_from([None, "", "0.1.0"]),
                st.sampled_from([None, "https://opentelemetry.io/schemas/1.37.0"]),
                st.one_of(st.none(), ATTRIBUTES),
            ),
        )
    )
    return ReadableSpan(
        name=draw(st.text(max_size=30)),
        context=draw(contexts()),
        parent=draw(st.one_of(st.none(), contexts())),
        resource=draw(st.sampled_from(resources)),
        attributes=bounded(draw(ATTRIBUTES), limit),
        events=BoundedList.from_seq(event_limit, events) if event_limit is not None else events,
        links=BoundedList.from_seq(link_limit, links) if link_limit is not None else links,
        kind=draw(st.sampled_from(list(SpanKind))),
        status=Status(
            code,
            draw(st.one_of(st.none(), st.text(max_size=20))) if code is StatusCode.ERROR else None,
        ),
        start_time=draw(st.one_of(st.none(), TIMES)),
        end_time=draw(st.one_of(st.none(), TIMES)),
        instrumentation_scope=scope,
    )


RESOURCES = [
    Resource.create({"service.name": "a"}),
    Resource({"service.name": "b", "n": 3, "tags": ("x", "y")}, "https://example.com/s"),
    Resource({}),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans(RESOURCES), max_size=6))
def test_generated_spans_encode_to_the_sdk_bytes(batch: list[ReadableSpan]) -> None:
    assert encode_spans_protobuf(batch) == sdk_bytes(batch)


def test_zero_and_empty_values_are_written_like_the_sdk() -> None:
    # A oneof member is written even when it is the zero value; plain fields are not.
    span = ReadableSpan(
        name="",
        context=SpanContext(1, 1, is_remote=False),
        resource=Resource({}),
        attributes={"s": "", "b": False, "i": 0, "f": 0.0, "nf": -0.0, "nan": math.nan, "": 1},
        status=Status(StatusCode.UNSET),
        start_time=0,
        end_time=0,
    )
    assert encode_spans_protobuf([span]) == sdk_bytes([span])


@pytest.mark.parametrize(
    "value",
    [2**63, -(2**63) - 1, {"nested": 1}, ("mixed", {"k": "v"})],
    ids=["int64-overflow", "int64-underflow", "mapping", "mapping-in-array"],
)
def test_what_the_fast_path_does_not_know_is_left_to_the_sdk(
    value: object, caplog: pytest.LogCaptureFixture
) -> None:
    span = ReadableSpan(
        name="odd",
        context=SpanContext(1, 2, is_remote=False),
        resource=Resource({}),
        attributes={"ok": "yes", "odd": value},  # type: ignore[dict-item]
    )
    with pytest.raises(Unencodable):
        encode_spans_protobuf([span])
    encoder = FastEncoder("test exporter")
    with caplog.at_level(logging.WARNING, logger="telemetry.otlp_proto"):
        assert encoder.encode([span]) is None
        assert encoder.encode([span, span]) is None
    assert encoder.count == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "telemetry.otlp_proto"]
    assert len(lines) == 1
    assert "test exporter" in lines[0]
    assert "SDK's encoder" in lines[0]


# --- the exporters ---------------------------------------------------------------------------
@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


def odd_span() -> ReadableSpan:
    return ReadableSpan(
        name="odd",
        context=SpanContext(3, 4, is_remote=False),
        resource=Resource({"service.name": "orchestrace-test"}),
        attributes={"huge": 2**64},
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exporters_send_what_the_sdk_encoder_would(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    if protocol == "grpc":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint)
        exporter: GrpcSpanExporter | HttpSpanExporter = GrpcSpanExporter()
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
        exporter = HttpSpanExporter()
        assert exporter.fast, "the installed SDK lacks what the fast HTTP path relies on"
    batch = scenario_spans("spawn", ContentPolicy(0))
    odd = [odd_span()]
    try:
        assert exporter.export(batch) is SpanExportResult.SUCCESS
        assert exporter.export(odd) is SpanExportResult.SUCCESS  # the SDK's encoder
    finally:
        exporter.shutdown()
    assert exporter.encoder.count == 1
    requests = receiver.trace_requests()
    assert [r.SerializeToString() for r in requests] == [sdk_bytes(batch), sdk_bytes(odd)]


def test_http_exporter_reports_a_refused_batch(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    exporter = HttpSpanExporter(max_request_size=64)  # smaller than any real batch
    try:
        assert exporter.export(scenario_spans("spawn", ContentPolicy(0))) is (
            SpanExportResult.FAILURE
        )
    finally:
        exporter.shutdown()
    assert receiver.trace_requests() == []


def test_http_exporter_retries_through_the_sdk_client_and_reports_failure(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retry-After: 0 makes the SDK client retry at once: no test waits real seconds.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    receiver.retry_after = 0
    batch = scenario_spans("spawn", ContentPolicy(0))
    exporter = HttpSpanExporter()
    try:
        receiver.fail_next(1)
        assert exporter.export(batch) is SpanExportResult.SUCCESS  # the retry got through
        assert [r.SerializeToString() for r in receiver.trace_requests()] == [sdk_bytes(batch)]
        assert receiver.request_count(signal="traces", mode="error") == 1
        receiver.mode = "error"
        assert exporter.export(batch) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert receiver.request_count(signal="traces", mode="error") > 2
    assert exporter.encoder.count == 0
