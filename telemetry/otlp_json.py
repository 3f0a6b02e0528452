r"""The OpenTelemetry Collector's file format, OTLP/JSON lines: encoding and decoding.

Each line is one ``ExportTraceServiceRequest`` in OTLP/JSON — the Collector's
``file``-exporter format: hex trace and span ids, integer enums, 64-bit integers as decimal
strings, default values omitted. Jaeger's v3 API answers with the same documents under
``{"result": {"resourceSpans": [...]}}``.

Encoding (:func:`encode_spans_json`) goes straight from the SDK's spans to JSON text (no
protobuf round trip): the output is field for field what ``MessageToDict(encode_spans(spans),
use_integers_for_enums=True)`` gives once ids are turned from base64 into hex (so exactly
what a Collector receiving these spans over OTLP writes), at a small fraction of the cost,
because it runs for every span of large runs.

Decoding (:func:`iter_otlp_json`, :func:`iter_spans_file`) makes
:class:`~telemetry.records.SpanRecord`\ s, normalising attribute values as
:mod:`telemetry.records` describes; :mod:`telemetry.scan` reads the same format faster for
the summary and the profile, with the tables and value decoding defined here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from json.encoder import encode_basestring
from types import MappingProxyType
from typing import Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode
from opentelemetry.trace.span import TraceState

from telemetry.records import AttrValue, EventRecord, LinkRecord, SpanRecord, kvlist_text

log = logging.getLogger(__name__)

# --- OTLP/JSON encoding --------------------------------------------------------------------
#: A JSON string literal for a Python str (the C implementation; non-ASCII kept as is).
_str: Final[Callable[[str], str]] = encode_basestring

_KIND: Final[dict[SpanKind, str]] = {
    SpanKind.INTERNAL: "1",
    SpanKind.SERVER: "2",
    SpanKind.CLIENT: "3",
    SpanKind.PRODUCER: "4",
    SpanKind.CONSUMER: "5",
}
_STATUS_CODE: Final[dict[StatusCode, str]] = {
    StatusCode.UNSET: "",
    StatusCode.OK: "1",
    StatusCode.ERROR: "2",
}
# SpanFlags: the "has is_remote" bit is always set; "is_remote" when the parent (or the
# linked span) came from another process. The W3C trace-flag bits are not written, as in
# the SDK's own OTLP encoder.
_FLAGS_LOCAL: Final = ',"flags":256'
_FLAGS_REMOTE: Final = ',"flags":768'
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_TRUE: Final = '{"boolValue":true}'
_FALSE: Final = '{"boolValue":false}'

_key_prefixes: dict[str, str] = {}
_MAX_KEY_PREFIXES: Final = 4096
_warned_keys: set[str] = set()


def _key_prefix(key: str) -> str:
    """``{"key":"<key>","value":`` — cached, attribute keys come from a small set."""
    prefix = _key_prefixes.get(key)
    if prefix is None:
        prefix = '{"key":' + _str(key) + ',"value":'
        if len(_key_prefixes) < _MAX_KEY_PREFIXES:
            _key_prefixes[key] = prefix
    return prefix


def _int_value(value: int) -> str:
    if INT64_MIN <= value <= INT64_MAX:
        return '{"intValue":"' + int.__repr__(value) + '"}'
    raise OverflowError(f"{value} does not fit in an int64 intValue")


def _double_value(value: float) -> str:
    if value - value == 0.0:  # finite
        return '{"doubleValue":' + float.__repr__(value) + "}"
    if value != value:
        return '{"doubleValue":"NaN"}'
    return '{"doubleValue":"Infinity"}' if value > 0 else '{"doubleValue":"-Infinity"}'


def _any_value(value: object) -> str:
    """An OTLP/JSON ``AnyValue`` object, dispatching on the common exact types first."""
    if type(value) is str:
        return '{"stringValue":' + _str(value) + "}"
    if type(value) is int:
        return _int_value(value)
    if type(value) is float:
        return _double_value(value)
    if type(value) is bool:
        return _TRUE if value else _FALSE
    if type(value) is tuple:  # the SDK stores every sequence as a tuple
        if not value:
            return '{"arrayValue":{}}'
        return '{"arrayValue":{"values":[' + ",".join([_any_value(v) for v in value]) + "]}}"
    if value is None:
        return "{}"
    # Subclasses (enums …) and the rarer types, in the SDK encoder's order of checks.
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, str):
        return '{"stringValue":' + _str(value) + "}"
    if isinstance(value, int):
        return _int_value(int(value))
    if isinstance(value, float):
        return _double_value(float(value))
    if isinstance(value, bytes):
        return '{"bytesValue":"' + base64.b64encode(value).decode("ascii") + '"}'
    if isinstance(value, Sequence):
        if not value:
            return '{"arrayValue":{}}'
        return '{"arrayValue":{"values":[' + ",".join([_any_value(v) for v in value]) + "]}}"
    if isinstance(value, Mapping):
        if not value:
            return '{"kvlistValue":{}}'
        items = [_key_prefix(str(k)) + _any_value(v) + "}" for k, v in value.items()]
        return '{"kvlistValue":{"values":[' + ",".join(items) + "]}}"
    raise TypeError(f"unsupported attribute value type {type(value).__name__}")


def _drop_attribute(key: object, exc: Exception) -> None:
    text = str(key)
    if text not in _warned_keys and len(_warned_keys) < 256:
        _warned_keys.add(text)
        log.warning("attribute %r not exported: %s", text, exc)


def _as_dict(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """A dict to iterate: the SDK's ``BoundedAttributes`` iterates in Python, slowly.

    Its ``copy()`` (reached through ``MappingProxyType.copy`` for span attributes) is a
    C-level dict copy.
    """
    if type(attributes) is dict:
        return attributes
    copier = getattr(attributes, "copy", None)
    if copier is not None:
        try:
            copied = copier()
        except AttributeError:  # a proxy over a mapping without ``copy``
            return attributes
        if type(copied) is dict:
            return copied
    return attributes


def _attributes(attributes: Mapping[str, Any]) -> str:
    """The ``KeyValue`` objects of ``attributes``, comma-separated ("" if none)."""
    parts: list[str] = []
    append = parts.append
    prefixes = _key_prefixes
    for key, value in _as_dict(attributes).items():
        try:
            prefix = prefixes.get(key) or _key_prefix(key)
            cls = value.__class__
            # The common exact types inline (this loop is the encoder's hot spot).
            if cls is str:
                append(prefix + '{"stringValue":' + _str(value) + "}}")
            elif cls is int and INT64_MIN <= value <= INT64_MAX:
                append(prefix + '{"intValue":"' + int.__repr__(value) + '"}}')
            elif cls is bool:
                append(prefix + ('{"boolValue":true}}' if value else '{"boolValue":false}}'))
            elif cls is float and value - value == 0.0:
                append(prefix + '{"doubleValue":' + float.__repr__(value) + "}}")
            else:
                append(prefix + _any_value(value) + "}")
        except (TypeError, ValueError, OverflowError) as exc:
            # What the SDK's protobuf encoder does too: skip the attribute, keep the span.
            _drop_attribute(key, exc)
    return ",".join(parts)


def _ids(ctx: SpanContext) -> str:
    """``{"traceId":"<32 hex>","spanId":"<16 hex>"`` (``to_bytes().hex()`` is the fastest)."""
    return (
        '{"traceId":"'
        + ctx.trace_id.to_bytes(16, "big").hex()
        + '","spanId":"'
        + ctx.span_id.to_bytes(8, "big").hex()
        + '"'
    )


def _trace_state(state: TraceState | None) -> str:
    if not state:
        return ""
    return ',"traceState":' + _str(state.to_header())


def _event(event: Event) -> str:
    fields: list[str] = []
    if event.timestamp:
        fields.append('"timeUnixNano":"' + int.__repr__(event.timestamp) + '"')
    if event.name:
        fields.append('"name":' + _str(event.name))
    attrs = event.attributes
    if attrs:
        encoded = _attributes(attrs)
        if encoded:
            fields.append('"attributes":[' + encoded + "]")
    dropped = event.dropped_attributes
    if dropped:
        fields.append('"droppedAttributesCount":' + str(dropped))
    return "{" + ",".join(fields) + "}"


def _link(link: Link) -> str:
    ctx = link.context
    parts = [_ids(ctx)]
    attrs = link.attributes
    if attrs:
        encoded = _attributes(attrs)
        if encoded:
            parts.append(',"attributes":[' + encoded + "]")
    dropped = link.dropped_attributes
    if dropped:
        parts.append(',"droppedAttributesCount":' + str(dropped))
    parts.append(_FLAGS_REMOTE if ctx.is_remote else _FLAGS_LOCAL)
    parts.append("}")
    return "".join(parts)


def _span(span: ReadableSpan, out: list[str]) -> None:
    """Append one span's OTLP/JSON ``Span`` object to ``out`` (fields in proto order)."""
    ctx: SpanContext | None = span.context
    if ctx is None:
        raise ValueError(f"span {span.name!r} has no span context")
    out.append(_ids(ctx))
    state = ctx.trace_state
    if state:
        out.append(_trace_state(state))
    parent = span.parent
    if parent is not None:
        out.append(',"parentSpanId":"' + parent.span_id.to_bytes(8, "big").hex() + '"')
    if span.name:
        out.append(',"name":')
        out.append(_str(span.name))
    out.append(',"kind":')
    out.append(_KIND[span.kind])
    start, end = span.start_time, span.end_time
    if start:
        out.append(',"startTimeUnixNano":"' + int.__repr__(start) + '"')
    if end:
        out.append(',"endTimeUnixNano":"' + int.__repr__(end) + '"')
    attrs = span.attributes
    if attrs:
        encoded = _attributes(attrs)
        if encoded:
            out.append(',"attributes":[')
            out.append(encoded)
            out.append("]")
    dropped = span.dropped_attributes
    if dropped:
        out.append(',"droppedAttributesCount":' + str(dropped))
    events = span.events
    if events:
        out.append(',"events":[' + ",".join([_event(e) for e in events]) + "]")
    dropped = span.dropped_events
    if dropped:
        out.append(',"droppedEventsCount":' + str(dropped))
    links = span.links
    if links:
        out.append(',"links":[' + ",".join([_link(link) for link in links]) + "]")
    dropped = span.dropped_links
    if dropped:
        out.append(',"droppedLinksCount":' + str(dropped))
    status = span.status
    code = _STATUS_CODE[status.status_code]
    message = status.description
    if message and code:
        out.append(',"status":{"message":' + _str(message) + ',"code":' + code + "}")
    elif message:
        out.append(',"status":{"message":' + _str(message) + "}")
    elif code:
        out.append(',"status":{"code":' + code + "}")
    else:
        out.append(',"status":{}')
    out.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    out.append("}")


def _resource_head(resource: Resource | None) -> str:
    """``{"resource":{...},"scopeSpans":[`` for ``resource``."""
    encoded = _attributes(resource.attributes) if resource is not None else ""
    body = '"attributes":[' + encoded + "]" if encoded else ""
    return '{"resource":{' + body + '},"scopeSpans":['


def _resource_tail(resource: Resource | None) -> str:
    schema = resource.schema_url if resource is not None else ""
    return "]" + (',"schemaUrl":' + _str(schema) if schema else "") + "}"


def _scope_head(scope: InstrumentationScope | None) -> str:
    """``{"scope":{...},"spans":[`` for ``scope``."""
    if scope is None:
        return '{"scope":{},"spans":['
    fields = []
    if scope.name:
        fields.append('"name":' + _str(scope.name))
    if scope.version:
        fields.append('"version":' + _str(scope.version))
    if scope.attributes:
        encoded = _attributes(scope.attributes)
        if encoded:
            fields.append('"attributes":[' + encoded + "]")
    return '{"scope":{' + ",".join(fields) + '},"spans":['


def _scope_tail(scope: InstrumentationScope | None) -> str:
    schema = scope.schema_url if scope is not None else ""
    return "]" + (',"schemaUrl":' + _str(schema) if schema else "") + "}"


class _Group:
    """The spans of one resource and scope, as encoded text fragments."""

    __slots__ = ("parts", "resource", "scope")

    def __init__(self, resource: Resource | None, scope: InstrumentationScope | None) -> None:
        self.resource = resource
        self.scope = scope
        self.parts: list[str] = []


def _encode(spans: Sequence[ReadableSpan], tail: str) -> str:
    """OTLP/JSON ``ExportTraceServiceRequest`` text for ``spans``, followed by ``tail``."""
    if not spans:
        return "{}" + tail
    # Group by resource, then scope (as the SDK's encoder does), by identity first: every
    # span of a provider shares the same objects; equality is only tried for new objects.
    resources: list[tuple[Resource | None, list[_Group]]] = []
    by_id: dict[tuple[int, int], _Group] = {}
    for span in spans:
        span_resource, scope = span.resource, span.instrumentation_scope
        key = (id(span_resource), id(scope))
        group = by_id.get(key)
        if group is None:
            group = by_id[key] = _find_group(resources, span_resource, scope)
        _span(span, group.parts)
        group.parts.append(",")
    out = ['{"resourceSpans":[']
    for resource, groups in resources:
        out.append(_resource_head(resource))
        for group in groups:
            out.append(_scope_head(group.scope))
            group.parts[-1] = _scope_tail(group.scope)  # replaces the trailing comma
            out.extend(group.parts)
            out.append(",")
        out[-1] = _resource_tail(resource)
        out.append(",")
    out[-1] = "]}" + tail
    return "".join(out)


def _find_group(
    resources: list[tuple[Resource | None, list[_Group]]],
    resource: Resource | None,
    scope: InstrumentationScope | None,
) -> _Group:
    for known, groups in resources:
        if known is resource or known == resource:
            for group in groups:
                if group.scope is scope or group.scope == scope:
                    return group
            group = _Group(known, scope)
            groups.append(group)
            return group
    group = _Group(resource, scope)
    resources.append((resource, [group]))
    return group


def encode_spans_json(spans: Sequence[ReadableSpan], *, end: str = "") -> str:
    """``spans`` as one OTLP/JSON ``ExportTraceServiceRequest`` (compact), then ``end``
    (``"\\n"`` for a line of a spans file).

    Attributes whose value cannot be encoded (an integer beyond int64, an unsupported
    type) are left out with a warning, as the SDK's protobuf encoder does.
    """
    return _encode(spans, end)


# --- OTLP/JSON decoding --------------------------------------------------------------------
#: OTLP ``SpanKind`` enum values (their index) and names (``SPAN_KIND_`` + name).
KINDS: Final = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
#: OTLP ``Status.code`` enum values (their index) and names (``STATUS_CODE_`` + name).
STATUSES: Final = ("UNSET", "OK", "ERROR")


def _json_any(value: Mapping[str, Any]) -> object:
    """An OTLP/JSON ``AnyValue`` as plain JSON data (inside key/value lists)."""
    for key, inner in value.items():
        if key == "stringValue":
            return str(inner)
        if key == "intValue":
            return int(inner)
        if key == "boolValue":
            return bool(inner)
        if key == "doubleValue":
            return float(inner)
        if key == "arrayValue":
            return [_json_any(v) for v in (inner or {}).get("values") or ()]
        if key == "kvlistValue":
            return {
                str(kv["key"]): _json_any(kv.get("value") or {})
                for kv in (inner or {}).get("values") or ()
            }
        if key == "bytesValue":
            return str(inner)
    return None


def otlp_value(value: Mapping[str, Any]) -> AttrValue | None:
    """An OTLP/JSON ``AnyValue`` as an :data:`AttrValue` (``None`` if empty)."""
    for key, inner in value.items():
        if key == "stringValue":
            return str(inner)
        if key == "intValue":  # a decimal string per the spec; some producers write numbers
            return int(inner)
        if key == "boolValue":
            return bool(inner)
        if key == "doubleValue":  # a number, or "NaN" / "Infinity" / "-Infinity"
            return float(inner)
        if key == "arrayValue":
            items = (otlp_value(v) for v in (inner or {}).get("values") or ())
            return tuple("" if v is None else v for v in items)
        if key == "kvlistValue":
            return kvlist_text(_json_any(value))
        if key == "bytesValue":
            return str(inner)
    return None


def otlp_attributes(items: Iterable[Mapping[str, Any]] | None) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    if items:
        for kv in items:
            value = kv.get("value")
            if not value:
                continue
            text = value.get("stringValue")  # by far the most common: no call needed
            if text.__class__ is str:
                out[kv["key"]] = text
                continue
            converted = otlp_value(value)
            if converted is not None:
                out[kv["key"]] = converted
    return out


def otlp_id(value: Any, digits: int) -> str:
    """A trace or span id as lowercase hex; protobuf's base64 form is accepted too."""
    if not value:
        return ""
    text = str(value)
    if len(text) != digits:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) * 2 == digits:
            return raw.hex()
    return text.lower()


def enum_name(value: Any, names: tuple[str, ...], prefix: str) -> str:
    if isinstance(value, int):
        return names[value] if 0 <= value < len(names) else names[0]
    if isinstance(value, str):
        name = value.removeprefix(prefix)
        if name in names:
            return name
        if name.isdigit():
            return enum_name(int(name), names, prefix)
    return names[0]


def _enum_table(names: tuple[str, ...], prefix: str) -> dict[object, str]:
    """Every spelling of the enum: its number, its OTLP name, the bare name."""
    table: dict[object, str] = {}
    for number, name in enumerate(names):
        table[number] = table[prefix + name] = table[name] = name
    return table


KIND_OF: Final = _enum_table(KINDS, "SPAN_KIND_")
KIND_OF[0] = KIND_OF["SPAN_KIND_UNSPECIFIED"] = KIND_OF["UNSPECIFIED"] = "INTERNAL"
STATUS_OF: Final = _enum_table(STATUSES, "STATUS_CODE_")


def _otlp_span(s: Mapping[str, Any], resource: Mapping[str, AttrValue]) -> SpanRecord:
    status = s.get("status") or {}
    kind = s.get("kind", 0)
    code = status.get("code", 0)
    parent = s.get("parentSpanId")
    links = s.get("links")
    events = s.get("events")
    return SpanRecord(
        trace_id=otlp_id(s.get("traceId"), 32),
        span_id=otlp_id(s.get("spanId"), 16),
        parent_span_id=otlp_id(parent, 16) if parent else None,
        name=str(s.get("name", "")),
        kind=KIND_OF.get(kind) or KIND_OF[enum_name(kind, KINDS, "SPAN_KIND_")],
        start_ns=int(s.get("startTimeUnixNano") or 0),
        end_ns=int(s.get("endTimeUnixNano") or 0),
        status=STATUS_OF.get(code) or enum_name(code, STATUSES, "STATUS_CODE_"),
        status_message=str(status.get("message") or ""),
        attributes=otlp_attributes(s.get("attributes")),
        links=tuple(
            [
                LinkRecord(
                    otlp_id(link.get("traceId"), 32),
                    otlp_id(link.get("spanId"), 16),
                    otlp_attributes(link.get("attributes")),
                )
                for link in links
            ]
        )
        if links
        else (),
        events=tuple(
            [
                EventRecord(
                    str(e.get("name", "")),
                    int(e.get("timeUnixNano") or 0),
                    otlp_attributes(e.get("attributes")),
                )
                for e in events
            ]
        )
        if events
        else (),
        resource=resource,
    )


def iter_otlp_json(resource_spans: Iterable[Mapping[str, Any]]) -> Iterator[SpanRecord]:
    """The spans of OTLP/JSON ``resourceSpans`` entries.

    Accepts what the OTLP/JSON spec defines (hex ids, integer enums, 64-bit integers as
    decimal strings) and the common variations: enum names (``"SPAN_KIND_CLIENT"``,
    ``"STATUS_CODE_ERROR"``), numbers for 64-bit integers, base64 ids (protobuf's generic
    JSON mapping) and the pre-1.0 ``instrumentationLibrarySpans`` key.
    """
    for rs in resource_spans:
        resource: Mapping[str, AttrValue] = MappingProxyType(
            otlp_attributes((rs.get("resource") or {}).get("attributes"))
        )
        scopes = rs.get("scopeSpans")
        if scopes is None:
            scopes = rs.get("instrumentationLibrarySpans")
        for ss in scopes or ():
            for s in ss.get("spans") or ():
                yield _otlp_span(s, resource)


def document_resource_spans(document: Any) -> Any:
    """The ``resourceSpans`` list of one OTLP/JSON document (bare or Jaeger-wrapped)."""
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, found {type(document).__name__}")
    if "resourceSpans" in document:
        return document["resourceSpans"] or ()
    result = document.get("result")
    if isinstance(result, dict):
        return result.get("resourceSpans") or ()
    return ()  # another signal's line (resourceMetrics, resourceLogs) in a shared file


def iter_spans_file(path: str | os.PathLike[str]) -> Iterator[SpanRecord]:
    """Stream the spans of an OTLP/JSON-lines file, one line at a time.

    Each line is one ``{"resourceSpans": [...]}`` object (the Collector's ``file`` exporter
    and :class:`telemetry.export.OTLPJsonLinesExporter` write this; a Jaeger
    ``{"result": {...}}`` object is accepted too). Memory is bounded by the longest line,
    not the file. Blank lines are skipped; a malformed line raises :class:`ValueError`
    naming the file and the line number.
    """
    name = os.fspath(path)
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records = list(iter_otlp_json(document_resource_spans(json.loads(line))))
            except (ValueError, AttributeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{name!s}: line {number}: malformed OTLP/JSON line: {exc}"
                ) from exc
            yield from records
