"""Generate orchestrace's Grafana dashboards with Grafana's ``grafana-foundation-sdk``.

    python dashboards/generate.py           rewrite dashboards/json/*.json
    python dashboards/generate.py --check   exit 1 if the committed JSON is out of date

Metric and label names are not typed in here: the OpenTelemetry names, units and instrument
kinds are read from :class:`telemetry.metrics.Instruments` and attribute keys from
:mod:`telemetry.semconv`, then translated the way Prometheus 3 names OTLP metrics
(``UnderscoreEscapingWithSuffixes``), which is also how the OpenTelemetry Prometheus
exporter names them on its scrape endpoint. ``tests/test_prometheus_queries.py`` runs every
expression below against a real Prometheus, and ``tests/test_dashboards.py`` regenerates the
JSON and compares it with the committed files.

The service is Prometheus's ``job`` label on both paths: Prometheus 3 sets it from the OTLP
resource's ``service.name``; a scrape config names its job after the service.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, text, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.text import TextMode
from opentelemetry.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics import MeterProvider

from telemetry import semconv as sc
from telemetry.metrics import DeferredHistogram, Instruments, Tally

OUTPUT_DIR: Final = Path(__file__).resolve().parent / "json"

#: Data source uids fixed in ``dashboards/provisioning/datasources/datasources.yaml``.
PROMETHEUS_UID: Final = "prometheus"
JAEGER_UID: Final = "jaeger"
#: The Prometheus data source's *name*: the alert list panel filters rule sources by name.
PROMETHEUS_NAME: Final = "Prometheus"

OVERVIEW_UID: Final = "orchestrace-overview"
TRACES_UID: Final = "orchestrace-traces"
TAG: Final = "orchestrace"

RATE: Final = "$__rate_interval"
QUANTILES: Final = (0.5, 0.95, 0.99)


# --- names: OpenTelemetry → Prometheus --------------------------------------------------------
class Kind(Enum):
    """How an instrument is exposed to Prometheus."""

    COUNTER = "counter"  # monotonic sum: gets _total
    GAUGE = "gauge"  # up-down counter (non-monotonic sum)
    HISTOGRAM = "histogram"  # _bucket / _sum / _count


#: Unit words Prometheus appends (otlptranslator's unit map, the units orchestrace uses).
#: A unit the map does not know is appended as written: "USD" (the cost counter) gives
#: ``orchestrace_usage_cost_USD_total`` on both paths.
UNIT_WORDS: Final = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "USD": "USD"}


def prometheus_name(name: str, unit: str, kind: Kind) -> str:
    """The Prometheus metric name of an OTel metric (UnderscoreEscapingWithSuffixes).

    Non-alphanumeric runs become one ``_``; the unit word is appended unless the name already
    has it; ``{...}`` units add nothing; counters end in ``_total``; unit ``1`` on a gauge
    gives ``_ratio``. A unit outside :data:`UNIT_WORDS` is an error, so that a new metric's
    name is decided here, not discovered on a dashboard that shows no data.
    """
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", name) if t]
    if unit == "1":
        word = "ratio" if kind is Kind.GAUGE else ""
    elif not unit or (unit.startswith("{") and unit.endswith("}")):
        word = ""
    elif unit in UNIT_WORDS:
        word = UNIT_WORDS[unit]
    else:
        raise ValueError(f"{name}: no Prometheus unit word known for unit {unit!r}")
    if word and word not in tokens:
        tokens.append(word)
    if kind is Kind.COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    return "_".join(tokens)


def label(key: str) -> str:
    """The Prometheus label name of an attribute key (``gen_ai.request.model`` → ...)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", key)


@dataclass(frozen=True)
class PromMetric:
    """One orchestrace metric as Prometheus names it."""

    otel_name: str
    name: str
    kind: Kind
    #: The Prometheus name of the same histogram in the other GenAI layout (the latest
    #: conventions, ``OTEL_SEMCONV_STABILITY_OPT_IN``): queries read either.
    twin: str | None = None

    @property
    def bucket(self) -> str:
        """The histogram's ``_bucket`` series."""
        return self._series("_bucket")

    @property
    def count(self) -> str:
        """The histogram's ``_count`` series."""
        return self._series("_count")

    @property
    def sum(self) -> str:
        """The histogram's ``_sum`` series."""
        return self._series("_sum")

    def _series(self, suffix: str) -> str:
        if self.kind is not Kind.HISTOGRAM:
            raise TypeError(f"{self.otel_name} is not a histogram")
        if self.twin is None:
            return self.name + suffix
        return f"{self.name}{suffix}|{self.twin}{suffix}"


def select(series: str, selector: str) -> str:
    """``series{selector}``; ``a|b`` (either layout's name) selects both by ``__name__``."""
    if "|" in series:
        return f'{{__name__=~"{series}"{", " + selector if selector else ""}}}'
    return f"{series}{{{selector}}}"


def catalog() -> dict[str, PromMetric]:
    """Every instrument of :class:`Instruments`, keyed by its OpenTelemetry name."""
    found: dict[str, PromMetric] = {}
    provider = MeterProvider()
    try:
        members = vars(Instruments(provider)).values()
        # groups of instruments (agent waits, pipeline health) list theirs in `instruments`
        for member in [m for v in members for m in getattr(v, "instruments", None) or (v,)]:
            if isinstance(member, Tally):
                instrument = member.instrument
            elif isinstance(member, DeferredHistogram):
                instrument = member.histogram
            else:
                instrument = member
            if isinstance(instrument, Counter | ObservableCounter):
                kind = Kind.COUNTER
            elif isinstance(instrument, UpDownCounter | ObservableUpDownCounter | ObservableGauge):
                kind = Kind.GAUGE
            elif isinstance(instrument, Histogram):
                kind = Kind.HISTOGRAM
            else:
                continue
            name, unit = str(instrument.name), str(instrument.unit or "")
            found[name] = PromMetric(name, prometheus_name(name, unit, kind), kind)
    finally:
        provider.shutdown()
    return found


METRICS: Final = catalog()

# Model calls, in the default layout or the latest conventions' (whichever the service emits).
OPERATION = replace(
    METRICS[sc.METRIC_OPERATION_DURATION], twin=METRICS[sc.METRIC_INFERENCE_DURATION].name
)
TIME_TO_FIRST_CHUNK = replace(
    METRICS[sc.METRIC_TIME_TO_FIRST_CHUNK],
    twin=METRICS[sc.METRIC_INFERENCE_TIME_TO_FIRST_CHUNK].name,
)
TOKENS = METRICS[sc.METRIC_TOKEN_USAGE]
INPUT_TOKENS = METRICS[sc.METRIC_INFERENCE_INPUT_TOKENS]
OUTPUT_TOKENS = METRICS[sc.METRIC_INFERENCE_OUTPUT_TOKENS]
INPUT_PER_CALL = METRICS[sc.METRIC_INFERENCE_OPERATION_INPUT_TOKENS]
OUTPUT_PER_CALL = METRICS[sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS]
CACHE_READ_TOKENS = METRICS[sc.METRIC_INFERENCE_CACHE_READ_TOKENS]
CACHE_WRITE_TOKENS = METRICS[sc.METRIC_INFERENCE_CACHE_WRITE_TOKENS]
CACHE_TOKENS = METRICS[sc.METRIC_CACHE_TOKENS]
TOOL = METRICS[sc.METRIC_TOOL_DURATION]
SENT = METRICS[sc.METRIC_MESSAGES_SENT]
RECEIVED = METRICS[sc.METRIC_MESSAGES_RECEIVED]
DELIVERY = METRICS[sc.METRIC_DELIVERY_LATENCY]
AGENTS = METRICS[sc.METRIC_AGENTS]
TURNS = METRICS[sc.METRIC_AGENT_TURNS]
WAIT = METRICS[sc.METRIC_AGENT_WAIT]
RUNS = METRICS[sc.METRIC_RUNS]
COST = METRICS[sc.METRIC_COST]
ATTEMPTS = METRICS[sc.METRIC_MODEL_ATTEMPTS]
INVOCATION = METRICS[sc.METRIC_INVOCATION_DURATION]
INFERENCE_CALLS = METRICS[sc.METRIC_INFERENCE_CALLS]
TOOL_CALLS = METRICS[sc.METRIC_TOOL_CALLS]
AGENTS_ENDED = METRICS[sc.METRIC_AGENTS_ENDED]
AGENTS_WAITING = METRICS[sc.METRIC_AGENTS_WAITING]
WAIT_LONGEST = METRICS[sc.METRIC_AGENT_WAIT_LONGEST]
SPANS_ENDED = METRICS[sc.METRIC_SPANS_ENDED]
SPANS_EXPORTED = METRICS[sc.METRIC_SPANS_EXPORTED]
SPANS_FAILED = METRICS[sc.METRIC_SPANS_FAILED]
SPANS_DROPPED = METRICS[sc.METRIC_SPANS_DROPPED]
POINTS_EXPORTED = METRICS[sc.METRIC_POINTS_EXPORTED]
POINTS_FAILED = METRICS[sc.METRIC_POINTS_FAILED]

MODEL = label(sc.GEN_AI_REQUEST_MODEL)
TOKEN_TYPE = label(sc.GEN_AI_TOKEN_TYPE)
CACHE_KIND = label(sc.CACHE_KIND)
TOOL_NAME = label(sc.GEN_AI_TOOL_NAME)
ERROR = label(sc.ERROR_TYPE)
OP = label(sc.GEN_AI_OPERATION_NAME)
WORKFLOW = label(sc.GEN_AI_WORKFLOW_NAME)
ROLE = label(sc.AGENT_ROLE)
STATE = label(sc.AGENT_STATE)
OUTCOME = label(sc.MESSAGE_OUTCOME)
SCENARIO = label(sc.RUN_SCENARIO)
RUN_OUTCOME = label(sc.RUN_OUTCOME)
EXPORTER = label(sc.TELEMETRY_EXPORTER)

#: The label that keeps the two GenAI layouts' rates apart inside one sum.
LAYOUT: Final = "orchestrace_layout"
SERVICE: Final = 'job=~"$service"'
SERVICE_MODEL: Final = f'{SERVICE}, {MODEL}=~"$model"'


# --- PromQL -----------------------------------------------------------------------------------
def rate(series: str, selector: str, by: Sequence[str] = ()) -> str:
    """``sum by (...) (rate(series{selector}[$__rate_interval]))``."""
    grouping = f" by ({', '.join(by)})" if by else ""
    if "|" not in series:
        return f"sum{grouping} (rate({series}{{{selector}}}[{RATE}]))"
    # Either layout's series (a service switched layouts keeps both for a while): each rate
    # labelled apart so their label sets never collide, then summed.
    rates = " or ".join(
        f'label_replace(rate({name}{{{selector}}}[{RATE}]), "{LAYOUT}", "{name}", "", "")'
        for name in series.split("|")
    )
    return f"sum{grouping} ({rates})"


def either(*queries: str) -> str:
    """The first query's series, or the others' where it has none (one per GenAI layout)."""
    return " or ".join(queries)


def as_label(counter: PromMetric, key: str, value: str) -> str:
    """A latest-layout token counter's rate by model, labelled ``key=value`` like the default
    layout's series it stands in for."""
    return (
        f'label_replace({rate(counter.name, SERVICE_MODEL, [MODEL])}, "{key}", "{value}", '
        f'"{key}", "")'
    )


def quantile(q: float, metric: PromMetric, selector: str, by: Sequence[str]) -> str:
    """The ``q`` quantile of a histogram, per ``by``."""
    return f"histogram_quantile({q}, {rate(metric.bucket, selector, ['le', *by])})"


def error_ratio(metric: PromMetric, selector: str, by: Sequence[str]) -> str:
    """Share of a histogram's observations with ``error.type`` set, per ``by``.

    Groups without errors give 0 rather than no data: ``or 0 * total`` fills them in.
    """
    total = rate(metric.count, selector, by)
    errors = rate(metric.count, f'{selector}, {ERROR}!=""', by)
    return f"({errors} or 0 * {total}) / {total}"


# --- panels -----------------------------------------------------------------------------------
def prometheus_ref() -> model.DataSourceRef:
    """The provisioned Prometheus data source."""
    return model.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


def jaeger_ref() -> model.DataSourceRef:
    """The provisioned Jaeger data source."""
    return model.DataSourceRef(type_val="jaeger", uid=JAEGER_UID)


def promql(ref_id: str, expr: str, legend: str, *, exemplar: bool = False) -> prometheus.Dataquery:
    """A range query on the provisioned Prometheus."""
    query = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(prometheus_ref())
        .expr(expr)
        .legend_format(legend)
        .range()
    )
    return query.exemplar(True) if exemplar else query


def graph(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    width: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time series panel on Prometheus."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(prometheus_ref())
        .unit(unit)
        .min(0)
        .height(8)
        .span(width)
        .targets(list(targets))
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if stacked:
        stacking = common_builders.StackingConfig().mode(common.StackingMode.NORMAL)
        panel = panel.stacking(stacking).fill_opacity(30)
    return panel


def quantile_targets(
    metric: PromMetric, selector: str, by: str, *, first_ref: str = "A"
) -> list[prometheus.Dataquery]:
    """p50 / p95 / p99 of a histogram per label ``by``, with exemplars."""
    return [
        promql(
            chr(ord(first_ref) + i),
            quantile(q, metric, selector, [by]),
            f"p{round(q * 100)} {{{{{by}}}}}",
            exemplar=True,
        )
        for i, q in enumerate(QUANTILES)
    ]


def service_variable() -> dashboard.QueryVariable:
    """``$service``: the ``job`` labels that have GenAI metrics."""
    return (
        dashboard.QueryVariable("service")
        .label("Service")
        .datasource(prometheus_ref())
        .query(f"label_values({select(OPERATION.count, '')}, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(text="All", value="$__all"))
    )


def model_variable() -> dashboard.QueryVariable:
    """``$model``: the requested models of the chosen services."""
    return (
        dashboard.QueryVariable("model")
        .label("Model")
        .datasource(prometheus_ref())
        .query(f"label_values({select(OPERATION.count, SERVICE)}, {MODEL})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(text="All", value="$__all"))
    )


def link_to(title: str) -> dashboard.DashboardLink:
    """Links to the other orchestrace dashboards, keeping the time range."""
    return (
        dashboard.DashboardLink(title)
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(False)
        .keep_time(True)
        .include_vars(False)
    )


def _number_panels(board: model.Dashboard) -> model.Dashboard:
    """Give every panel (rows included) a stable id: its position on the dashboard."""
    for number, panel in enumerate(board.panels or [], 1):
        panel.id_val = number
    return board


def overview() -> model.Dashboard:
    """Model calls, tokens, tools, messages, agents and runs, by service and model."""
    board = (
        dashboard.Dashboard("orchestrace · overview")
        .uid(OVERVIEW_UID)
        .description(
            "orchestrace's fleet from its OpenTelemetry metrics. Latency panels carry "
            "exemplars: click a dot to open that trace in Jaeger."
        )
        .tags([TAG])
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .editable()
        .link(link_to("orchestrace dashboards"))
        .with_variable(service_variable())
        .with_variable(model_variable())
        .with_row(dashboard.Row("Alerts"))
        .with_panel(alert_list_panel())
        .with_row(dashboard.Row("Model calls"))
        .with_panel(
            graph(
                "Model calls /s by model",
                "Rate of model calls (gen_ai.client.operation.duration count; with the latest "
                "conventions gen_ai.client.inference.duration).",
                "reqps",
                [promql("A", rate(OPERATION.count, SERVICE_MODEL, [MODEL]), f"{{{{{MODEL}}}}}")],
            )
        )
        .with_panel(
            graph(
                "Model call latency p50 / p95 / p99",
                "gen_ai.client.operation.duration (or gen_ai.client.inference.duration) quantiles "
                "by requested model.",
                "s",
                quantile_targets(OPERATION, SERVICE_MODEL, MODEL),
            )
        )
        .with_panel(
            graph(
                "Model call error ratio by model",
                "Share of model calls that ended with error.type set (after the SDK's retries).",
                "percentunit",
                [promql("A", error_ratio(OPERATION, SERVICE_MODEL, [MODEL]), f"{{{{{MODEL}}}}}")],
            )
        )
        .with_panel(
            graph(
                "Model-call attempts /s by model and error",
                "orchestrace.model.attempts: every HTTP attempt, retried ones included, by "
                "error.type (none: the attempt succeeded). A 429 or 529 retried into a "
                "success shows here, not in the error ratio.",
                "reqps",
                [
                    promql(
                        "A",
                        # Succeeded attempts have no error.type: shown as "none".
                        f"label_replace({rate(ATTEMPTS.name, SERVICE_MODEL, [MODEL, ERROR])}, "
                        f'"{ERROR}", "none", "{ERROR}", "")',
                        f"{{{{{MODEL}}}}} {{{{{ERROR}}}}}",
                    )
                ],
                width=24,
            )
        )
        .with_panel(
            graph(
                "Time to first token p50 / p95 / p99",
                "gen_ai.client.operation.time_to_first_chunk (or gen_ai.client.inference."
                "time_to_first_chunk) quantiles by requested model: "
                "from the start of a streamed model call (retries included) to the first "
                "content of its response. Streamed calls only (orchestrace run --stream, "
                "the default).",
                "s",
                quantile_targets(TIME_TO_FIRST_CHUNK, SERVICE_MODEL, MODEL),
                width=12,
            )
        )
        .with_panel(
            graph(
                "Time per output token p50 / p95 / p99",
                "orchestrace.model.time_per_output_token quantiles by requested model: the "
                "time after the first token over the output tokens after it, for answered "
                "streamed calls.",
                "s",
                quantile_targets(METRICS[sc.METRIC_TIME_PER_OUTPUT_TOKEN], SERVICE_MODEL, MODEL),
                width=12,
            )
        )
        .with_row(dashboard.Row("Tokens"))
        .with_panel(
            graph(
                "Tokens /s by type (incl. prompt cache)",
                "Input and output tokens (gen_ai.client.token.usage, or with the latest "
                "conventions gen_ai.client.inference.usage.*) and prompt-cache reads and "
                "writes (orchestrace.model.cache_tokens, or the latest conventions' cache "
                "counters).",
                "short",
                [
                    promql(
                        "A",
                        either(
                            rate(TOKENS.sum, SERVICE_MODEL, [MODEL, TOKEN_TYPE]),
                            as_label(INPUT_TOKENS, TOKEN_TYPE, sc.TOKEN_TYPE_INPUT),
                            as_label(OUTPUT_TOKENS, TOKEN_TYPE, sc.TOKEN_TYPE_OUTPUT),
                        ),
                        f"{{{{{TOKEN_TYPE}}}}} · {{{{{MODEL}}}}}",
                    ),
                    promql(
                        "B",
                        either(
                            rate(CACHE_TOKENS.name, SERVICE_MODEL, [MODEL, CACHE_KIND]),
                            as_label(CACHE_READ_TOKENS, CACHE_KIND, "cache_read"),
                            as_label(CACHE_WRITE_TOKENS, CACHE_KIND, "cache_creation"),
                        ),
                        f"{{{{{CACHE_KIND}}}}} · {{{{{MODEL}}}}}",
                    ),
                ],
                width=12,
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Tokens per call p50 / p95 by type",
                "gen_ai.client.token.usage quantiles (with the latest conventions "
                "gen_ai.client.inference.operation.{input,output}_tokens; the GenAI semconv "
                "buckets).",
                "short",
                [
                    promql(
                        chr(ord("A") + i),
                        either(
                            quantile(q, TOKENS, SERVICE_MODEL, [TOKEN_TYPE]),
                            *(
                                f"label_replace({quantile(q, metric, SERVICE_MODEL, [])}, "
                                f'"{TOKEN_TYPE}", "{kind}", "{TOKEN_TYPE}", "")'
                                for metric, kind in (
                                    (INPUT_PER_CALL, sc.TOKEN_TYPE_INPUT),
                                    (OUTPUT_PER_CALL, sc.TOKEN_TYPE_OUTPUT),
                                )
                            ),
                        ),
                        f"p{round(q * 100)} {{{{{TOKEN_TYPE}}}}}",
                    )
                    for i, q in enumerate(QUANTILES[:2])
                ],
                width=12,
            )
        )
        .with_row(dashboard.Row("Cost"))
        .with_panel(
            graph(
                "Cost per hour by model",
                "orchestrace.usage.cost: list-price USD per hour of answered model calls, "
                "from token counts and the price table (telemetry/prices.json or "
                "ORCHESTRACE_PRICES). Models without a known price are not counted here.",
                "currencyUSD",
                [
                    promql(
                        "A",
                        f"{rate(COST.name, SERVICE_MODEL, [MODEL])} * 3600",
                        f"{{{{{MODEL}}}}}",
                    )
                ],
                width=16,
                stacked=True,
            )
        )
        .with_panel(cost_panel())
        .with_row(dashboard.Row("Tools"))
        .with_panel(
            graph(
                "Tool calls /s by tool",
                "Tool dispatches (gen_ai.execute_tool.duration count).",
                "ops",
                [promql("A", rate(TOOL.count, SERVICE, [TOOL_NAME]), f"{{{{{TOOL_NAME}}}}}")],
            )
        )
        .with_panel(
            graph(
                "Tool latency p95 by tool",
                "gen_ai.execute_tool.duration p95; wait_for_message and sleep are long by design.",
                "s",
                [
                    promql(
                        "A",
                        quantile(0.95, TOOL, SERVICE, [TOOL_NAME]),
                        f"{{{{{TOOL_NAME}}}}}",
                        exemplar=True,
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Tool error ratio by tool",
                "Share of tool calls that raised (error.type set).",
                "percentunit",
                [promql("A", error_ratio(TOOL, SERVICE, [TOOL_NAME]), f"{{{{{TOOL_NAME}}}}}")],
            )
        )
        .with_row(dashboard.Row("Messages"))
        .with_panel(
            graph(
                "Messages /s: sent by outcome, received",
                "Messages posted to one recipient, by outcome (delivered, unknown recipient, "
                "recipient ended = undeliverable), and messages handed to recipients.",
                "short",
                [
                    promql("A", rate(SENT.name, SERVICE, [OUTCOME]), f"sent · {{{{{OUTCOME}}}}}"),
                    promql("B", rate(RECEIVED.name, SERVICE), "received"),
                ],
            )
        )
        .with_panel(
            graph(
                "Delivery latency send → receive",
                "orchestrace.message.delivery.latency quantiles by recipient role.",
                "s",
                quantile_targets(DELIVERY, SERVICE, ROLE),
            )
        )
        .with_panel(
            graph(
                "Time blocked in wait_for_message p95 by role",
                "orchestrace.agent.wait.duration p95.",
                "s",
                [promql("A", quantile(0.95, WAIT, SERVICE, [ROLE]), f"{{{{{ROLE}}}}}")],
            )
        )
        .with_row(dashboard.Row("Agents and runs"))
        .with_panel(
            graph(
                "Agents by state",
                "orchestrace.agents: agents in each state, summed over processes. A run "
                "that has ended keeps its final states (done, killed, ...) until its series "
                "go stale.",
                "short",
                [promql("A", f"sum by ({STATE}) ({AGENTS.name}{{{SERVICE}}})", f"{{{{{STATE}}}}}")],
                stacked=True,
            )
        )
        .with_panel(
            graph(
                "Agent turns /s by role",
                "Model turns taken (orchestrace.agent.turns).",
                "short",
                [promql("A", rate(TURNS.name, SERVICE, [ROLE]), f"{{{{{ROLE}}}}}")],
            )
        )
        .with_panel(runs_panel())
        .with_panel(
            graph(
                "Agents waiting by role",
                "orchestrace.agents.waiting: agents blocked in wait_for_message now.",
                "short",
                [
                    promql(
                        "A",
                        f"sum by ({ROLE}) ({AGENTS_WAITING.name}{{{SERVICE}}})",
                        f"{{{{{ROLE}}}}}",
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Longest current wait_for_message by role",
                "orchestrace.agent.wait.longest: how long the longest wait in progress has "
                "lasted (0: nobody waits). The alert OrchestraceAgentBlocked fires on it.",
                "s",
                [
                    promql(
                        "A",
                        f"max by ({ROLE}) ({WAIT_LONGEST.name}{{{SERVICE}}})",
                        f"{{{{{ROLE}}}}}",
                    )
                ],
            )
        )
        .with_panel(agents_ended_panel())
        .with_panel(
            graph(
                "Agent and run duration p95",
                "gen_ai.invocation.duration p95: agents (invoke_agent) by role, runs "
                "(invoke_workflow) by scenario, from start to end, nested work included.",
                "s",
                [
                    promql(
                        "A",
                        quantile(0.95, INVOCATION, f'{SERVICE}, {OP}="invoke_agent"', [ROLE]),
                        f"agent {{{{{ROLE}}}}}",
                        exemplar=True,
                    ),
                    promql(
                        "B",
                        quantile(
                            0.95, INVOCATION, f'{SERVICE}, {OP}="invoke_workflow"', [WORKFLOW]
                        ),
                        f"run {{{{{WORKFLOW}}}}}",
                        exemplar=True,
                    ),
                ],
                width=12,
            )
        )
        .with_panel(
            graph(
                "Model and tool calls per agent p95 by role",
                "gen_ai.invoke_agent.inference_calls and gen_ai.invoke_agent.tool_calls p95: "
                "the calls one agent made itself in its invocation (its helpers' are theirs).",
                "short",
                [
                    promql(
                        "A",
                        quantile(0.95, INFERENCE_CALLS, SERVICE, [ROLE]),
                        f"model calls {{{{{ROLE}}}}}",
                    ),
                    promql(
                        "B",
                        quantile(0.95, TOOL_CALLS, SERVICE, [ROLE]),
                        f"tool calls {{{{{ROLE}}}}}",
                    ),
                ],
                width=12,
            )
        )
        .with_row(dashboard.Row("Telemetry pipeline"))
        .with_panel(
            graph(
                "Spans /s: ended, and by exporter exported, failed, dropped",
                "orchestrace.telemetry.spans.*: every ended span should be exported by every "
                "exporter. Failed: the exporter gave up after its retries. Dropped: the export "
                "queue was full (raise OTEL_BSP_MAX_QUEUE_SIZE) or the shutdown deadline "
                "passed (ORCHESTRACE_SHUTDOWN_TIMEOUT).",
                "ops",
                [
                    promql("A", rate(SPANS_ENDED.name, SERVICE), "ended"),
                    promql(
                        "B",
                        rate(SPANS_EXPORTED.name, SERVICE, [EXPORTER]),
                        f"exported · {{{{{EXPORTER}}}}}",
                    ),
                    promql(
                        "C",
                        rate(SPANS_FAILED.name, SERVICE, [EXPORTER]),
                        f"failed · {{{{{EXPORTER}}}}}",
                    ),
                    promql(
                        "D",
                        rate(SPANS_DROPPED.name, SERVICE, [EXPORTER]),
                        f"dropped · {{{{{EXPORTER}}}}}",
                    ),
                ],
                width=12,
            )
        )
        .with_panel(
            graph(
                "Metric points /s by exporter: exported, failed",
                "orchestrace.telemetry.metric_points.*: data points each metric exporter sent "
                "and failed to send (a failure is reported with the next export that "
                "gets through).",
                "ops",
                [
                    promql(
                        "A",
                        rate(POINTS_EXPORTED.name, SERVICE, [EXPORTER]),
                        f"exported · {{{{{EXPORTER}}}}}",
                    ),
                    promql(
                        "B",
                        rate(POINTS_FAILED.name, SERVICE, [EXPORTER]),
                        f"failed · {{{{{EXPORTER}}}}}",
                    ),
                ],
                width=6,
            )
        )
        .with_panel(telemetry_lost_panel())
    )
    return _number_panels(board.build())


def in_range(metric: PromMetric, selector: str) -> str:
    """A counter's growth in the time range, per series: its increase, or for a process
    sampled once (a short `orchestrace run`, whose series starts at its total), that total."""
    series = f"{metric.name}{{{selector}}}[$__range]"
    return f"increase({series}) or max_over_time({series})"


def alert_list_panel() -> dashboard.Panel:
    """The alert rules of ``deploy/alerts.yml`` that are firing or pending, from Prometheus."""
    return (
        dashboard.Panel()
        .type("alertlist")
        .title("Firing and pending alerts")
        .description(
            "orchestrace's alert rules (deploy/alerts.yml) as Prometheus evaluates them; "
            "notifications go through Alertmanager (deploy/alertmanager.yml)."
        )
        .datasource(prometheus_ref())
        .height(6)
        .span(24)
        .options(
            {
                "datasource": PROMETHEUS_NAME,
                "viewMode": "list",
                "groupMode": "default",
                "groupBy": [],
                "maxItems": 20,
                "sortOrder": 3,  # importance
                "dashboardAlerts": False,
                "alertName": "",
                "alertInstanceLabelFilter": "",
                "showInstances": True,
                "showInactiveAlerts": False,
                "stateFilter": {
                    "firing": True,
                    "pending": True,
                    "recovering": True,
                    "noData": False,
                    "normal": False,
                    "error": True,
                },
            }
        )
    )


def agents_ended_panel() -> stat.Panel:
    """Agents that ended in the time range, by final state."""
    return (
        stat.Panel()
        .title("Agents ended by final state")
        .description(
            "orchestrace.agents.ended: agents that reached done, crashed or killed in the "
            "time range. A crash fires the alert OrchestraceAgentCrashed."
        )
        .datasource(prometheus_ref())
        .height(8)
        .span(8)
        .unit("short")
        .with_target(
            prometheus.Dataquery()
            .ref_id("A")
            .datasource(prometheus_ref())
            .expr(f"sum by ({STATE}) ({in_range(AGENTS_ENDED, SERVICE)})")
            .legend_format(f"{{{{{STATE}}}}}")
            .instant()
        )
    )


def telemetry_lost_panel() -> stat.Panel:
    """Spans failed and dropped, and metric points failed, in the time range."""

    def target(ref: str, metric: PromMetric, what: str) -> prometheus.Dataquery:
        return (
            prometheus.Dataquery()
            .ref_id(ref)
            .datasource(prometheus_ref())
            .expr(f"sum by ({EXPORTER}) ({in_range(metric, SERVICE)})")
            .legend_format(f"{what} · {{{{{EXPORTER}}}}}")
            .instant()
        )

    return (
        stat.Panel()
        .title("Telemetry lost in range")
        .description(
            "Spans that failed to export or were dropped, and metric points that failed to "
            "export, per exporter, in the time range: anything but 0 means the traces or "
            "metrics you are looking at are incomplete (alerts OrchestraceSpansLost, "
            "OrchestraceMetricExportFailing)."
        )
        .datasource(prometheus_ref())
        .height(8)
        .span(6)
        .unit("short")
        .with_target(target("A", SPANS_FAILED, "spans failed"))
        .with_target(target("B", SPANS_DROPPED, "spans dropped"))
        .with_target(target("C", POINTS_FAILED, "points failed"))
    )


def cost_panel() -> stat.Panel:
    """List-price cost of the model calls in the time range, all models together."""
    # A long-lived process's series has samples across the range: increase() is its cost
    # in the range. A short `orchestrace run` exports its counter once or twice, already
    # at its total, where increase() sees nothing: the largest value in the range, the
    # cost of that process's run, stands in (as for the runs panel).
    series = f"{COST.name}{{{SERVICE_MODEL}}}[$__range]"
    return (
        stat.Panel()
        .title("Total cost in range")
        .description(
            "orchestrace.usage.cost summed over models and processes, in list-price USD "
            "(models without a known price are not counted). Per process: its increase in "
            "the range, or for a process sampled once (a short `orchestrace run`), its total."
        )
        .datasource(prometheus_ref())
        .height(8)
        .span(8)
        .unit("currencyUSD")
        .decimals(4)
        .with_target(
            prometheus.Dataquery()
            .ref_id("A")
            .datasource(prometheus_ref())
            .expr(f"sum(increase({series}) or max_over_time({series}))")
            .legend_format("total")
            .instant()
        )
    )


def runs_panel() -> stat.Panel:
    """Runs in the time range, by scenario and outcome."""
    # Each `orchestrace run` is its own process: its runs counter is a new series that is
    # exported once, already at 1, so increase() would see nothing. The largest value each
    # series reached in the range counts those runs (for a long-lived process, its runs
    # since it started).
    expr = f"sum by ({SCENARIO}, {RUN_OUTCOME}) (max_over_time({RUNS.name}{{{SERVICE}}}[$__range]))"
    return (
        stat.Panel()
        .title("Runs by scenario and outcome")
        .description("orchestrace.runs: completed runs in the time range.")
        .datasource(prometheus_ref())
        .height(8)
        .span(8)
        .unit("short")
        .with_target(
            prometheus.Dataquery()
            .ref_id("A")
            .datasource(prometheus_ref())
            .expr(expr)
            .legend_format(f"{{{{{SCENARIO}}}}} · {{{{{RUN_OUTCOME}}}}}")
            .instant()
        )
    )


# --- the traces dashboard (Jaeger) ------------------------------------------------------------
@dataclass
class JaegerQuery(cogvariants.Dataquery):
    """A Jaeger data source query (the SDK has no Jaeger builder)."""

    ref_id: str
    query: str | None = None
    query_type: str | None = None
    service: str | None = None
    limit: int | None = None

    def to_json(self) -> dict[str, object]:
        """The query as Grafana stores it."""
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": jaeger_ref().to_json(),
        }
        optional: dict[str, Any] = {
            "query": self.query,
            "queryType": self.query_type,
            "service": self.service,
            "limit": self.limit,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


class Jaeger(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds a :class:`JaegerQuery`."""

    def __init__(self, query: JaegerQuery) -> None:
        self._query = query

    def build(self) -> JaegerQuery:
        """The query."""
        return self._query


def traces() -> model.Dashboard:
    """Recent runs of a service from Jaeger, and one trace in full."""
    open_trace = (
        f"/d/{TRACES_UID}/orchestrace-traces?var-service=${{service}}"
        "&var-trace_id=${__value.raw}&${__url_time_range}"
    )
    board = (
        dashboard.Dashboard("orchestrace · traces")
        .uid(TRACES_UID)
        .description("Runs of a service as Jaeger stores them; one run is one trace.")
        .tags([TAG])
        .time("now-1h", "now")
        .editable()
        .link(link_to("orchestrace dashboards"))
        .with_variable(
            dashboard.TextBoxVariable("service")
            .label("Service")
            .default_value("orchestrace")
            .current(model.VariableOption(text="orchestrace", value="orchestrace"))
        )
        .with_variable(
            dashboard.TextBoxVariable("trace_id")
            .label("Trace id")
            .description("Paste a trace id, or click one in Recent runs.")
        )
        .with_panel(
            text.Panel()
            .title("How to read a run")
            .height(5)
            .span(24)
            .content(
                "Click a **Trace ID** in *Recent runs* to open that run below (or paste one "
                "into *Trace id*). Every model call is a `chat` span, every tool call an "
                "`execute_tool` span. A message from one agent to another is a `send "
                "{recipient}` span in the sender's turn; the recipient's `receive {agent}` "
                "span has a **link** (References) to it: expand the `receive` span and "
                "click the link to jump to the `send`."
            )
            .mode(TextMode.MARKDOWN)
        )
        .with_panel(
            table.Panel()
            .title("Recent runs")
            .description("Traces of $service in the time range (Jaeger search).")
            .datasource(jaeger_ref())
            .height(9)
            .span(24)
            .with_target(
                Jaeger(JaegerQuery(ref_id="A", query_type="search", service="$service", limit=20))
            )
            .override_by_name(
                "traceID",
                [
                    model.DynamicConfigValue(
                        id_val="links",
                        value=[{"title": "Open this run below", "url": open_trace}],
                    )
                ],
            )
        )
        .with_panel(
            dashboard.Panel()
            .type("traces")
            .title("Trace ${trace_id}")
            .datasource(jaeger_ref())
            .height(22)
            .span(24)
            .with_target(Jaeger(JaegerQuery(ref_id="A", query="${trace_id}")))
        )
    )
    return _number_panels(board.build())


DASHBOARDS: Final = {
    f"{OVERVIEW_UID}.json": overview,
    f"{TRACES_UID}.json": traces,
}


def render(board: model.Dashboard) -> str:
    """The dashboard as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` report the ones that are out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for name, content in rendered().items():
        path = args.out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python dashboards/generate.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
