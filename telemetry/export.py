"""Span exporters: OTLP/JSON lines to a file, and a wrapper that strips content.

:class:`OTLPJsonLinesExporter` writes each batch as one ``ExportTraceServiceRequest`` in
OTLP/JSON, one per line — the OpenTelemetry Collector's ``file``-exporter format: hex
trace and span ids, integer enums, 64-bit integers as decimal strings, default values
omitted. It encodes straight from the SDK's spans to JSON text (no protobuf round trip):
the output is field for field what ``MessageToDict(encode_spans(spans),
use_integers_for_enums=True)`` gives once ids are turned from base64 into hex (so exactly
what a Collector receiving these spans over OTLP writes), at a small fraction of the cost,
because it runs for every span of large runs.

:class:`RedactingSpanExporter` removes content attributes before a span leaves the
process; :class:`CountingSpanExporter`, :class:`CountingMetricExporter` and
:class:`SpanCounter` feed the exit report and the pipeline-health metrics.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any, Final

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from telemetry import compat

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
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
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
    if _INT64_MIN <= value <= _INT64_MAX:
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
            elif cls is int and _INT64_MIN <= value <= _INT64_MAX:
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


def encode_spans_json(spans: Sequence[ReadableSpan]) -> str:
    """``spans`` as one OTLP/JSON ``ExportTraceServiceRequest`` (compact, no newline).

    Attributes whose value cannot be encoded (an integer beyond int64, an unsupported
    type) are left out with a warning, as the SDK's protobuf encoder does.
    """
    return _encode(spans, "")


# --- exporters -----------------------------------------------------------------------------
class OTLPJsonLinesExporter(SpanExporter):
    """Writes one OTLP/JSON ``ExportTraceServiceRequest`` line per exported batch.

    The format is the OpenTelemetry Collector ``file`` exporter's, which
    :func:`telemetry.records.iter_spans_file` reads back. Each line goes to the operating
    system as soon as it is encoded (no user-space buffer), so a crash of the process loses
    nothing already exported; a write that fails part-way is cut back off the file, so the
    file stays readable. Errors never reach the SDK: they are logged once, and the batch
    reports ``FAILURE``.

    With ``append=True`` several processes can share one file: each line is written whole
    under an exclusive ``flock`` on the file, so lines of concurrent runs never interleave
    and no run truncates another's spans.
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file = open(self.path, "ab" if append else "wb", buffering=0)  # noqa: SIM115
        self._shared = append
        self._closed = False
        self._reported = False

    def _report(self, message: str, *args: object, exc_info: bool = False) -> None:
        if not self._reported:
            self._reported = True
            log.error(message, *args, exc_info=exc_info)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans`` as one line; ``FAILURE`` (never an exception) if that fails."""
        if self._closed:
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            # Lone surrogates cannot be UTF-8: they become JSON ``\udXXX`` escapes.
            data = _encode(spans, "\n").encode("utf-8", "backslashreplace")
        except Exception:  # a span the encoder cannot handle must not break the SDK's worker
            self._report("cannot encode spans for %s", self.path, exc_info=True)
            return SpanExportResult.FAILURE
        with self._lock:
            if self._file.closed:  # shut down while this batch was being encoded
                return SpanExportResult.FAILURE
            return self._write(data)

    def _write(self, data: bytes) -> SpanExportResult:
        if not self._shared:
            return self._write_whole(data)
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks: write unlocked, say so once
            self._report("cannot lock %s (%s); writing without a lock", self.path, exc)
            return self._write_whole(data)
        try:
            return self._write_whole(data)
        finally:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def _write_whole(self, data: bytes) -> SpanExportResult:
        start: int | None = None
        try:
            # Appending, the position is the file's end (another process may have grown it).
            start = os.fstat(self._file.fileno()).st_size if self._shared else self._file.tell()
            view = memoryview(data)
            while view:
                written = self._file.write(view)
                if not written:
                    raise OSError("no progress writing spans")
                view = view[written:]
        except (OSError, ValueError) as exc:
            self._report("cannot write spans to %s: %s", self.path, exc)
            if start is not None:
                try:
                    os.ftruncate(self._file.fileno(), start)
                    self._file.seek(start)
                except (OSError, ValueError):
                    pass
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every line is handed to the operating system as it is written: nothing to do."""
        with self._lock:
            if self._closed:
                return True
            try:
                self._file.flush()
            except (OSError, ValueError) as exc:
                self._report("cannot flush spans to %s: %s", self.path, exc)
                return False
        return True

    def shutdown(self) -> None:
        """Close the file; later exports return ``FAILURE`` without raising."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._file.close()
            except OSError as exc:
                self._report("cannot close %s: %s", self.path, exc)


def _without(attributes: Attributes, keys: frozenset[str], dropped: int) -> Attributes:
    """``attributes`` minus ``keys``, keeping the SDK's dropped-attributes count."""
    kept = {k: v for k, v in (attributes or {}).items() if k not in keys}
    return compat.counted_attributes(kept, dropped)


class _WrappingExporter(SpanExporter):
    """An exporter in front of ``inner``: flush and shutdown go straight through."""

    inner: SpanExporter

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Shut down the wrapped exporter."""
        self.inner.shutdown()


class RedactingSpanExporter(_WrappingExporter):
    """Drops the ``redact_keys`` attributes from spans, events and links before export.

    A span that carries none of the keys is passed on as the same object; one that does
    is replaced by a ``ReadableSpan`` copy without them (all other data, including the
    dropped counts, unchanged).
    """

    def __init__(self, inner: SpanExporter, redact_keys: frozenset[str]) -> None:
        self.inner = inner
        self.redact_keys = frozenset(redact_keys)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through ``inner``, with redacted copies of the spans that need one."""
        if not self.redact_keys:
            return self.inner.export(spans)
        redacted = [self._redact(s) for s in spans]
        if all(new is old for new, old in zip(redacted, spans, strict=True)):
            return self.inner.export(spans)
        return self.inner.export(redacted)

    def _has(self, attributes: Attributes) -> bool:
        return bool(attributes) and not self.redact_keys.isdisjoint(attributes or ())

    def _redact(self, span: ReadableSpan) -> ReadableSpan:
        # Runs on every exported span: each property read copies, so read each once and
        # test with set operations (most spans carry no content key at all).
        keys = self.redact_keys
        events, links = span.events, span.links
        if keys.isdisjoint(span.attributes or ()) and not any(
            item.attributes and not keys.isdisjoint(item.attributes)
            for group in (events, links)
            for item in group
        ):
            return span
        new_events = compat.counted_list(
            [
                Event(e.name, _without(e.attributes, keys, e.dropped_attributes), e.timestamp)
                if self._has(e.attributes)
                else e
                for e in events
            ],
            span.dropped_events,
        )
        new_links = compat.counted_list(
            [
                Link(link.context, _without(link.attributes, keys, link.dropped_attributes))
                if self._has(link.attributes)
                else link
                for link in links
            ],
            span.dropped_links,
        )
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_without(span.attributes, keys, span.dropped_attributes),
            events=new_events,
            links=new_links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


class CountingSpanExporter(_WrappingExporter):
    """Counts the spans ``inner`` exported and failed to export, for the exit report and the
    pipeline-health metrics.

    ``label`` names it in the report (``file:spans.jsonl``, ``otlp/grpc``); ``kind`` is the
    ``orchestrace.exporter`` attribute of its metrics, the label without a file path.
    ``queue_dropped`` counts the spans its batch processor discarded (queue full, or ended
    after shutdown), once :func:`count_drops` has connected the two.
    """

    def __init__(self, inner: SpanExporter, label: str, *, kind: str | None = None) -> None:
        self.inner = inner
        self.label = label
        self.kind = kind if kind is not None else label.split(":", 1)[0]
        self.exported = 0
        self.failed = 0
        self.queue_dropped = 0
        self._lock = threading.Lock()

    def dropped(self, count: int) -> None:
        """``count`` spans meant for this exporter were dropped before reaching it."""
        with self._lock:
            self.queue_dropped += count

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


class _DropHook:
    """Stands in for a batch processor's internal metrics hook and counts what it drops.

    The SDK's ``BatchProcessor`` calls ``drop_items`` only when it discards data (a full
    queue, or a span ended after shutdown) and ``finish_items`` once per batch: nothing runs
    per span. Every call is passed on to the SDK's own hook.
    """

    def __init__(self, inner: Any, counter: CountingSpanExporter) -> None:
        self._inner = inner
        self._counter = counter

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        self._counter.dropped(count)
        self._inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)


def count_drops(processor: BatchSpanProcessor, counter: CountingSpanExporter) -> bool:
    """Count in ``counter.queue_dropped`` the spans ``processor`` discards.

    Uses the hook the SDK's batch processor reports its drops to (``_batch_processor.
    _metrics``, opentelemetry-sdk 1.3x–1.4x). Returns False, changing nothing, when this SDK
    has no such hook: drops are then known only once the processor has shut down (spans
    ended − exported − failed), which is what the exit report has always used.
    """
    hook = compat.batch_drop_hook(processor)
    if hook is None:
        return False
    compat.replace_batch_drop_hook(processor, _DropHook(hook, counter))
    return True


class CountingMetricExporter(MetricExporter):
    """A metric exporter in front of ``inner`` that counts the data points it exported and
    failed to export (``orchestrace.telemetry.metric_points.*``, by ``kind``).

    A failed export's points are counted at once but reported with the next collection.
    Temporality and aggregation preferences are ``inner``'s.
    """

    def __init__(self, inner: MetricExporter, kind: str) -> None:
        temporality, aggregation = compat.metric_preferences(inner)
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        self.inner = inner
        self.kind = kind
        self.exported = 0
        self.failed = 0
        self._lock = threading.Lock()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        """Export through ``inner``; an exception counts as a failure and is re-raised."""
        points = _data_points(metrics_data)
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            with self._lock:
                self.failed += points
            raise
        with self._lock:
            if result is MetricExportResult.SUCCESS:
                self.exported += points
            else:
                self.failed += points
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Shut down the wrapped exporter."""
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _data_points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource in metrics_data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )


class SpanCounter(SpanProcessor):
    """Counts spans as they end: the number every exporter should have sent."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        """Count one ended span."""
        with self._lock:
            self.count += 1
