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
from telemetry.export import (
    CountingMetricExporter,
    CountingSpanExporter,
    OTLPJsonLinesExporter,
    RedactingSpanExporter,
    SpanCounter,
    count_drops,
)
from telemetry.metrics import ExporterCounts, Instruments, PipelineCounts, close_instruments
from telemetry.spans import LIVE_SNIPPET_CHARS, ContentPolicy

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME: Final = "orchestrace"
CAPTURE_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
CONTENT_MAX_ENV: Final = "ORCHESTRACE_CONTENT_MAX_CHARS"
DEFAULT_CONTENT_MAX_CHARS: Final = 2048
SHUTDOWN_TIMEOUT_ENV: Final = "ORCHESTRACE_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT: Final = 3.0
DEFAULT_METRIC_INTERVAL_MS: Final = 5000.0
#: The last part of the shutdown timeout kept for the metrics (at most this many seconds):
#: a stalled trace exporter cannot keep the final metrics export — which reports the spans
#: it could not send — from running.
METRICS_SHUTDOWN_RESERVE: Final = 1.0

# Larger than the SDK defaults (2048 / 512) so a burst of thousands of agents is not
# dropped; each can still be set with the standard OTEL_BSP_* variables.
_BSP_DEFAULTS: Final = {
    "OTEL_BSP_MAX_QUEUE_SIZE": 65536,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 2048,
    "OTEL_BSP_SCHEDULE_DELAY": 500,
}

_OTLP_ENDPOINT_VARS: Final = {
    "traces": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    "metrics": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, signal: str) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        has_endpoint = any(os.environ.get(v) for v in _OTLP_ENDPOINT_VARS[signal])
        return ["otlp"] if has_endpoint else []
    return [p.strip().lower() for p in raw.split(",") if p.strip() and p.strip() != "none"]


def _protocol(signal: str) -> str:
    return (
        (
            os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        )
        .strip()
        .lower()
    )


def capture_content_enabled() -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for content."""
    return _env_flag(CAPTURE_ENV)


def content_policy(*, live: bool) -> ContentPolicy:
    """How much content spans carry: the capture limit, a live-view snippet, or none."""
    if capture_content_enabled():
        raw = os.environ.get(CONTENT_MAX_ENV, "")
        limit = int(raw) if raw.isdigit() else DEFAULT_CONTENT_MAX_CHARS
        return ContentPolicy(limit, capture=True)
    return ContentPolicy(LIVE_SNIPPET_CHARS if live else 0)


def otlp_span_exporter() -> SpanExporter:
    """The OTLP trace exporter for the configured protocol (endpoint etc. from env)."""
    protocol = _protocol("traces")
    if protocol == "grpc":
        from telemetry.otlp_grpc import GrpcSpanExporter

        return GrpcSpanExporter()
    if protocol == "http/protobuf":
        from telemetry.otlp_http import HttpSpanExporter

        return HttpSpanExporter()
    raise ValueError(f"unsupported OTLP protocol {protocol!r} (use grpc or http/protobuf)")


def otlp_metric_exporter() -> MetricExporter:
    """The OTLP metric exporter for the configured protocol (endpoint etc. from env)."""
    protocol = _protocol("metrics")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HTTPMetricExporter,
        )

        return HTTPMetricExporter()
    raise ValueError(f"unsupported OTLP protocol {protocol!r} (use grpc or http/protobuf)")


def _batch(exporter: SpanExporter) -> BatchSpanProcessor:
    def setting(name: str) -> int:
        raw = os.environ.get(name, "")
        return int(raw) if raw.isdigit() else _BSP_DEFAULTS[name]

    return BatchSpanProcessor(
        exporter,
        max_queue_size=setting("OTEL_BSP_MAX_QUEUE_SIZE"),
        max_export_batch_size=setting("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        schedule_delay_millis=setting("OTEL_BSP_SCHEDULE_DELAY"),
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

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and shut down the providers; give up after ``timeout`` seconds.

        The spans file is flushed first. A collector that is unreachable or stalls cannot
        hold the process: shutdown runs in a daemon thread that is abandoned at the
        deadline. Returns True if everything shut down in time.
        """
        if self._shut:
            return True
        self._shut = True
        if timeout is None:
            raw = os.environ.get(SHUTDOWN_TIMEOUT_ENV, "")
            timeout = float(raw) if raw.replace(".", "", 1).isdigit() else DEFAULT_SHUTDOWN_TIMEOUT
        deadline = time.monotonic() + timeout
        # Spans get the deadline less a reserve; the metrics' final export, which carries
        # the pipeline's own counts (spans dropped at this deadline included), gets the rest.
        spans_deadline = deadline - min(METRICS_SHUTDOWN_RESERVE, timeout / 4)

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

        def _shutdown() -> None:
            traces = threading.Thread(
                target=_stop_traces, name="orchestrace-telemetry-shutdown-traces", daemon=True
            )
            traces.start()
            traces.join(max(0.0, spans_deadline - time.monotonic()))
            if traces.is_alive():
                self._traces_abandoned.set()
            # queued histogram measurements reach the SDK before its final collection
            _run(functools.partial(close_instruments, self.meter_provider))
            for stop in [getattr(self.meter_provider, "shutdown", None), *self.closers]:
                _run(stop)

        worker = threading.Thread(
            target=_shutdown, name="orchestrace-telemetry-shutdown", daemon=True
        )
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive() or not self._traces_flushed.is_set():
            log.warning("telemetry export did not finish within %.1fs; giving up", timeout)
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
    """
    if _env_flag("OTEL_SDK_DISABLED"):
        return Telemetry(
            enabled=False,
            tracer_provider=trace.NoOpTracerProvider(),
            meter_provider=metrics.NoOpMeterProvider(),
            content=ContentPolicy(0),
        )
    resource = Resource.create()
    service = str(resource.attributes.get(SERVICE_NAME, ""))
    if not os.environ.get("OTEL_SERVICE_NAME") and service.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    policy = content_policy(live=live)
    redact = frozenset() if capture_content_enabled() else sc.CONTENT_KEYS
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    names: list[str] = []

    counted: list[CountingSpanExporter] = []
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

    # The file goes first: shutdown flushes processors in order, so a stalled collector
    # later in the list cannot keep spans from reaching the file.
    if spans_file is not None:
        # Appended, line by line under a lock: two runs in one folder keep both their spans.
        add_exporter(OTLPJsonLinesExporter(spans_file, append=True), f"file:{spans_file}")
    for processor in processors:
        tracer_provider.add_span_processor(processor)
    for name in _env_list("OTEL_TRACES_EXPORTER", "traces"):
        if name == "otlp":
            add_exporter(otlp_span_exporter(), f"otlp/{_protocol('traces')}")
        elif name == "console":
            add_exporter(ConsoleSpanExporter(out=sys.stderr), "console")
        else:
            log.warning("unsupported OTEL_TRACES_EXPORTER value %r ignored", name)

    readers: list[MetricReader] = []
    closers: list[Callable[[], None]] = []
    metric_counters: list[CountingMetricExporter] = []

    def counting(exporter: MetricExporter, kind: str) -> CountingMetricExporter:
        metric_counters.append(CountingMetricExporter(exporter, kind))
        return metric_counters[-1]

    for name in _env_list("OTEL_METRICS_EXPORTER", "metrics"):
        if name == "otlp":
            kind = f"otlp/{_protocol('metrics')}"
            readers.append(
                PeriodicExportingMetricReader(
                    counting(otlp_metric_exporter(), kind),
                    export_interval_millis=_metric_interval(),
                )
            )
            names.append(f"metrics:{kind}")
        elif name == "console":
            readers.append(
                PeriodicExportingMetricReader(
                    counting(ConsoleMetricExporter(out=sys.stderr), "console")
                )
            )
            names.append("metrics:console")
        elif name == "prometheus":
            reader, close = prometheus_reader()
            readers.append(reader)
            closers.append(close)
            names.append("metrics:prometheus")
        else:
            log.warning("unsupported OTEL_METRICS_EXPORTER value %r ignored", name)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=readers, shutdown_on_exit=False
    )
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    telemetry = Telemetry(
        True, tracer_provider, meter_provider, policy, names, counted, ended, closers
    )
    telemetry.metric_counters = metric_counters
    # The pipeline's own health, as metrics: read from the counts above at each collection.
    Instruments.for_provider(meter_provider).pipeline.watch(telemetry)
    return telemetry


def _metric_interval() -> float:
    """OTEL_METRIC_EXPORT_INTERVAL, else 5 s: agent runs are short, and rate() panels need
    more than the single point the SDK's 60-second default would send before exit."""
    raw = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "")
    return float(raw) if raw.isdigit() else DEFAULT_METRIC_INTERVAL_MS


def prometheus_reader() -> tuple[MetricReader, Callable[[], None]]:
    """A Prometheus scrape endpoint on OTEL_EXPORTER_PROMETHEUS_HOST/PORT (localhost:9464).

    Returns the reader and a function that stops the scrape server.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
    port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
    server, thread = start_http_server(port=port, addr=host)

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(1.0)

    return PrometheusMetricReader(), close
