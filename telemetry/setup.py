"""Tracer and meter providers from the standard ``OTEL_*`` environment; flush and shutdown.

Honoured: ``OTEL_SDK_DISABLED``, ``OTEL_SERVICE_NAME`` (default ``orchestrace``),
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER`` and ``OTEL_METRICS_EXPORTER``
(comma-separated: ``otlp``, ``console``, ``none``; metrics also ``prometheus``),
``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT`` / ``_PROTOCOL`` (``grpc`` or
``http/protobuf``) / ``_HEADERS`` / ``_TIMEOUT``, ``OTEL_EXPORTER_PROMETHEUS_HOST`` /
``_PORT``, ``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``.

When ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` are unset, OTLP is used only if an
OTLP endpoint is configured: the offline demo must not spend its exit retrying a collector
that is not there.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from telemetry import semconv as sc
from telemetry import settings
from telemetry.export import (
    CountingMetricExporter,
    CountingSpanExporter,
    OTLPJsonLinesExporter,
    RedactingSpanExporter,
    SpanCounter,
    count_drops,
)
from telemetry.liveness import Endpoint
from telemetry.metrics import ExporterCounts, Instruments, PipelineCounts, close_instruments
from telemetry.spans import LIVE_SNIPPET_CHARS, ContentPolicy

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME: Final = "orchestrace"
CAPTURE_ENV: Final = settings.CAPTURE_CONTENT.name
CONTENT_MAX_ENV: Final = settings.CONTENT_MAX_CHARS.name
SHUTDOWN_TIMEOUT_ENV: Final = settings.SHUTDOWN_TIMEOUT.name
#: The last part of the shutdown timeout kept for the metrics (at most this many seconds):
#: a stalled trace exporter cannot keep the final metrics export — which reports the spans
#: it could not send — from running.
METRICS_SHUTDOWN_RESERVE: Final = 1.0
#: How often the exit looks at the exporters' progress while it waits on them.
_POLL_SECONDS: Final = 0.05

_OTLP_ENDPOINT_VARS: Final = {
    "traces": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    "metrics": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
}


def _exporter_names(signal: str) -> list[str]:
    """OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER; unset: otlp if an endpoint is set."""
    setting = settings.TRACES_EXPORTER if signal == "traces" else settings.METRICS_EXPORTER
    if not setting.given():
        has_endpoint = any(os.environ.get(v, "").strip() for v in _OTLP_ENDPOINT_VARS[signal])
        return ["otlp"] if has_endpoint else []
    names: list[str] = []
    for name in setting.get():
        if name not in settings.EXPORTER_NAMES[signal]:
            log.warning(
                "%s: unsupported exporter %r ignored (expected %s)",
                setting.name,
                name,
                setting.accepts,
            )
        elif name != "none" and name not in names:
            names.append(name)
    return names


def _protocol(signal: str) -> str:
    """The OTLP protocol of ``signal``; SettingError for one we do not support."""
    specific = settings.SIGNAL_PROTOCOL[signal]
    return specific.get() if specific.given() else settings.PROTOCOL.get()


def capture_content_enabled() -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for content."""
    return settings.CAPTURE_CONTENT.get()


def content_policy(*, live: bool) -> ContentPolicy:
    """How much content spans carry: the capture limit, a live-view snippet, or none."""
    if capture_content_enabled():
        return ContentPolicy(int(settings.CONTENT_MAX_CHARS.get()), capture=True)
    return ContentPolicy(LIVE_SNIPPET_CHARS if live else 0)


def otlp_span_exporter() -> SpanExporter:
    """The OTLP trace exporter for the configured protocol (endpoint etc. from env).

    Raises :class:`~telemetry.settings.SettingError` for an unsupported protocol.
    """
    if _protocol("traces") == "grpc":
        from telemetry.otlp_grpc import GrpcSpanExporter

        return GrpcSpanExporter()
    from telemetry.otlp_http import HttpSpanExporter

    return HttpSpanExporter()


def otlp_metric_exporter() -> MetricExporter:
    """The OTLP metric exporter for the configured protocol (endpoint etc. from env).

    Raises :class:`~telemetry.settings.SettingError` for an unsupported protocol.
    """
    if _protocol("metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )

    return HTTPMetricExporter()


def _batch(exporter: SpanExporter) -> BatchSpanProcessor:
    queue = int(settings.BSP_MAX_QUEUE_SIZE.get())
    batch = int(settings.BSP_MAX_EXPORT_BATCH_SIZE.get())
    if batch > queue:
        # A sane queue size smaller than our default batch: the SDK would refuse the pair.
        if settings.BSP_MAX_EXPORT_BATCH_SIZE.given():
            log.warning(
                "%s=%d is larger than %s=%d; using %d",
                settings.BSP_MAX_EXPORT_BATCH_SIZE.name,
                batch,
                settings.BSP_MAX_QUEUE_SIZE.name,
                queue,
                queue,
            )
        batch = queue
    return BatchSpanProcessor(
        exporter,
        max_queue_size=queue,
        max_export_batch_size=batch,
        schedule_delay_millis=settings.BSP_SCHEDULE_DELAY.get(),
        export_timeout_millis=settings.BSP_EXPORT_TIMEOUT.get(),
    )


@dataclass
class Telemetry:
    """The configured providers; :meth:`shutdown` flushes everything within a deadline."""

    enabled: bool
    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    content: ContentPolicy
    exporters: list[str] = field(default_factory=list)
    counters: list[CountingSpanExporter] = field(default_factory=list)
    ended: SpanCounter | None = None
    #: Extra resources to release at shutdown (the Prometheus scrape server).
    closers: list[Callable[[], None]] = field(default_factory=list)
    _shut: bool = False
    #: Metric exporters, counting the points they sent and failed to send.
    metric_counters: list[CountingMetricExporter] = field(default_factory=list)
    #: Set once the tracer provider's shutdown has returned: every batch processor has
    #: drained its queue, so a span neither exported nor failed was dropped (queue full).
    _traces_flushed: threading.Event = field(default_factory=threading.Event)
    #: Set when the spans' share of the shutdown deadline passed first: what is still
    #: queued counts as dropped from then on.
    _traces_abandoned: threading.Event = field(default_factory=threading.Event)
    #: The largest dropped count reported per span exporter (a counter never goes down,
    #: even if a stalled export completes after the deadline).
    _dropped_reported: dict[int, int] = field(default_factory=dict)
    _counts_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set when Ctrl-C (SIGINT) ended :meth:`shutdown`'s wait on the exporters.
    interrupted: bool = False
    #: Whether each OTLP span exporter's receiver answers (:mod:`telemetry.liveness`): a
    #: receiver that answers while an export shows no progress is slow, not dead.
    probes: list[Callable[[], bool]] = field(default_factory=list)

    def pipeline_counts(self) -> PipelineCounts:
        """Spans ended; per exporter, spans exported, failed and dropped; metric points.

        What the ``orchestrace.telemetry.*`` metrics report (see
        :class:`telemetry.metrics.PipelineHealth`). Dropped spans are the ones the batch
        processor discarded (queue full) while the run goes on; once the tracer provider has
        shut down, or its share of the shutdown deadline has passed, every span neither
        exported nor failed counts as dropped, as in :meth:`export_problems`.
        """
        total = self.ended.count if self.ended is not None else 0
        settled = self._traces_flushed.is_set() or self._traces_abandoned.is_set()
        spans = []
        with self._counts_lock:
            for c in self.counters:
                exported, failed = c.exported, c.failed
                dropped = c.queue_dropped
                if settled:
                    dropped = max(dropped, total - exported - failed)
                dropped = max(dropped, self._dropped_reported.get(id(c), 0))
                self._dropped_reported[id(c)] = dropped
                spans.append(ExporterCounts(c.kind, exported, failed, dropped))
        points = [ExporterCounts(m.kind, m.exported, m.failed) for m in self.metric_counters]
        return PipelineCounts(total, spans, points)

    def export_problems(self) -> list[str]:
        """One line per exporter that did not get every span out (queue full or failures).

        Meaningful after :meth:`shutdown`; also logged as warnings.
        """
        problems: list[str] = []
        total = self.ended.count if self.ended is not None else 0
        flushed = self._traces_flushed.is_set()
        for c in self.counters:
            missing = total - c.exported
            if missing <= 0:
                continue
            rest = max(0, missing - c.failed)
            if not rest:
                lost = ""
            elif flushed:
                lost = f", {rest} dropped: export queue full, raise OTEL_BSP_MAX_QUEUE_SIZE"
            else:
                lost = f", {rest} dropped or still queued at the shutdown deadline"
            problems.append(
                f"{c.label}: {c.exported} of {total} spans exported "
                f"({c.failed} failed to export{lost})"
            )
            log.warning("spans not exported: %s", problems[-1])
        return problems

    def exported(self) -> int:
        """Spans exported so far, summed over the span exporters: the exit's measure of
        progress (failures are not progress: an erroring collector gets no more time)."""
        return sum(c.exported for c in self.counters)

    def _failed(self) -> int:
        return sum(c.failed for c in self.counters)

    def _receivers_answer(self) -> bool:
        """Whether any OTLP receiver answers a probe (a probe that fails is a no)."""
        for probe in self.probes:
            try:
                if probe():
                    return True
            except Exception:  # telemetry never raises into the program
                log.debug("receiver probe failed", exc_info=True)
        return False

    def shutdown(
        self,
        timeout: float | None = None,
        *,
        ceiling: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> bool:
        """Flush and shut down the providers; give up on exporters that stop making progress.

        The spans file is flushed first. The exit waits while the span exporters keep
        exporting: it gives up ``timeout`` seconds (``ORCHESTRACE_SHUTDOWN_TIMEOUT``, 3)
        after the last span exported — so an unreachable, erroring or stalled collector
        holds the exit that long — and after ``ceiling`` seconds in all
        (``ORCHESTRACE_SHUTDOWN_CEILING``, 60) even while a slow one keeps answering.
        One request that takes longer than ``timeout`` shows no progress: then the
        receiver is probed on a new connection (:mod:`telemetry.liveness`, up to 1 s), and
        one that answers gets another ``timeout``, up to the ceiling. The last part
        of ``timeout`` (a quarter, at most 1 s) is kept for the metrics' final export.
        Shutdown runs in daemon threads that are abandoned when it gives up; ``clock``
        measures the waits (tests move it). Ctrl-C during the wait ends it (sets
        :attr:`interrupted`; no KeyboardInterrupt escapes). Returns True if everything shut
        down in time.
        """
        if self._shut:
            return True
        self._shut = True
        if timeout is None:
            timeout = settings.SHUTDOWN_TIMEOUT.get()
        if ceiling is None:
            ceiling = settings.SHUTDOWN_CEILING.get()
        ceiling = max(ceiling, timeout)
        # The metrics' final export, which carries the pipeline's own counts (spans
        # dropped at the spans' deadline included), gets a reserve after the spans.
        reserve = min(METRICS_SHUTDOWN_RESERVE, timeout / 4)

        def _run(stop: Callable[[], object] | None) -> None:
            if stop is None:
                return
            try:
                stop()
            except Exception:  # telemetry never raises into the program
                log.exception("telemetry shutdown failed")

        def _stop_traces() -> None:
            _run(getattr(self.tracer_provider, "shutdown", None))
            self._traces_flushed.set()

        def _stop_metrics() -> None:
            # queued histogram measurements reach the SDK before its final collection
            _run(functools.partial(close_instruments, self.meter_provider))
            for stop in [getattr(self.meter_provider, "shutdown", None), *self.closers]:
                _run(stop)

        start = last_progress = clock()
        progress = self.exported()
        failed = self._failed()
        traces = threading.Thread(
            target=_stop_traces, name="orchestrace-telemetry-shutdown-traces", daemon=True
        )
        traces.start()
        try:
            while True:
                traces.join(_POLL_SECONDS)
                if not traces.is_alive():
                    break
                now, exported = clock(), self.exported()
                if exported != progress:
                    progress, last_progress = exported, now
                if now - start >= ceiling - reserve:
                    self._traces_abandoned.set()
                    break
                if now - last_progress >= timeout - reserve:
                    # Slow, not dead: no export failed meanwhile (an erroring receiver gets
                    # no more time) and the receiver answers on a new connection.
                    if self._failed() == failed and self._receivers_answer():
                        log.info("telemetry: the receiver answers; still waiting on its export")
                        last_progress = clock()
                        continue
                    self._traces_abandoned.set()
                    break
        except KeyboardInterrupt:
            # Ctrl-C while the exit waits on a collector: stop waiting, keep what the
            # spans file has, and let the caller print the summary.
            self.interrupted = True
            self._traces_abandoned.set()
            log.warning("telemetry export interrupted (SIGINT); spans still queued dropped")
            return False
        metrics = threading.Thread(
            target=_stop_metrics, name="orchestrace-telemetry-shutdown-metrics", daemon=True
        )
        metrics.start()
        metrics.join(reserve if self._traces_abandoned.is_set() else max(reserve, timeout))
        if metrics.is_alive() or not self._traces_flushed.is_set():
            log.warning(
                "telemetry export did not finish (%.1fs without progress, or %.1fs in all); "
                "giving up",
                timeout,
                ceiling,
            )
            return False
        return True


def setup_telemetry(
    *,
    spans_file: Path | None = None,
    processors: Sequence[SpanProcessor] = (),
    live: bool = False,
    set_global: bool = True,
) -> Telemetry:
    """Build providers from the environment.

    ``processors`` (the live view, the summary collector) see every span with its content
    attributes; the exporters (spans file, OTLP, console) get spans with content stripped
    unless content capture is on. ``OTEL_SDK_DISABLED=true`` gives no-op providers.

    Every setting is read before anything is opened: raises
    :class:`~telemetry.settings.SettingError` for a bad value of a setting that refuses one
    (an unsupported protocol, a Prometheus port in use, ...; see
    :mod:`telemetry.settings`) and ``OSError`` when the spans file cannot be opened —
    either way with no file created and no server left listening.
    """
    if settings.SDK_DISABLED.get():
        return Telemetry(
            enabled=False,
            tracer_provider=trace.NoOpTracerProvider(),
            meter_provider=metrics.NoOpMeterProvider(),
            content=ContentPolicy(0),
        )
    settings.check("telemetry")
    trace_names = _exporter_names("traces")
    metric_names = _exporter_names("metrics")
    for signal, names_of in (("traces", trace_names), ("metrics", metric_names)):
        if "otlp" in names_of:
            _protocol(signal)
    resource = _resource()
    policy = content_policy(live=live)
    redact = frozenset() if capture_content_enabled() else sc.CONTENT_KEYS
    # Metric readers first: the Prometheus port may be taken, and that must be said before
    # the spans file is opened.
    readers = _MetricReaders.from_names(metric_names)
    try:
        span_exporters, probes = _span_exporters(trace_names, spans_file)
    except BaseException:
        readers.close_all()
        raise

    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    counted: list[CountingSpanExporter] = []
    names: list[str] = []
    ended = SpanCounter()
    tracer_provider.add_span_processor(ended)

    def add_exporter(exporter: SpanExporter, label: str) -> None:
        counter = CountingSpanExporter(
            RedactingSpanExporter(exporter, redact) if redact else exporter, label
        )
        counted.append(counter)
        processor = _batch(counter)
        count_drops(processor, counter)  # drops counted as they happen, for the metrics
        tracer_provider.add_span_processor(processor)
        names.append(label)

    # The spans file goes first: shutdown flushes processors in order, so a stalled
    # collector later in the list cannot keep spans from reaching the file.
    if spans_file is not None:
        add_exporter(*span_exporters.pop(0))
    for processor in processors:
        tracer_provider.add_span_processor(processor)
    for exporter, label in span_exporters:
        add_exporter(exporter, label)
    names.extend(readers.labels)

    meter_provider = MeterProvider(
        resource=resource, metric_readers=readers.readers, shutdown_on_exit=False
    )
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    telemetry = Telemetry(
        True, tracer_provider, meter_provider, policy, names, counted, ended, readers.closers
    )
    telemetry.metric_counters = readers.counters
    telemetry.probes = probes
    # The pipeline's own health, as metrics: read from the counts above at each collection.
    Instruments.for_provider(meter_provider).pipeline.watch(telemetry)
    return telemetry


def _resource() -> Resource:
    """The SDK's resource from the environment, named ``orchestrace`` when no service name
    was given."""
    resource = Resource.create()
    service = str(resource.attributes.get(SERVICE_NAME, ""))
    if not settings.SERVICE_NAME.given() and service.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


@dataclass
class _MetricReaders:
    """The metric readers of ``OTEL_METRICS_EXPORTER``, their counting exporters, labels
    (for the console's ``telemetry:`` line) and what to close at shutdown."""

    readers: list[MetricReader] = field(default_factory=list)
    counters: list[CountingMetricExporter] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def from_names(cls, names: Sequence[str]) -> _MetricReaders:
        """Raises SettingError (a Prometheus port in use, ...) with nothing left open."""
        made = cls()
        try:
            for name in names:
                if name == "prometheus":
                    reader, close = prometheus_reader()
                    made.readers.append(reader)
                    made.closers.append(close)
                    made.labels.append("metrics:prometheus")
                    continue
                kind = f"otlp/{_protocol('metrics')}" if name == "otlp" else "console"
                exporter = (
                    otlp_metric_exporter()
                    if name == "otlp"
                    else ConsoleMetricExporter(out=sys.stderr)
                )
                made.counters.append(CountingMetricExporter(exporter, kind))
                made.readers.append(
                    PeriodicExportingMetricReader(
                        made.counters[-1],
                        export_interval_millis=_metric_interval(),
                        export_timeout_millis=settings.METRIC_EXPORT_TIMEOUT.get(),
                    )
                )
                made.labels.append(f"metrics:{kind}")
        except BaseException:
            made.close_all()
            raise
        return made

    def close_all(self) -> None:
        for close in self.closers:
            close()


def _span_exporters(
    names: Sequence[str], spans_file: Path | None
) -> tuple[list[tuple[SpanExporter, str]], list[Callable[[], bool]]]:
    """The span exporters of ``OTEL_TRACES_EXPORTER`` with their labels (the spans file
    first), and a liveness probe per OTLP receiver (:mod:`telemetry.liveness`)."""
    exporters: list[tuple[SpanExporter, str]] = []
    probes: list[Callable[[], bool]] = []
    for name in names:
        if name == "otlp":
            exporters.append((otlp_span_exporter(), f"otlp/{_protocol('traces')}"))
            endpoint = Endpoint.for_traces(_protocol("traces"))
            if endpoint is not None:
                probes.append(endpoint.answers)
        else:
            exporters.append((ConsoleSpanExporter(out=sys.stderr), "console"))
    # The file is opened last: nothing else can fail after it (no empty spans file).
    # Appended, line by line under a lock: two runs in one folder keep both their spans.
    if spans_file is not None:
        exporters.insert(0, (OTLPJsonLinesExporter(spans_file, append=True), f"file:{spans_file}"))
    return exporters, probes


def _metric_interval() -> float:
    """OTEL_METRIC_EXPORT_INTERVAL, else 5 s: agent runs are short, and rate() panels need
    more than the single point the SDK's 60-second default would send before exit."""
    return settings.METRIC_EXPORT_INTERVAL.get()


def prometheus_reader() -> tuple[MetricReader, Callable[[], None]]:
    """A Prometheus scrape endpoint on OTEL_EXPORTER_PROMETHEUS_HOST/PORT (localhost:9464).

    Returns the reader and a function that stops the scrape server. Raises
    :class:`~telemetry.settings.SettingError` naming the port setting when the server
    cannot listen (the port is in use, the host is not this machine's).
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    host = settings.PROMETHEUS_HOST.get()
    port = int(settings.PROMETHEUS_PORT.get())
    try:
        server, thread = start_http_server(port=port, addr=host)
    except OSError as exc:
        raise settings.SettingError(
            f"the Prometheus exporter cannot listen on {host}:{port} "
            f"({exc.strerror or exc}); set {settings.PROMETHEUS_PORT.name} to a free port "
            f"or {settings.PROMETHEUS_HOST.name} to an address of this machine"
        ) from exc

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(1.0)

    return PrometheusMetricReader(), close
