"""Metric instruments: the GenAI semantic-convention ones and orchestrace's own.

Labels stay bounded with thousands of agents: metrics carry the agent's *role* (lead,
helper, member), the model, the tool name and outcomes — never an agent's own name or a
message id. Per-agent detail lives in spans, and exemplars link a metric point to its trace.
"""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

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
        self.agents = meter.create_up_down_counter(
            sc.METRIC_AGENTS,
            unit="{agent}",
            description="Agents currently in each state.",
        )
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
