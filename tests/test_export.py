"""The spans file: OTLP/JSON lines written by the exporter and read back into records."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import os
import re
import tracemalloc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from telemetry.export import OTLPJsonLinesExporter, RedactingSpanExporter
from telemetry.otlp_json import encode_spans_json, iter_otlp_json, iter_spans_file
from telemetry.records import SpanRecord, from_readable_span

CHILD_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.usage.input_tokens": 1234,
    "orchestrace.cost": 0.0125,
    "orchestrace.cached": True,
    "orchestrace.flag_off": False,
    "gen_ai.response.finish_reasons": ["end_turn", "tool_use"],
    "gen_ai.prompt": "secret prompt",
}


@dataclass
class Written:
    """Spans of one small run: as the SDK ended them, and the file they were written to."""

    path: Path
    spans: list[ReadableSpan]

    def by_name(self, name: str) -> ReadableSpan:
        return next(s for s in self.spans if s.name == name)


def _run(path: Path, exporter_factory: Any = OTLPJsonLinesExporter) -> Written:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orchestrace-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter_factory(path)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("orchestrace.test", "1.2.3")
    with tracer.start_as_current_span("invoke_agent lead") as parent:
        parent.set_attribute("gen_ai.agent.name", "lead")
        with tracer.start_as_current_span(
            "chat claude", kind=SpanKind.CLIENT, attributes=CHILD_ATTRIBUTES
        ) as child:
            child.add_event("gen_ai.choice", {"index": 0, "gen_ai.completion": "secret answer"})
            child.set_status(Status(StatusCode.ERROR, "rate limited"))
        child_ctx = child.get_span_context()
        with tracer.start_as_current_span(
            "send worker-1",
            kind=SpanKind.PRODUCER,
            links=[Link(child_ctx, {"messaging.message.id": "m-1", "message.content": "hi"})],
        ):
            pass
    provider.shutdown()
    return Written(path, list(memory.get_finished_spans()))


@pytest.fixture
def written(tmp_path: Path) -> Written:
    return _run(tmp_path / "spans.jsonl")


def _hex(span_id: int) -> str:
    return format(span_id, "016x")


def test_every_field_round_trips_through_the_file(written: Written) -> None:
    records = {r.name: r for r in iter_spans_file(written.path)}
    assert set(records) == {"invoke_agent lead", "chat claude", "send worker-1"}
    parent_span = written.by_name("invoke_agent lead")
    child_span = written.by_name("chat claude")
    producer_span = written.by_name("send worker-1")
    assert parent_span.context is not None
    assert child_span.context is not None
    assert producer_span.context is not None
    trace_id = format(parent_span.context.trace_id, "032x")

    parent = records["invoke_agent lead"]
    assert parent.trace_id == trace_id
    assert parent.span_id == _hex(parent_span.context.span_id)
    assert parent.parent_span_id is None
    assert parent.kind == "INTERNAL"
    assert parent.status == "UNSET"
    assert parent.status_message == ""
    assert parent.attributes == {"gen_ai.agent.name": "lead"}
    assert parent.start_ns == parent_span.start_time
    assert parent.end_ns == parent_span.end_time

    child = records["chat claude"]
    assert child.trace_id == trace_id
    assert child.span_id == _hex(child_span.context.span_id)
    assert child.parent_span_id == parent.span_id
    assert child.kind == "CLIENT"
    assert (child.status, child.status_message) == ("ERROR", "rate limited")
    assert child.start_ns == child_span.start_time
    assert child.end_ns == child_span.end_time
    assert dict(child.attributes) == {
        **CHILD_ATTRIBUTES,
        "gen_ai.response.finish_reasons": ("end_turn", "tool_use"),
    }
    for key in ("gen_ai.usage.input_tokens", "orchestrace.cost", "orchestrace.cached"):
        assert type(child.attributes[key]) is type(CHILD_ATTRIBUTES[key])
    [event] = child.events
    assert event.name == "gen_ai.choice"
    assert event.time_ns == child_span.events[0].timestamp
    assert event.attributes == {"index": 0, "gen_ai.completion": "secret answer"}
    assert child.links == ()

    producer = records["send worker-1"]
    assert producer.span_id == _hex(producer_span.context.span_id)
    assert producer.parent_span_id == parent.span_id
    assert producer.kind == "PRODUCER"
    [link] = producer.links
    assert (link.trace_id, link.span_id) == (trace_id, child.span_id)
    assert link.attributes == {"messaging.message.id": "m-1", "message.content": "hi"}

    for record in records.values():
        assert record.resource["service.name"] == "orchestrace-test"
        assert record.resource["telemetry.sdk.language"] == "python"


def test_the_line_is_otlp_json_with_hex_ids_and_integer_enums(written: Written) -> None:
    lines = written.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3  # SimpleSpanProcessor: one export, so one line, per span
    documents = [json.loads(line) for line in lines]
    spans = [
        span
        for doc in documents
        for rs in doc["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    by_name = {s["name"]: s for s in spans}
    for span in spans:
        assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
        assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
        assert isinstance(span["kind"], int)
        assert isinstance(span["startTimeUnixNano"], str)
        assert isinstance(span["endTimeUnixNano"], str)
    root = by_name["invoke_agent lead"]
    assert "parentSpanId" not in root  # empty bytes are omitted, not written as ""
    assert root["kind"] == 1
    assert root["status"] == {}
    child = by_name["chat claude"]
    assert re.fullmatch(r"[0-9a-f]{16}", child["parentSpanId"])
    assert child["kind"] == 3
    assert child["status"] == {"message": "rate limited", "code": 2}
    attrs = {kv["key"]: kv["value"] for kv in child["attributes"]}
    assert attrs["gen_ai.usage.input_tokens"] == {"intValue": "1234"}
    assert attrs["orchestrace.cost"] == {"doubleValue": 0.0125}
    assert attrs["orchestrace.cached"] == {"boolValue": True}
    assert attrs["gen_ai.response.finish_reasons"] == {
        "arrayValue": {"values": [{"stringValue": "end_turn"}, {"stringValue": "tool_use"}]}
    }
    assert isinstance(child["events"][0]["timeUnixNano"], str)
    producer = by_name["send worker-1"]
    assert producer["kind"] == 4
    [link] = producer["links"]
    assert re.fullmatch(r"[0-9a-f]{32}", link["traceId"])
    assert link["spanId"] == child["spanId"]
    scope_spans = documents[0]["resourceSpans"][0]["scopeSpans"][0]
    assert scope_spans["scope"] == {"name": "orchestrace.test", "version": "1.2.3"}
    assert all(line.startswith('{"resourceSpans":[{"resource":') for line in lines)  # compact


def test_live_records_equal_file_records(written: Written) -> None:
    from_file = sorted(iter_spans_file(written.path), key=lambda r: r.span_id)
    live = sorted((from_readable_span(s) for s in written.spans), key=lambda r: r.span_id)
    assert len(live) == 3
    assert live == from_file


def _base64_ids_to_hex(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: base64.b64decode(v).hex()
            if k in ("traceId", "spanId", "parentSpanId")
            else _base64_ids_to_hex(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_base64_ids_to_hex(v) for v in value]
    return value


def _nan_comparable(value: Any) -> Any:
    """``value`` (JSON data or records) with NaN replaced by a marker, so ``==`` works."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _nan_comparable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _nan_comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_nan_comparable(v) for v in value)
    return value


def _exotic_spans() -> list[ReadableSpan]:
    """Spans exercising every encoder branch: odd values, remote parent, dropped counts."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "odd"}, schema_url="https://example/1")
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    other = TracerProvider(resource=Resource.create({"service.name": "other"}))
    other.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("a", "1", schema_url="https://example/s", attributes={"k": 1})
    remote = SpanContext(
        0x0123456789ABCDEF0123456789ABCDEF,
        0x0011223344556677,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1")]),
    )
    with tracer.start_as_current_span(
        "root",
        context=set_span_in_context(NonRecordingSpan(remote)),
        attributes={
            "text": 'quote " backslash \\ newline \n control \x01 snowman ☃ clef 𝄞',
            "negative": -5,
            "integral_float": 2.0,
            "huge": 1e300,
            "nan": float("nan"),
            "inf": float("inf"),
            "ninf": float("-inf"),
            "ints": [1, 2],
            "empty": [],
            "bytes": b"\x00\xff",
            "mapping": {"a": 1, "b": {"c": [1, "x"]}},
            "nested": [[1, 2], ["a"]],
        },
    ) as root:
        root.add_event("tick", {"n": 1}, timestamp=123)
        root.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span(
            "", kind=SpanKind.CONSUMER, links=[Link(remote, {"x": "y"}), Link(remote)]
        ):
            pass
    with other.get_tracer("b").start_as_current_span("elsewhere", kind=SpanKind.SERVER):
        pass
    provider.shutdown()
    other.shutdown()
    return list(memory.get_finished_spans())


def test_encoding_matches_the_protobuf_json_mapping_field_for_field() -> None:
    spans = _exotic_spans()
    reference = MessageToDict(
        encode_spans(spans), use_integers_for_enums=True, preserving_proto_field_name=False
    )
    ours = json.loads(encode_spans_json(spans))
    assert _nan_comparable(ours) == _nan_comparable(_base64_ids_to_hex(reference))
    assert json.dumps(ours)  # valid JSON: NaN and infinities are written as strings
    # And the records agree whichever way they were read.
    from_file = sorted(iter_otlp_json(ours["resourceSpans"]), key=lambda r: r.span_id)
    live = sorted((from_readable_span(s) for s in spans), key=lambda r: r.span_id)
    assert len(live) == 3
    assert _nan_comparable(live) == _nan_comparable(from_file)
    root = next(r for r in live if r.name == "root")
    assert root.parent_span_id == "0011223344556677"
    assert root.attributes["bytes"] == "AP8="
    assert root.attributes["mapping"] == '{"a":1,"b":{"c":[1,"x"]}}'
    assert root.attributes["nested"] == ((1, 2), ("a",))


def test_append_mode_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    first = _run(path)
    with path.open("a", encoding="utf-8") as f:
        f.write("\n   \n")
    second = _run(path, lambda p: OTLPJsonLinesExporter(p, append=True))
    records = list(iter_spans_file(path))
    assert len(records) == 6
    assert {r.span_id for r in records} == {
        from_readable_span(s).span_id for s in first.spans + second.spans
    }
    _run(path)  # not appending: the file starts over
    assert len(list(iter_spans_file(path))) == 3


def test_a_malformed_line_names_the_file_and_line(written: Written) -> None:
    good = written.path.read_text(encoding="utf-8")
    written.path.write_text(good + "\n" + '{"resourceSpans": [{"scopeSpans": [\n', "utf-8")
    spans = iter_spans_file(written.path)
    for _ in range(3):  # streamed: the good lines' spans come before the error
        next(spans)
    with pytest.raises(ValueError, match=rf"{re.escape(str(written.path))}.*line 5\b"):
        next(spans)


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[1, 2]",
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
        b'{"resourceSpans": "\xff"}',
    ],
)
def test_malformed_content_is_a_value_error(tmp_path: Path, bad: str | bytes) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 1: "):
        list(iter_spans_file(path))


def test_export_fails_quietly_after_shutdown(tmp_path: Path) -> None:
    spans = _exotic_spans()
    exporter = OTLPJsonLinesExporter(tmp_path / "spans.jsonl")
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush()
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.force_flush()
    assert len(list(iter_spans_file(tmp_path / "spans.jsonl"))) == len(spans)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_write_errors_are_logged_once_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    spans = _exotic_spans()
    exporter = OTLPJsonLinesExporter("/dev/full")
    with caplog.at_level(logging.ERROR, logger="telemetry.export"):
        assert exporter.export(spans) is SpanExportResult.FAILURE
        assert exporter.export(spans) is SpanExportResult.FAILURE
    exporter.shutdown()
    assert len([r for r in caplog.records if r.name == "telemetry.export"]) == 1


def test_lone_surrogates_become_json_escapes(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("s", attributes={"bad": "a\ud800b"}):
        pass
    exporter = OTLPJsonLinesExporter(tmp_path / "spans.jsonl")
    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
    exporter.shutdown()
    [record] = iter_spans_file(tmp_path / "spans.jsonl")
    assert record.attributes["bad"] == "a\ud800b"


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.batches: list[Sequence[ReadableSpan]] = []
        self.shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True


REDACT = frozenset({"gen_ai.prompt", "gen_ai.completion", "message.content"})


def test_redaction_strips_keys_from_spans_events_and_links(written: Written) -> None:
    inner = _Collect()
    redacting = RedactingSpanExporter(inner, REDACT)
    assert redacting.export(written.spans) is SpanExportResult.SUCCESS
    [batch] = inner.batches
    out = {s.name: s for s in batch}
    originals = {s.name: s for s in written.spans}

    assert out["invoke_agent lead"] is originals["invoke_agent lead"]  # nothing to strip

    child, original_child = out["chat claude"], originals["chat claude"]
    assert child is not original_child
    expected = dict(original_child.attributes or {})
    del expected["gen_ai.prompt"]
    assert dict(child.attributes or {}) == expected
    assert [dict(e.attributes or {}) for e in child.events] == [{"index": 0}]
    assert [e.name for e in child.events] == ["gen_ai.choice"]
    assert child.events[0].timestamp == original_child.events[0].timestamp
    for field in ("name", "context", "parent", "resource", "kind", "status"):
        assert getattr(child, field) == getattr(original_child, field), field
    assert (child.start_time, child.end_time) == (
        original_child.start_time,
        original_child.end_time,
    )
    assert child.instrumentation_scope == original_child.instrumentation_scope

    producer = out["send worker-1"]
    assert producer is not originals["send worker-1"]
    [link] = producer.links
    assert dict(link.attributes or {}) == {"messaging.message.id": "m-1"}
    assert link.context == originals["send worker-1"].links[0].context

    # The originals are untouched, and the copies still encode and read back.
    assert "gen_ai.prompt" in (original_child.attributes or {})
    text = encode_spans_json(batch)
    assert "secret" not in text
    assert '"hi"' not in text
    records = {r.name: r for r in iter_otlp_json(json.loads(text)["resourceSpans"])}
    assert records["chat claude"].status_message == "rate limited"

    redacting.shutdown()
    assert inner.shut


def test_redaction_passes_clean_batches_through_unchanged(written: Written) -> None:
    inner = _Collect()
    batch = [s for s in written.spans if s.name == "invoke_agent lead"]
    RedactingSpanExporter(inner, REDACT).export(batch)
    assert inner.batches[0] is batch
    assert inner.batches[0][0] is batch[0]


JAEGER_V3: dict[str, Any] = {
    "result": {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "orchestrace"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "orchestrace"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "",
                                "name": "workflow spawn",
                                "kind": "SPAN_KIND_INTERNAL",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [
                                    {"key": "run.id", "value": {"stringValue": "r1"}},
                                    {"key": "agents", "value": {"intValue": "3"}},
                                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                    {
                                        "key": "tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [
                                                    {"stringValue": "a"},
                                                    {"stringValue": "b"},
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "status": {},
                            },
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "aaaaaaaaaaaaaaaa",
                                "parentSpanId": "eee19b7ec3c1b174",
                                "name": "chat claude",
                                "kind": "SPAN_KIND_CLIENT",
                                "startTimeUnixNano": "1700000000100000000",
                                "endTimeUnixNano": "1700000000200000000",
                                "status": {"code": "STATUS_CODE_ERROR", "message": "overloaded"},
                                "events": [
                                    {
                                        "timeUnixNano": "1700000000150000000",
                                        "name": "exception",
                                        "attributes": [
                                            {
                                                "key": "exception.type",
                                                "value": {"stringValue": "Overloaded"},
                                            }
                                        ],
                                    }
                                ],
                                "links": [
                                    {
                                        "traceId": "5b8efff798038103d269b633813fc60c",
                                        "spanId": "eee19b7ec3c1b174",
                                        "attributes": [
                                            {"key": "why", "value": {"stringValue": "cause"}}
                                        ],
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }
}


def test_jaeger_v3_documents_parse() -> None:
    records = list(iter_otlp_json(JAEGER_V3["result"]["resourceSpans"]))
    root, chat = records
    assert root == SpanRecord(
        trace_id="5b8efff798038103d269b633813fc60c",
        span_id="eee19b7ec3c1b174",
        parent_span_id=None,
        name="workflow spawn",
        kind="INTERNAL",
        start_ns=1_700_000_000_000_000_000,
        end_ns=1_700_000_001_000_000_000,
        status="UNSET",
        status_message="",
        attributes={"run.id": "r1", "agents": 3, "ratio": 0.5, "ok": True, "tags": ("a", "b")},
        links=(),
        events=(),
        resource={"service.name": "orchestrace"},
    )
    assert chat.parent_span_id == root.span_id
    assert (chat.kind, chat.status, chat.status_message) == ("CLIENT", "ERROR", "overloaded")
    assert chat.events[0].name == "exception"
    assert chat.events[0].time_ns == 1_700_000_000_150_000_000
    assert chat.events[0].attributes == {"exception.type": "Overloaded"}
    assert chat.links[0].span_id == root.span_id
    assert chat.links[0].attributes == {"why": "cause"}


def test_a_jaeger_response_saved_as_a_line_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "jaeger.jsonl"
    path.write_text(json.dumps(JAEGER_V3) + "\n", encoding="utf-8")
    assert [r.name for r in iter_spans_file(path)] == ["workflow spawn", "chat claude"]


def test_numeric_enums_and_base64_ids_are_accepted() -> None:
    trace_id, span_id = bytes(range(16)), bytes(range(8))
    [record] = iter_otlp_json(
        [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": base64.b64encode(trace_id).decode(),
                                "spanId": base64.b64encode(span_id).decode(),
                                "kind": 5,
                                "status": {"code": 1},
                                "startTimeUnixNano": 5,
                                "attributes": [
                                    {"key": "n", "value": {"intValue": 7}},
                                    {"key": "nothing", "value": {}},
                                    {"key": "nan", "value": {"doubleValue": "NaN"}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    )
    assert (record.trace_id, record.span_id) == (trace_id.hex(), span_id.hex())
    assert (record.kind, record.status, record.start_ns) == ("CONSUMER", "OK", 5)
    assert record.attributes["n"] == 7
    assert "nothing" not in record.attributes
    nan = record.attributes["nan"]
    assert isinstance(nan, float)
    assert math.isnan(nan)


def _peak_bytes_reading(path: Path) -> tuple[int, int]:
    """Spans in ``path`` and the peak memory traced while counting them."""
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_spans_file(path))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Memory is bounded by one line, not by the file."""
    line = encode_spans_json(_exotic_spans()) + "\n"
    path = tmp_path / "big.jsonl"
    lines = 4000
    path.write_text(line * lines, encoding="utf-8")
    assert path.stat().st_size > 8_000_000
    count, peak = _peak_bytes_reading(path)
    assert count == 3 * lines
    assert peak < 1_000_000, peak  # the file, or its records, would take many times this
