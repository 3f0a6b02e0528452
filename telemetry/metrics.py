"""Metric instruments: the GenAI semantic-convention ones and orchestrace's own.

Labels stay bounded with thousands of agents: metrics carry the agent's *role* (lead,
helper, member), the model, the tool name and outcomes — never an agent's own name or a
message id. Per-agent detail lives in spans, and exemplars link a metric point to its trace.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, overload

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import (
    CallbackOptions,
    CallbackT,
    Histogram,
    Meter,
    MeterProvider,
    ObservableCounter,
    Observation,
)
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.util.types import Attributes

from telemetry import semconv as sc
from telemetry.version import __version__
from telemetry.waits import OPEN_WAITS, OpenWaits

log = logging.getLogger(__name__)


class Tally:
    """A monotonic counter kept as plain numbers and reported by an observable counter.

    ``add`` is one dictionary update on the agent's path; the SDK sees the totals only when
    a reader collects (every export interval, or a Prometheus scrape). Exported exactly like
    a synchronous counter (a cumulative monotonic sum, ``_total`` in Prometheus) but without
    an SDK measurement — attribute hashing, aggregation lookup, exemplar sampling — per
    event. Counts carry no exemplars; the histograms, which do, are where a spike is chased
    to its trace. Counts are integers unless a float is added (the cost counter, in USD).
    An empty value leaves its key out of the attribute set (an optional attribute, such as
    ``error.type`` on a counted success).
    """

    def __init__(
        self, meter: Meter, name: str, *, unit: str, description: str, keys: tuple[str, ...]
    ) -> None:
        self.keys = keys
        self.counts: dict[tuple[str, ...], float] = {}
        self.instrument = meter.create_observable_counter(
            name, callbacks=[self.observe], unit=unit, description=description
        )

    def add(self, amount: float, *values: str) -> None:
        """Count ``amount`` more for the attribute values ``values`` (in ``keys`` order)."""
        counts = self.counts
        counts[values] = counts.get(values, 0) + amount

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """The observable's callback: the running total of every attribute set seen."""
        return [
            Observation(total, {k: v for k, v in zip(self.keys, values, strict=True) if v})
            for values, total in self.counts.copy().items()
        ]


class PendingRecords:
    """Histogram measurements waiting to be handed to the SDK, off the agent's path.

    An SDK ``Histogram.record`` is costly (attribute hashing, aggregation lookup, exemplar
    sampling) and an agent step makes several. Like the ``BatchSpanProcessor`` for
    spans, the agent's path only appends ``(histogram, value, attributes, context)`` to a
    queue and a worker thread records them — while the event loop waits on the model.

    Nothing is lost or late for a reader: every collection (export interval, Prometheus
    scrape, shutdown) drains the queue first, through :meth:`observe_after_drain`, the first
    callback of an observable instrument, which the SDK runs before it reads the histograms.
    The context — hence the exemplar's trace and span — is the one captured at the event;
    an exemplar's timestamp is when the worker recorded it, normally within ``interval``.

    Memory stays bounded: past ``limit`` queued measurements the recording thread drains
    the queue itself (back-pressure instead of growth). The worker starts on the first
    measurement and exits after ``idle_rounds`` intervals with nothing to do, so idle
    providers hold no thread; :meth:`close` drains and stops it for good, after which
    measurements are recorded directly.
    """

    def __init__(
        self,
        *,
        interval: float = 0.5,
        batch: int = 2048,
        limit: int = 65_536,
        idle_rounds: int = 20,
    ) -> None:
        self.interval = interval
        self.batch = batch
        self.limit = limit
        self.idle_rounds = idle_rounds
        self._queue: deque[tuple[Histogram, float, Attributes, Context | None]] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False
        #: Measurements the SDK refused (raised on); the first is logged, the rest counted.
        self.failed = 0

    @property
    def worker(self) -> threading.Thread | None:
        """The recording thread while one runs (it exits after ``idle_rounds`` empty rounds
        and the next measurement starts another), else None."""
        return self._worker

    def put(
        self, histogram: Histogram, amount: float, attributes: Attributes, context: Context | None
    ) -> None:
        """Queue one measurement of ``histogram`` (the agent's path: an append)."""
        queue = self._queue
        queue.append((histogram, amount, attributes, context))
        if self._closed:  # closed, or closed while appending: record it here
            self.drain()
        elif self._worker is None:
            self._start()
        elif len(queue) >= self.batch:
            if len(queue) >= self.limit:
                self.drain()  # the worker cannot keep up: record here rather than grow
            elif not self._wake.is_set():  # a lock-free read; set() takes a lock
                self._wake.set()

    def drain(self) -> int:
        """Record every queued measurement now; returns how many there were."""
        queue = self._queue
        done = 0
        while True:
            try:
                histogram, amount, attributes, context = queue.popleft()
            except IndexError:
                return done
            try:
                histogram.record(amount, attributes, context=context)
            except Exception:  # telemetry never raises into the program
                self._failed()
            done += 1

    def observe_after_drain(self, _options: CallbackOptions) -> Iterable[Observation]:
        """An observable callback that observes nothing: it drains before a collection."""
        self.drain()
        return ()

    @property
    def queued(self) -> int:
        """Measurements not yet handed to the SDK."""
        return len(self._queue)

    def close(self) -> None:
        """Stop the worker, record what is queued; later measurements are recorded directly."""
        with self._lock:
            self._closed = True
            worker = self._worker
        self._wake.set()
        if worker is not None and worker is not threading.current_thread():
            worker.join(self.interval * 4)
        self.drain()
        if self.failed > 1:
            log.error("%d histogram measurements failed to record (first one logged)", self.failed)

    def _failed(self) -> None:
        # A broken metrics SDK fails on every measurement: one traceback, then a count.
        self.failed += 1
        if self.failed == 1:
            log.exception(
                "recording a histogram measurement failed; further failures are counted "
                "and reported when the metrics pipeline closes"
            )

    def _start(self) -> None:
        with self._lock:
            if self._worker is not None or self._closed:
                return
            self._worker = threading.Thread(
                target=self._run, name="orchestrace-metrics", daemon=True
            )
            self._worker.start()

    def _run(self) -> None:
        idle = 0
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.drain():
                idle = 0
                continue
            idle += 1
            if idle >= self.idle_rounds:
                with self._lock:
                    if not self._queue:
                        self._worker = None
                        return
                idle = 0


class DeferredHistogram:
    """A histogram whose ``record`` queues the measurement on a :class:`PendingRecords`."""

    def __init__(self, histogram: Histogram, pending: PendingRecords) -> None:
        self.histogram = histogram
        self._pending = pending

    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        """Queue one measurement (recorded by the SDK off the agent's path)."""
        self._pending.put(self.histogram, amount, attributes, context)


#: What the runtime records histograms through: the SDK's own, or a deferred one.
HistogramLike = Histogram | DeferredHistogram


class _Histogram:
    """A histogram of :class:`Instruments`, declared as a class attribute: its name, unit,
    description and bucket boundaries. An instance's value is the instrument (deferred on an
    SDK provider), created by ``Instruments.__init__``."""

    def __init__(self, name: str, unit: str, description: str, *, buckets: Sequence[float]) -> None:
        self.name, self.unit, self.description, self.buckets = name, unit, description, buckets
        self.attr = ""

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    @overload
    def __get__(self, instance: None, owner: type) -> _Histogram: ...
    @overload
    def __get__(self, instance: Instruments, owner: type) -> HistogramLike: ...
    def __get__(self, instance: Instruments | None, owner: type) -> _Histogram | HistogramLike:
        if instance is None:
            return self
        raise AttributeError(self.attr)  # never: __init__ puts the instrument in the instance

    def create(self, meter: Meter, pending: PendingRecords | None) -> HistogramLike:
        histogram = meter.create_histogram(
            self.name,
            unit=self.unit,
            description=self.description,
            explicit_bucket_boundaries_advisory=list(self.buckets),
        )
        return histogram if pending is None else DeferredHistogram(histogram, pending)


class _Tally:
    """A counter of :class:`Instruments` kept as a :class:`Tally`, declared as a class
    attribute: its name, unit, description and attribute keys."""

    def __init__(self, name: str, unit: str, description: str, *, keys: tuple[str, ...]) -> None:
        self.name, self.unit, self.description, self.keys = name, unit, description, keys
        self.attr = ""

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    @overload
    def __get__(self, instance: None, owner: type) -> _Tally: ...
    @overload
    def __get__(self, instance: Instruments, owner: type) -> Tally: ...
    def __get__(self, instance: Instruments | None, owner: type) -> _Tally | Tally:
        if instance is None:
            return self
        raise AttributeError(self.attr)  # never: __init__ puts the instrument in the instance

    def create(self, meter: Meter) -> Tally:
        return Tally(meter, self.name, unit=self.unit, description=self.description, keys=self.keys)


#: The attributes of the model-call counters, in order: operation, provider, request model
#: and response model (counted only for answered calls, so the response model is known).
CHAT_KEYS: Final = (
    sc.GEN_AI_OPERATION_NAME,
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_RESPONSE_MODEL,
)

#: The attributes of the latest conventions' token counters: the model-call ones and the
#: token modality.
USAGE_KEYS: Final = (*CHAT_KEYS, sc.GEN_AI_TOKEN_MODALITY)

#: The attributes of ``orchestrace.model.attempts``: operation, provider, request model, the
#: attempt's HTTP status (absent when no response came) and its error.type (absent: it
#: succeeded).
ATTEMPT_KEYS: Final = (
    sc.GEN_AI_OPERATION_NAME,
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_REQUEST_MODEL,
    sc.HTTP_RESPONSE_STATUS_CODE,
    sc.ERROR_TYPE,
)


class Instruments:
    """Every instrument orchestrace records, created once per meter provider.

    Use :meth:`for_provider`: every run recording to a provider shares one set, so the
    observable counters report process-wide totals and no instrument is registered twice.
    Each histogram and counter is one declaration below (a :class:`_Histogram` or a
    :class:`_Tally`); the agent-state, wait and pipeline instruments are built by
    ``__init__``.
    """

    operation_duration = _Histogram(
        sc.METRIC_OPERATION_DURATION,
        "s",
        "GenAI operation duration.",
        buckets=sc.DURATION_BUCKETS,
    )
    #: Streamed calls only: the time to the first content of the response, and the
    #: time per output token after it (see telemetry/semconv.py for the names).
    time_to_first_chunk = _Histogram(
        sc.METRIC_TIME_TO_FIRST_CHUNK,
        "s",
        "Time to receive the first chunk of a streamed response, from the start of the model call.",
        buckets=sc.DURATION_BUCKETS,
    )
    time_per_output_token = _Histogram(
        sc.METRIC_TIME_PER_OUTPUT_TOKEN,
        "s",
        "Time per output token after the first, for answered streamed calls: "
        "(duration - time to first chunk) / (output tokens - 1).",
        buckets=sc.TIME_PER_OUTPUT_TOKEN_BUCKETS,
    )
    token_usage = _Histogram(
        sc.METRIC_TOKEN_USAGE,
        "{token}",
        "Number of input and output tokens used per model call.",
        buckets=sc.TOKEN_BUCKETS,
    )
    cache_tokens = _Tally(
        sc.METRIC_CACHE_TOKENS,
        "{token}",
        "Prompt-cache input tokens, by kind (read or creation).",
        keys=(*CHAT_KEYS, sc.CACHE_KIND),
    )
    #: Every HTTP attempt of a model call, retries included, by how it ended.
    model_attempts = _Tally(
        sc.METRIC_MODEL_ATTEMPTS,
        "{attempt}",
        "Model-call HTTP attempts, retried ones included; error.type and "
        "http.response.status_code say how each ended (a stream ends with its last event).",
        keys=ATTEMPT_KEYS,
    )
    cost = _Tally(
        sc.METRIC_COST,
        sc.UNIT_USD,
        "List-price cost of answered model calls, in US dollars, for models "
        "with a known price (telemetry/prices.json or ORCHESTRACE_PRICES).",
        keys=CHAT_KEYS,
    )
    tool_duration = _Histogram(
        sc.METRIC_TOOL_DURATION,
        "s",
        "The duration of a single tool execution; error.type is set on failures.",
        buckets=sc.DURATION_BUCKETS,
    )
    invocation_duration = _Histogram(
        sc.METRIC_INVOCATION_DURATION,
        "s",
        "The duration of an agent invocation (invoke_agent) or a run "
        "(invoke_workflow); error.type is set when it ended in an error.",
        buckets=sc.INVOCATION_BUCKETS,
    )
    inference_calls = _Histogram(
        sc.METRIC_INFERENCE_CALLS,
        "{inference_call}",
        "The number of model calls an agent made during one invocation, failed ones included.",
        buckets=sc.CALL_COUNT_BUCKETS,
    )
    tool_calls = _Histogram(
        sc.METRIC_TOOL_CALLS,
        "{tool_call}",
        "The number of tool calls an agent made during one invocation, failed ones included.",
        buckets=sc.CALL_COUNT_BUCKETS,
    )
    # --- the latest GenAI conventions' model-call metrics (OTEL_SEMCONV_STABILITY_OPT_IN=
    # gen_ai_latest_experimental); a run records these or the ones above, never both.
    inference_duration = _Histogram(
        sc.METRIC_INFERENCE_DURATION,
        "s",
        "GenAI client inference operation duration.",
        buckets=sc.DURATION_BUCKETS,
    )
    inference_time_to_first_chunk = _Histogram(
        sc.METRIC_INFERENCE_TIME_TO_FIRST_CHUNK,
        "s",
        "Time to receive the first chunk of a streamed response, from the start of the model call.",
        buckets=sc.DURATION_BUCKETS,
    )
    inference_operation_input_tokens = _Histogram(
        sc.METRIC_INFERENCE_OPERATION_INPUT_TOKENS,
        "{token}",
        "The number of input (prompt) tokens used per inference operation.",
        buckets=sc.TOKEN_BUCKETS,
    )
    inference_operation_output_tokens = _Histogram(
        sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS,
        "{token}",
        "The number of output (completion) tokens used per inference operation.",
        buckets=sc.TOKEN_BUCKETS,
    )
    inference_input_tokens = _Tally(
        sc.METRIC_INFERENCE_INPUT_TOKENS,
        "{token}",
        "The number of input (prompt) tokens used, including cached tokens.",
        keys=USAGE_KEYS,
    )
    inference_output_tokens = _Tally(
        sc.METRIC_INFERENCE_OUTPUT_TOKENS,
        "{token}",
        "The number of output (completion) tokens used.",
        keys=USAGE_KEYS,
    )
    inference_cache_read_tokens = _Tally(
        sc.METRIC_INFERENCE_CACHE_READ_TOKENS,
        "{token}",
        "The number of input tokens served from a provider-managed cache.",
        keys=USAGE_KEYS,
    )
    inference_cache_write_tokens = _Tally(
        sc.METRIC_INFERENCE_CACHE_WRITE_TOKENS,
        "{token}",
        "The number of input tokens written to a provider-managed cache.",
        keys=USAGE_KEYS,
    )
    messages_sent = _Tally(
        sc.METRIC_MESSAGES_SENT,
        "{message}",
        "Messages posted to one recipient, by delivery outcome.",
        keys=(sc.AGENT_ROLE, sc.MESSAGE_OUTCOME),
    )
    messages_received = _Tally(
        sc.METRIC_MESSAGES_RECEIVED,
        "{message}",
        "Messages handed to a recipient's model context.",
        keys=(sc.AGENT_ROLE,),
    )
    delivery_latency = _Histogram(
        sc.METRIC_DELIVERY_LATENCY,
        "s",
        "Time from send to the recipient receiving the message.",
        buckets=sc.DURATION_BUCKETS,
    )
    agent_turns = _Tally(
        sc.METRIC_AGENT_TURNS,
        "{turn}",
        "Model turns taken by agents.",
        keys=(sc.AGENT_ROLE,),
    )
    agent_wait = _Histogram(
        sc.METRIC_AGENT_WAIT,
        "s",
        "Time agents spent blocked in wait_for_message.",
        buckets=sc.DURATION_BUCKETS,
    )
    runs = _Tally(
        sc.METRIC_RUNS,
        "{run}",
        "Completed runs, by scenario and outcome.",
        keys=(sc.RUN_SCENARIO, sc.RUN_OUTCOME),
    )
    #: Agents that reached a final state: counted by ``agent_states`` as they move.
    agents_ended = _Tally(
        sc.METRIC_AGENTS_ENDED,
        "{agent}",
        "Agents that ended, by role and final state (done, crashed, killed).",
        keys=(sc.AGENT_ROLE, sc.AGENT_STATE),
    )

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("orchestrace", __version__)
        #: Deferred histogram measurements, for an SDK provider; None: recorded directly
        #: (a no-op or proxy provider, where a record costs nothing worth moving).
        self.pending = PendingRecords() if isinstance(provider, SdkMeterProvider) else None
        for spec in vars(Instruments).values():
            if isinstance(spec, _Histogram):
                self.__dict__[spec.attr] = spec.create(meter, self.pending)
            elif isinstance(spec, _Tally):
                self.__dict__[spec.attr] = spec.create(meter)
        #: Agents by (role, state): plain counts updated on every state change, observed
        #: when the metrics are collected (no SDK measurement on the agent's path).
        #: Every collection runs the observable callbacks before it reads the histograms,
        #: so draining the queued measurements in this one's first callback means no
        #: reader ever misses one.
        self.agent_states = AgentStates(
            meter, before=None if self.pending is None else self.pending.observe_after_drain
        )
        self.agents = self.agent_states.instrument
        self.agent_states.ended = self.agents_ended
        #: Agents blocked in wait_for_message now, and the longest current wait.
        self.agent_waits = AgentWaits(meter)
        #: The telemetry pipeline's own counts; ``setup_telemetry`` attaches its exporters.
        self.pipeline = PipelineHealth(meter)

    @classmethod
    def for_provider(cls, meter_provider: MeterProvider | None = None) -> Instruments:
        """The instruments of ``meter_provider`` (default: the global one)."""
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        instruments = _INSTRUMENTS.get(provider)
        if instruments is None:
            instruments = _INSTRUMENTS[provider] = cls(provider)
        return instruments


class AgentStates:
    """How many agents are in each (role, state): the ``orchestrace.agents`` gauge.

    A state change is two integer updates; the observable up-down counter reads the counts
    when a reader collects. Buckets that drop to zero keep reporting 0, so a dashboard sees
    agents leave a state rather than a series vanish.
    """

    def __init__(self, meter: Meter, *, before: CallbackT | None = None) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        #: Counts each arrival in a final state (``orchestrace.agents.ended``), if set.
        self.ended: Tally | None = None
        self.instrument = meter.create_observable_up_down_counter(
            sc.METRIC_AGENTS,
            callbacks=[self.observe] if before is None else [before, self.observe],
            unit="{agent}",
            description="Agents currently in each state.",
        )

    def move(self, role: str, old: str | None, new: str | None) -> None:
        """One agent of ``role`` leaves ``old`` (None: it is new) for ``new`` (None: gone)."""
        if old is not None:
            self.counts[(role, old)] -= 1
        if new is not None:
            self.counts[(role, new)] += 1
            if self.ended is not None and new in _FINAL and old not in _FINAL:
                self.ended.add(1, role, new)

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """The observable's callback: one point per (role, state) seen so far."""
        return [
            Observation(count, {sc.AGENT_ROLE: role, sc.AGENT_STATE: state})
            for (role, state), count in self.counts.copy().items()
        ]


_FINAL: Final = sc.AGENT_FINAL_STATES


class AgentWaits:
    """``orchestrace.agents.waiting`` and ``orchestrace.agent.wait.longest``, by role.

    Both read the process's register of open waits (:data:`telemetry.waits.OPEN_WAITS`,
    kept by the hub) when metrics are collected; nothing is recorded while agents wait.
    """

    def __init__(self, meter: Meter, waits: OpenWaits = OPEN_WAITS) -> None:
        self.waits = waits
        self.waiting = meter.create_observable_up_down_counter(
            sc.METRIC_AGENTS_WAITING,
            callbacks=[self.observe_waiting],
            unit="{agent}",
            description="Agents blocked in wait_for_message now.",
        )
        self.longest = meter.create_observable_gauge(
            sc.METRIC_AGENT_WAIT_LONGEST,
            callbacks=[self.observe_longest],
            unit="s",
            description="How long the longest wait_for_message in progress has lasted "
            "(0 when no agent of the role is waiting).",
        )
        self.instruments = (self.waiting, self.longest)

    def observe_waiting(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Agents waiting now, per role."""
        return [
            Observation(count, {sc.AGENT_ROLE: role})
            for role, (count, _) in self.waits.by_role().items()
        ]

    def observe_longest(self, _options: CallbackOptions) -> Iterable[Observation]:
        """The longest current wait, per role, in seconds."""
        return [
            Observation(longest, {sc.AGENT_ROLE: role})
            for role, (_, longest) in self.waits.by_role().items()
        ]


@dataclass(frozen=True)
class ExporterCounts:
    """What one exporter did with the spans or metric points handed to it."""

    exporter: str
    exported: int
    failed: int
    dropped: int = 0


@dataclass(frozen=True)
class PipelineCounts:
    """A telemetry pipeline's counts at one moment (see :class:`PipelineHealth`)."""

    spans_ended: int
    span_exporters: Sequence[ExporterCounts] = ()
    metric_exporters: Sequence[ExporterCounts] = ()


class PipelineSource(Protocol):
    """Anything that can report its pipeline's counts (``telemetry.setup.Telemetry``)."""

    def pipeline_counts(self) -> PipelineCounts:
        """The counts now."""
        ...


class PipelineHealth:
    """The telemetry pipeline's own health, as observable counters in the orchestrace meter.

    Spans ended; per exporter (``orchestrace.exporter``) spans exported, failed to export and
    dropped (queue full, or still queued at the shutdown deadline); metric points exported
    and failed. The callbacks read counts the exporters keep anyway (the exit report uses
    them too), so nothing is recorded on a span's or an agent's path. Every exporter
    watched reports all its counters from the first collection, zeros included, so "no data
    lost" is a 0 on a dashboard rather than a missing series.

    Sources are held weakly: a pipeline that is gone stops reporting.
    """

    def __init__(self, meter: Meter) -> None:
        self._sources: list[weakref.ref[PipelineSource]] = []

        def counter(
            name: str, unit: str, description: str, callback: CallbackT
        ) -> ObservableCounter:
            return meter.create_observable_counter(
                name, callbacks=[callback], unit=unit, description=description
            )

        self.spans_ended = counter(
            sc.METRIC_SPANS_ENDED,
            "{span}",
            "Spans ended: what every span exporter should send.",
            self._observe_ended,
        )
        self.spans_exported = counter(
            sc.METRIC_SPANS_EXPORTED,
            "{span}",
            "Spans an exporter sent successfully.",
            self._spans(lambda c: c.exported),
        )
        self.spans_failed = counter(
            sc.METRIC_SPANS_FAILED,
            "{span}",
            "Spans whose export failed after the exporter's retries.",
            self._spans(lambda c: c.failed),
        )
        self.spans_dropped = counter(
            sc.METRIC_SPANS_DROPPED,
            "{span}",
            "Spans never exported: the export queue was full, or they were still queued "
            "when the shutdown deadline passed.",
            self._spans(lambda c: c.dropped),
        )
        self.points_exported = counter(
            sc.METRIC_POINTS_EXPORTED,
            "{point}",
            "Metric data points a metric exporter sent successfully.",
            self._points(lambda c: c.exported),
        )
        self.points_failed = counter(
            sc.METRIC_POINTS_FAILED,
            "{point}",
            "Metric data points whose export failed.",
            self._points(lambda c: c.failed),
        )
        self.instruments = (
            self.spans_ended,
            self.spans_exported,
            self.spans_failed,
            self.spans_dropped,
            self.points_exported,
            self.points_failed,
        )

    def watch(self, source: PipelineSource) -> None:
        """Report ``source``'s counts from the next collection on."""
        self._sources.append(weakref.ref(source))

    def counts(self) -> list[PipelineCounts]:
        """The counts of every live source (a source that raises is skipped and logged)."""
        found = []
        for ref in list(self._sources):
            source = ref()
            if source is None:
                self._sources.remove(ref)
                continue
            try:
                found.append(source.pipeline_counts())
            except Exception:  # a metrics callback never raises into the SDK
                log.exception("reading the telemetry pipeline's counts failed")
        return found

    def _observe_ended(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = self.counts()
        if not counts:
            return []
        return [Observation(sum(c.spans_ended for c in counts))]

    def _spans(self, value: Callable[[ExporterCounts], int]) -> CallbackT:
        return self._by_exporter(lambda c: c.span_exporters, value)

    def _points(self, value: Callable[[ExporterCounts], int]) -> CallbackT:
        return self._by_exporter(lambda c: c.metric_exporters, value)

    def _by_exporter(
        self,
        exporters: Callable[[PipelineCounts], Sequence[ExporterCounts]],
        value: Callable[[ExporterCounts], int],
    ) -> CallbackT:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[str, int] = {}
            for counts in self.counts():
                for one in exporters(counts):
                    totals[one.exporter] = totals.get(one.exporter, 0) + value(one)
            return [
                Observation(total, {sc.TELEMETRY_EXPORTER: exporter})
                for exporter, total in totals.items()
            ]

        return observe


#: One set of instruments per meter provider, shared by every run that records to it.
_INSTRUMENTS: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()


def close_instruments(provider: MeterProvider) -> None:
    """Stop ``provider``'s deferred-measurement worker and record what it still holds."""
    instruments = _INSTRUMENTS.get(provider)
    if instruments is not None and instruments.pending is not None:
        instruments.pending.close()
