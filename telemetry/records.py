"""A neutral span record, and readers that produce it from SDK spans and OTLP/JSON.

The summary reads :class:`SpanRecord` only, whatever the source: a live run's
``ReadableSpan``, a spans file (one OTLP/JSON ``ExportTraceServiceRequest`` per line, the
Collector's file-exporter format), or Jaeger's v3 API (the same OTLP/JSON under
``result``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

#: An attribute value: str, bool, int, float, or a tuple of those.
AttrValue = object

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS = ("UNSET", "OK", "ERROR")


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A span link: the linked span's ids and the link's attributes."""

    trace_id: str
    span_id: str
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A span event."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span, independent of where it was read from."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: Mapping[str, AttrValue]
    links: tuple[LinkRecord, ...]
    events: tuple[EventRecord, ...]
    resource: Mapping[str, AttrValue]


def from_readable_span(span: ReadableSpan) -> SpanRecord:
    """Convert an SDK span (live run)."""
    ctx = span.context
    parent = span.parent
    return SpanRecord(
        trace_id=format(ctx.trace_id, "032x") if ctx is not None else "",
        span_id=format(ctx.span_id, "016x") if ctx is not None else "",
        parent_span_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span.name,
        kind=span.kind.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        status=span.status.status_code.name,
        status_message=span.status.description or "",
        attributes=dict(span.attributes or {}),
        links=tuple(
            LinkRecord(
                format(link.context.trace_id, "032x"),
                format(link.context.span_id, "016x"),
                dict(link.attributes or {}),
            )
            for link in span.links
        ),
        events=tuple(
            EventRecord(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events
        ),
        resource=dict(span.resource.attributes) if span.resource is not None else {},
    )


# --- OTLP/JSON ---------------------------------------------------------------------------
def _any_value(value: Mapping[str, Any]) -> AttrValue:
    if "stringValue" in value:
        return str(value["stringValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return tuple(_any_value(v) for v in value["arrayValue"].get("values", []))
    if "kvlistValue" in value:
        return json.dumps(
            {
                kv["key"]: _any_value(kv.get("value", {}))
                for kv in value["kvlistValue"].get("values", [])
            }
        )
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return ""


def _attributes(items: Iterable[Mapping[str, Any]] | None) -> dict[str, AttrValue]:
    return {kv["key"]: _any_value(kv.get("value") or {}) for kv in items or ()}


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> str:
    if isinstance(value, int):
        return names[value] if 0 <= value < len(names) else names[0]
    if isinstance(value, str):
        name = value.removeprefix(prefix)
        return name if name in names else names[0]
    return names[0]


def iter_otlp_json(resource_spans: Iterable[Mapping[str, Any]]) -> Iterator[SpanRecord]:
    """Spans of OTLP/JSON ``resourceSpans`` entries (hex ids, numeric or named enums)."""
    for rs in resource_spans:
        resource = _attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or ():
            for s in ss.get("spans") or ():
                status = s.get("status") or {}
                kind = _enum(s.get("kind", 1), _KINDS, "SPAN_KIND_")
                yield SpanRecord(
                    trace_id=str(s.get("traceId", "")).lower(),
                    span_id=str(s.get("spanId", "")).lower(),
                    parent_span_id=str(s["parentSpanId"]).lower()
                    if s.get("parentSpanId")
                    else None,
                    name=str(s.get("name", "")),
                    kind="INTERNAL" if kind == "UNSPECIFIED" else kind,
                    start_ns=int(s.get("startTimeUnixNano", 0)),
                    end_ns=int(s.get("endTimeUnixNano", 0)),
                    status=_enum(status.get("code", 0), _STATUS, "STATUS_CODE_"),
                    status_message=str(status.get("message", "")),
                    attributes=_attributes(s.get("attributes")),
                    links=tuple(
                        LinkRecord(
                            str(link.get("traceId", "")).lower(),
                            str(link.get("spanId", "")).lower(),
                            _attributes(link.get("attributes")),
                        )
                        for link in s.get("links") or ()
                    ),
                    events=tuple(
                        EventRecord(
                            str(e.get("name", "")),
                            int(e.get("timeUnixNano", 0)),
                            _attributes(e.get("attributes")),
                        )
                        for e in s.get("events") or ()
                    ),
                    resource=resource,
                )


def iter_spans_file(path: str | os.PathLike[str]) -> Iterator[SpanRecord]:
    """Stream the spans of an OTLP/JSON-lines file, one line at a time."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                yield from iter_otlp_json(document.get("resourceSpans") or ())
            except (ValueError, AttributeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{os.fspath(path)}:{number}: not an OTLP/JSON line: {exc}"
                ) from exc
