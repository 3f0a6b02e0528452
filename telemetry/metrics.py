"""Metric instruments: the GenAI semantic-convention ones and orchestrace's own.

Labels stay bounded with thousands of agents: metrics carry the agent's *role* (lead,
helper, member), the model, the tool name and outcomes — never an agent's own name or a
message id. Per-agent detail lives in spans, and exemplars link a metric point to its trace.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from telemetry import semconv as sc
from telemetry.version import __version__


class Tally:
    """A monotonic counter kept as plain integers and reported by an observable counter.

    ``add`` is one dictionary update on the agent's path; the SDK sees the totals only when
    a reader collects (every export interval, or a Prometheus scrape). Exported exactly like
    a synchronous counter (a cumulative monotonic sum, ``_total`` in Prometheus) but without
    an SDK measurement — attribute hashing, aggregation lookup, exemplar sampling — per
    event. Counts carry no exemplars; the histograms, which do, are where a spike is chased
    to its trace.
    """

    def __init__(
        self, meter: Meter, name: str, *, unit: str, description: str, keys: tuple[str, ...]
    ) -> None:
        self.keys = keys
        self.counts: dict[tuple[str, ...], int] = {}
        self.instrument = meter.create_observable_counter(
            name, callbacks=[self.observe], unit=unit, description=description
        )

    def add(self, amount: int, *values: str) -> None:
        """Count ``amount`` more for the attribute values ``values`` (in ``keys`` order)."""
        counts = self.counts
        counts[values] = counts.get(values, 0) + amount

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """The observable's callback: the running total of every attribute set seen."""
        return [
            Observation(total, dict(zip(self.keys, values, strict=True)))
            for values, total in self.counts.copy().items()
        ]


class Instruments:
    """Every instrument orchestrace records, created once per meter provider.

    Use :meth:`for_provider`: every run recording to a provider shares one set, so the
    observable counters report process-wide totals and no instrument is registered twice.
    """

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("orchestrace", __version__)
        self.operation_duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used per model call.",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )
        self.cache_tokens = Tally(
            meter,
            sc.METRIC_CACHE_TOKENS,
            unit="{token}",
            description="Prompt-cache input tokens, by kind (read or creation).",
            keys=(*CHAT_KEYS, sc.CACHE_KIND),
        )
        self.tool_duration = meter.create_histogram(
            sc.METRIC_TOOL_DURATION,
            unit="s",
            description="Tool execution duration; error.type is set on failures.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.messages_sent = Tally(
            meter,
            sc.METRIC_MESSAGES_SENT,
            unit="{message}",
            description="Messages posted to one recipient, by delivery outcome.",
            keys=(sc.AGENT_ROLE, sc.MESSAGE_OUTCOME),
        )
        self.messages_received = Tally(
            meter,
            sc.METRIC_MESSAGES_RECEIVED,
            unit="{message}",
            description="Messages handed to a recipient's model context.",
            keys=(sc.AGENT_ROLE,),
        )
        self.delivery_latency = meter.create_histogram(
            sc.METRIC_DELIVERY_LATENCY,
            unit="s",
            description="Time from send to the recipient receiving the message.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        #: Agents by (role, state): plain counts updated on every state change, observed
        #: when the metrics are collected (no SDK measurement on the agent's path).
        self.agent_states = AgentStates(meter)
        self.agents = self.agent_states.instrument
        self.agent_turns = Tally(
            meter,
            sc.METRIC_AGENT_TURNS,
            unit="{turn}",
            description="Model turns taken by agents.",
            keys=(sc.AGENT_ROLE,),
        )
        self.agent_wait = meter.create_histogram(
            sc.METRIC_AGENT_WAIT,
            unit="s",
            description="Time agents spent blocked in wait_for_message.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.runs = Tally(
            meter,
            sc.METRIC_RUNS,
            unit="{run}",
            description="Completed runs, by scenario and outcome.",
            keys=(sc.RUN_SCENARIO, sc.RUN_OUTCOME),
        )

    @classmethod
    def for_provider(cls, meter_provider: MeterProvider | None = None) -> Instruments:
        """The instruments of ``meter_provider`` (default: the global one)."""
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        instruments = _INSTRUMENTS.get(provider)
        if instruments is None:
            instruments = _INSTRUMENTS[provider] = cls(provider)
        return instruments


#: The attributes of the model-call counters, in order: operation, provider, request model
#: and response model (counted only for answered calls, so the response model is known).
CHAT_KEYS: Final = (
    sc.GEN_AI_OPERATION_NAME,
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_RESPONSE_MODEL,
)


class AgentStates:
    """How many agents are in each (role, state): the ``orchestrace.agents`` gauge.

    A state change is two integer updates; the observable up-down counter reads the counts
    when a reader collects. Buckets that drop to zero keep reporting 0, so a dashboard sees
    agents leave a state rather than a series vanish.
    """

    def __init__(self, meter: Meter) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.instrument = meter.create_observable_up_down_counter(
            sc.METRIC_AGENTS,
            callbacks=[self.observe],
            unit="{agent}",
            description="Agents currently in each state.",
        )

    def move(self, role: str, old: str | None, new: str | None) -> None:
        """One agent of ``role`` leaves ``old`` (None: it is new) for ``new`` (None: gone)."""
        if old is not None:
            self.counts[(role, old)] -= 1
        if new is not None:
            self.counts[(role, new)] += 1

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """The observable's callback: one point per (role, state) seen so far."""
        return [
            Observation(count, {sc.AGENT_ROLE: role, sc.AGENT_STATE: state})
            for (role, state), count in self.counts.copy().items()
        ]


#: One set of instruments per meter provider, shared by every run that records to it.
_INSTRUMENTS: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
