"""The run summary, computed from span data alone (live, from a spans file, or from Jaeger).

It prints the original cookbook's tool-call lines exactly (``lead: 3×wait_for_message,
1×create_subagents, ...``: agents sorted, tools by count, ties in first-call order) and then
a per-agent table.
Every figure comes from leaf spans (``chat``, ``execute_tool``, ``send``, ``receive``), so
nothing is counted twice; the ``invoke_agent`` spans only contribute final state and time.
The cost column prices each agent's ``chat`` token counts by the model that answered (else
the requested one) with :mod:`telemetry.cost`'s table: ``?`` when any call's model has no
price, never a made-up ``$0``.
Aggregation is incremental (:class:`SummaryBuilder`), so a file of millions of spans is
summarised in one streaming pass. This module aggregates; :mod:`telemetry.summary_table`
writes the text, :mod:`telemetry.summary_file` reads a spans file (in parallel when it is
big) and :class:`telemetry.live.SummaryProcessor` folds a live run's spans as they end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from telemetry import semconv as sc
from telemetry.cost import PriceTable, default_prices, uncached_input
from telemetry.records import AttrValue, ReadNotes
from telemetry.summary_table import render_summary


class SummarySpan(Protocol):
    """What the summary reads of a span: a :class:`~telemetry.records.SpanRecord`, or the
    leaner :class:`~telemetry.records.SpanFacts` (spans-file scan, live summary)."""

    @property
    def trace_id(self) -> str: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, AttrValue]: ...
    @property
    def span_id(self) -> str: ...


#: The span attributes the summary reads; a fast file reader need decode no others.
SUMMARY_KEYS: frozenset[str] = frozenset(
    {
        sc.GEN_AI_OPERATION_NAME,
        sc.MESSAGING_OPERATION_TYPE,
        sc.RUN_SCENARIO,
        sc.RUN_OUTCOME,
        sc.GEN_AI_AGENT_NAME,
        sc.AGENT_ROLE,
        sc.AGENT_STATE,
        sc.AGENT_END_REASON,
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
        sc.GEN_AI_REQUEST_MODEL,
        sc.GEN_AI_RESPONSE_MODEL,
        sc.GEN_AI_TOOL_NAME,
        sc.MESSAGE_OUTCOME,
        sc.MESSAGING_BATCH_MESSAGE_COUNT,
    }
)


class SummaryError(Exception):
    """The spans given do not contain the run that was asked for."""


@dataclass
class AgentStats:
    """Everything the summary shows for one agent."""

    name: str
    role: str = ""
    state: str = "?"
    reason: str = ""
    model_calls: int = 0
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    tools: dict[str, list[int]] = field(default_factory=dict)  # name -> [count, first start]
    tool_errors: int = 0
    sent: int = 0
    undelivered: int = 0
    received: int = 0
    lifetime_ns: int = 0
    waiting_ns: int = 0
    #: How many ``invoke_agent`` spans were folded (they set role, state, reason, lifetime).
    agent_spans: int = 0
    #: Token counts by billed model: [input (cache-inclusive), output, cache read, cache
    #: write]. Kept per model so that a mixed-model agent is priced call by call (the cost
    #: is linear in the counts, so pricing each model's sums is pricing each call).
    usage: dict[str, list[int]] = field(default_factory=dict)

    @property
    def tool_calls(self) -> int:
        """Number of tool dispatches."""
        return sum(count for count, _ in self.tools.values())

    def cost(self, prices: PriceTable) -> float | None:
        """USD for every model call of this agent; None when any call's model is unpriced."""
        total = 0.0
        for model, (tokens_in, tokens_out, read, write) in self.usage.items():
            cost = prices.cost(
                model, uncached_input(tokens_in, read, write), tokens_out, read, write
            )
            if cost is None:
                return None
            total += cost
        return total

    def merge(self, later: AgentStats) -> None:
        """Fold in the stats of the same agent from spans that came after ours."""
        if later.agent_spans:
            self.role, self.state, self.reason = later.role, later.state, later.reason
            self.lifetime_ns = later.lifetime_ns
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for model, counts in later.usage.items():
            mine = self.usage.get(model)
            if mine is None:
                self.usage[model] = list(counts)
            else:
                for i, n in enumerate(counts):
                    mine[i] += n
        for tool, (count, first) in later.tools.items():
            entry = self.tools.get(tool)
            if entry is None:
                self.tools[tool] = [count, first]
            else:
                entry[0] += count
                entry[1] = min(entry[1], first)


_SUMS: tuple[str, ...] = (
    "model_calls",
    "turns",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "tool_errors",
    "sent",
    "undelivered",
    "received",
    "waiting_ns",
    "agent_spans",
)


@dataclass
class TraceSummary:
    """The aggregate of one trace."""

    trace_id: str
    scenario: str = "?"
    outcome: str = ""
    root_start_ns: int | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    spans: int = 0
    agents: dict[str, AgentStats] = field(default_factory=dict)

    def agent(self, name: str) -> AgentStats:
        """The stats of ``name``, created on first use."""
        stats = self.agents.get(name)
        if stats is None:
            stats = self.agents[name] = AgentStats(name)
        return stats

    def add(self, span: SummarySpan) -> None:
        """Fold one span into the aggregate."""
        self.spans += 1
        self.start_ns = (
            span.start_ns if self.start_ns is None else min(self.start_ns, span.start_ns)
        )
        self.end_ns = span.end_ns if self.end_ns is None else max(self.end_ns, span.end_ns)
        attrs = span.attributes
        op = attrs.get(sc.GEN_AI_OPERATION_NAME) or attrs.get(sc.MESSAGING_OPERATION_TYPE)
        if op == sc.OP_WORKFLOW:
            self.scenario = str(attrs.get(sc.RUN_SCENARIO, "?"))
            self.outcome = str(attrs.get(sc.RUN_OUTCOME, ""))
            self.root_start_ns = span.start_ns
            return
        name = attrs.get(sc.GEN_AI_AGENT_NAME)
        if not isinstance(name, str):
            return
        stats = self.agent(name)
        if op == sc.OP_AGENT:
            stats.role = str(attrs.get(sc.AGENT_ROLE, ""))
            stats.state = str(attrs.get(sc.AGENT_STATE, "?"))
            stats.reason = str(attrs.get(sc.AGENT_END_REASON, ""))
            stats.lifetime_ns = span.end_ns - span.start_ns
            stats.agent_spans += 1
        elif op == sc.OP_CHAT:
            stats.model_calls += 1
            if span.status != "ERROR":
                stats.turns += 1
            tokens_in = _int(attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS))
            tokens_out = _int(attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
            read = _int(attrs.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS))
            write = _int(sc.cache_write_tokens(attrs))
            stats.input_tokens += tokens_in
            stats.output_tokens += tokens_out
            stats.cache_read_tokens += read
            stats.cache_creation_tokens += write
            model = attrs.get(sc.GEN_AI_RESPONSE_MODEL) or attrs.get(sc.GEN_AI_REQUEST_MODEL)
            key = model if isinstance(model, str) else ""
            counts = stats.usage.get(key)
            if counts is None:
                stats.usage[key] = [tokens_in, tokens_out, read, write]
            else:
                counts[0] += tokens_in
                counts[1] += tokens_out
                counts[2] += read
                counts[3] += write
        elif op == sc.OP_TOOL:
            tool = str(attrs.get(sc.GEN_AI_TOOL_NAME, "?"))
            entry = stats.tools.get(tool)
            if entry is None:
                stats.tools[tool] = [1, span.start_ns]
            else:
                entry[0] += 1
                entry[1] = min(entry[1], span.start_ns)
            if span.status == "ERROR":
                stats.tool_errors += 1
            if tool == "wait_for_message":
                stats.waiting_ns += span.end_ns - span.start_ns
        elif op == sc.OP_SEND:
            stats.sent += 1
            if attrs.get(sc.MESSAGE_OUTCOME) != "delivered":
                stats.undelivered += 1
        elif op == sc.OP_RECEIVE:
            stats.received += _int(attrs.get(sc.MESSAGING_BATCH_MESSAGE_COUNT))

    def merge(self, later: TraceSummary) -> None:
        """Fold in the aggregate of the same trace from spans that came after ours."""
        self.spans += later.spans
        if later.start_ns is not None:
            self.start_ns = (
                later.start_ns if self.start_ns is None else min(self.start_ns, later.start_ns)
            )
        if later.end_ns is not None:
            self.end_ns = later.end_ns if self.end_ns is None else max(self.end_ns, later.end_ns)
        if later.root_start_ns is not None:
            self.scenario, self.outcome = later.scenario, later.outcome
            self.root_start_ns = later.root_start_ns
        for name, stats in later.agents.items():
            mine = self.agents.get(name)
            if mine is None:
                self.agents[name] = stats
            else:
                mine.merge(stats)

    def cost(self, prices: PriceTable | None = None) -> float | None:
        """USD for the whole run (the sum of the agents'); None when any part is unknown."""
        table = prices if prices is not None else default_prices()
        total = 0.0
        for name in sorted(self.agents):  # the table's order: the same float sum
            cost = self.agents[name].cost(table)
            if cost is None:
                return None
            total += cost
        return total

    def render(self, prices: PriceTable | None = None) -> str:
        """The summary text (:func:`telemetry.summary_table.render_summary`): a header,
        the tool-call lines and the agent table, costs from ``prices`` (default:
        :func:`~telemetry.cost.default_prices`)."""
        return render_summary(self, prices if prices is not None else default_prices())


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class PartsOverlapError(Exception):
    """Parts of a file read apart hold the same span: read the file again in one pass."""


class SummaryBuilder:
    """Folds spans of any number of traces; :meth:`summary` picks one.

    A span whose id was seen before in its trace (a file concatenated with itself, a
    collector that retried) is counted once; :attr:`duplicates` says how many were left
    out.
    """

    def __init__(self) -> None:
        self.traces: dict[str, TraceSummary] = {}
        self.seen: dict[str, set[str]] = {}
        self.duplicates = 0

    def add(self, span: SummarySpan) -> None:
        """Fold one span into its trace's aggregate (once per span id)."""
        trace = self.traces.get(span.trace_id)
        if trace is None:
            trace = self.traces[span.trace_id] = TraceSummary(span.trace_id)
            self.seen[span.trace_id] = set()
        span_id = span.span_id
        if span_id:
            seen = self.seen[span.trace_id]
            if span_id in seen:
                self.duplicates += 1
                return
            seen.add(span_id)
        trace.add(span)

    def add_all(self, spans: Iterable[SummarySpan]) -> SummaryBuilder:
        """Fold every span of ``spans``; returns self."""
        for span in spans:
            self.add(span)
        return self

    def merge(self, later: SummaryBuilder) -> SummaryBuilder:
        """Fold in a builder fed the spans that came after ours; returns self.

        Raises :class:`PartsOverlapError` if both hold a span of the same id (its stats were folded
        twice and cannot be taken apart).
        """
        for trace_id, trace in later.traces.items():
            mine = self.traces.get(trace_id)
            if mine is None:
                self.traces[trace_id] = trace
                self.seen[trace_id] = later.seen[trace_id]
            else:
                if not self.seen[trace_id].isdisjoint(later.seen[trace_id]):
                    raise PartsOverlapError(trace_id)
                self.seen[trace_id] |= later.seen[trace_id]
                mine.merge(trace)
        self.duplicates += later.duplicates
        return self

    def summary(self, trace_id: str | None = None) -> TraceSummary:
        """The trace ``trace_id``, or else the run whose root span started last."""
        if trace_id is not None:
            found = self.traces.get(trace_id.lower())
            if found is None:
                known = ", ".join(list(self.traces)[:10]) or "none"
                raise SummaryError(f"trace {trace_id} not found (traces present: {known})")
            return found
        if not self.traces:
            raise SummaryError("no spans found")
        return max(
            self.traces.values(),
            key=lambda t: (t.root_start_ns is not None, t.root_start_ns or t.start_ns or 0),
        )


def summarize(
    spans: Iterable[SummarySpan], trace_id: str | None = None, notes: ReadNotes | None = None
) -> str:
    """The rendered summary of one trace among ``spans``; spans read twice are counted
    once, and counted in ``notes``."""
    builder = SummaryBuilder().add_all(spans)
    if notes is not None:
        notes.duplicates += builder.duplicates
    return builder.summary(trace_id).render()
