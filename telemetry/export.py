"""Span exporters: OTLP/JSON lines to a file, and a wrapper that strips content.

:class:`OTLPJsonLinesExporter` writes each batch as one ``ExportTraceServiceRequest`` in
OTLP/JSON — the OpenTelemetry Collector's file-exporter format: hex trace and span ids,
integer enums, 64-bit integers as decimal strings. It encodes directly from the SDK's
spans (no protobuf round trip), because it runs for every span of large runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link
from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

_KIND = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, (tuple, list)):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    return {"stringValue": str(v)}


def _attributes(attrs: Attributes) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in (attrs or {}).items()]


def encode_span(span: ReadableSpan) -> dict[str, Any]:
    """One span as an OTLP/JSON ``Span`` object."""
    ctx = span.context
    assert ctx is not None
    out: dict[str, Any] = {
        "traceId": format(ctx.trace_id, "032x"),
        "spanId": format(ctx.span_id, "016x"),
        "name": span.name,
        "kind": _KIND.get(span.kind.name, 1),
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
    }
    if span.parent is not None:
        out["parentSpanId"] = format(span.parent.span_id, "016x")
    if span.attributes:
        out["attributes"] = _attributes(span.attributes)
    if span.events:
        out["events"] = [_event(e) for e in span.events]
    if span.links:
        out["links"] = [_link(link) for link in span.links]
    status: dict[str, Any] = {}
    code = _STATUS[span.status.status_code.name]
    if code:
        status["code"] = code
    if span.status.description:
        status["message"] = span.status.description
    out["status"] = status
    return out


def _event(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"timeUnixNano": str(event.timestamp), "name": event.name}
    if event.attributes:
        out["attributes"] = _attributes(event.attributes)
    return out


def _link(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": format(link.context.trace_id, "032x"),
        "spanId": format(link.context.span_id, "016x"),
    }
    if link.attributes:
        out["attributes"] = _attributes(link.attributes)
    return out


def encode_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` (OTLP/JSON) grouping ``spans`` by resource and scope."""
    groups: dict[int, tuple[Any, dict[tuple[str, str], list[dict[str, Any]]]]] = {}
    for span in spans:
        resource = span.resource
        entry = groups.get(id(resource))
        if entry is None:
            entry = groups[id(resource)] = (resource, {})
        scope = span.instrumentation_scope
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        entry[1].setdefault(key, []).append(encode_span(span))
    resource_spans = []
    for resource, scopes in groups.values():
        resource_spans.append(
            {
                "resource": {"attributes": _attributes(resource.attributes if resource else {})},
                "scopeSpans": [
                    {
                        "scope": {"name": name, **({"version": version} if version else {})},
                        "spans": encoded,
                    }
                    for (name, version), encoded in scopes.items()
                ],
            }
        )
    return {"resourceSpans": resource_spans}


class OTLPJsonLinesExporter(SpanExporter):
    """Appends one OTLP/JSON ``ExportTraceServiceRequest`` line per exported batch."""

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
        self._failed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans`` as one line and flush it (a crash loses nothing written)."""
        if not spans:
            return SpanExportResult.SUCCESS
        line = json.dumps(encode_request(spans), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                if not self._failed:
                    log.error("cannot write spans to %s: %s", self.path, exc)
                    self._failed = True
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Lines are flushed as they are written."""
        return True

    def shutdown(self) -> None:
        """Close the file; later exports fail without raising."""
        with self._lock:
            if not self._file.closed:
                self._file.close()


class RedactingSpanExporter(SpanExporter):
    """Drops the ``redact_keys`` attributes from spans, events and links before export."""

    def __init__(self, inner: SpanExporter, redact_keys: frozenset[str]) -> None:
        self.inner = inner
        self.redact_keys = redact_keys

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export redacted copies of spans that carry content; others pass unchanged."""
        return self.inner.export([self._redact(s) for s in spans])

    def _has(self, attrs: Mapping[str, Any] | None) -> bool:
        return bool(attrs) and not self.redact_keys.isdisjoint(attrs)  # type: ignore[arg-type]

    def _strip(self, attrs: Attributes) -> dict[str, Any]:
        return {k: v for k, v in (attrs or {}).items() if k not in self.redact_keys}

    def _redact(self, span: ReadableSpan) -> ReadableSpan:
        if not (
            self._has(span.attributes)
            or any(self._has(link.attributes) for link in span.links)
            or any(self._has(e.attributes) for e in span.events)
        ):
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=self._strip(span.attributes),
            events=[Event(e.name, self._strip(e.attributes), e.timestamp) for e in span.events],
            links=[Link(link.context, self._strip(link.attributes)) for link in span.links],
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Shut down the wrapped exporter."""
        self.inner.shutdown()


class CountingSpanExporter(SpanExporter):
    """Counts the spans ``inner`` exported and failed to export, for the exit report."""

    def __init__(self, inner: SpanExporter, label: str) -> None:
        self.inner = inner
        self.label = label
        self.exported = 0
        self.failed = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through ``inner``; an exception counts as a failure, never escapes."""
        try:
            result = self.inner.export(spans)
        except Exception:
            log.exception("span exporter %s raised", self.label)
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Shut down the wrapped exporter."""
        self.inner.shutdown()


class SpanCounter(SpanProcessor):
    """Counts spans as they end: the number every exporter should have sent."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Count one ended span."""
        with self._lock:
            self.count += 1

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True
