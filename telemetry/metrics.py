"""Metric instruments: the GenAI semantic-convention ones and orchestrace's own.

Labels stay bounded with thousands of agents: metrics carry the agent's *role* (lead,
helper, member), the model, the tool name and outcomes — never an agent's own name or a
message id. Per-agent detail lives in spans, and exemplars link a metric point to its trace.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from telemetry import semconv as sc
from telemetry.version import __version__


class Instruments:
    """Every instrument orchestrace records, created once per meter provider."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
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
        self.cache_tokens = meter.create_counter(
            sc.METRIC_CACHE_TOKENS,
            unit="{token}",
            description="Prompt-cache input tokens, by kind (read or creation).",
        )
        self.tool_duration = meter.create_histogram(
            sc.METRIC_TOOL_DURATION,
            unit="s",
            description="Tool execution duration; error.type is set on failures.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.messages_sent = meter.create_counter(
            sc.METRIC_MESSAGES_SENT,
            unit="{message}",
            description="Messages posted to one recipient, by delivery outcome.",
        )
        self.messages_received = meter.create_counter(
            sc.METRIC_MESSAGES_RECEIVED,
            unit="{message}",
            description="Messages handed to a recipient's model context.",
        )
        self.delivery_latency = meter.create_histogram(
            sc.METRIC_DELIVERY_LATENCY,
            unit="s",
            description="Time from send to the recipient receiving the message.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        #: Agents by (role, state): plain counts updated on every state change, observed
        #: when the metrics are collected (no SDK measurement on the agent's path).
        self.agent_states = _agent_states(provider, meter)
        self.agents = self.agent_states.instrument
        self.agent_turns = meter.create_counter(
            sc.METRIC_AGENT_TURNS,
            unit="{turn}",
            description="Model turns taken by agents.",
        )
        self.agent_wait = meter.create_histogram(
            sc.METRIC_AGENT_WAIT,
            unit="s",
            description="Time agents spent blocked in wait_for_message.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.runs = meter.create_counter(
            sc.METRIC_RUNS,
            unit="{run}",
            description="Completed runs, by scenario and outcome.",
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
            for (role, state), count in list(self.counts.items())
        ]


#: One gauge per meter provider, shared by every run that records to it.
_STATES: weakref.WeakKeyDictionary[MeterProvider, AgentStates] = weakref.WeakKeyDictionary()


def _agent_states(provider: MeterProvider, meter: Meter) -> AgentStates:
    states = _STATES.get(provider)
    if states is None:
        states = _STATES[provider] = AgentStates(meter)
    return states
