"""Span exporters: OTLP/JSON lines to a file, and a wrapper that strips content.

:class:`OTLPJsonLinesExporter` writes each batch as one line of the OpenTelemetry
Collector's ``file``-exporter format, encoded by :mod:`telemetry.otlp_json`.

:class:`RedactingSpanExporter` removes content attributes before a span leaves the
process; :class:`CountingSpanExporter`, :class:`CountingMetricExporter` and
:class:`SpanCounter` feed the exit report and the pipeline-health metrics.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link
from opentelemetry.util.types import Attributes

from telemetry import compat
from telemetry.otlp_json import encode_spans_json

log = logging.getLogger(__name__)


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
            data = encode_spans_json(spans, end="\n").encode("utf-8", "backslashreplace")
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
