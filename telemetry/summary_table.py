"""The summary as text: a header, the original cookbook's tool-call lines and the agent table.

Names and reasons may come from a spans file anyone could write: every cell is one line
with no terminal control sequence (:func:`telemetry.redact.for_terminal`), so a cell cannot
break the table or the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry.cost import PriceTable, format_usd
from telemetry.redact import for_terminal

if TYPE_CHECKING:
    from telemetry.summary import AgentStats, TraceSummary


def render_summary(summary: TraceSummary, prices: PriceTable) -> str:
    """The summary text: a header, the tool-call lines, and the agent table."""
    seconds = ((summary.end_ns or 0) - (summary.start_ns or 0)) / 1e9
    header = (
        f"Run {summary.scenario} · trace {summary.trace_id} · {summary.spans} spans"
        f" · {seconds:.2f}s" + (f" · {_outcome(summary)}" if summary.outcome else "")
    )
    agents = [summary.agents[n] for n in sorted(summary.agents)]
    calls = [for_terminal(tool_calls_line(a), newlines=False) for a in agents if a.tools]
    table = _table(agents, prices)
    header = for_terminal(header, newlines=False)
    return "\n".join([header, "", "Tool-call summary:", *calls, "", table]) + "\n"


def _outcome(summary: TraceSummary) -> str:
    """The run's outcome; a run that completed without its lead finishing its task (a
    limit, max_turns, a refusal) says so, as the run command's exit line does."""
    lead = next((a for a in summary.agents.values() if a.role == "lead"), None)
    if summary.outcome == "completed" and lead is not None and lead.reason not in ("", "end_turn"):
        return f"incomplete: the lead ended {lead.state} ({lead.reason})"
    return summary.outcome


def tool_calls_line(agent: AgentStats) -> str:
    """``name: 3×wait_for_message, 1×create_subagents`` — the original cookbook's format:
    tools by count, ties in first-call order."""
    ordered = sorted(agent.tools.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
    return f"  {agent.name}: " + ", ".join(f"{c}×{t}" for t, (c, _) in ordered)


_COLUMNS = (
    "agent",
    "role",
    "state",
    "reason",
    "turns",
    "calls",
    "in tok",
    "out tok",
    "cache rd",
    "cache wr",
    "cost",
    "tools",
    "errors",
    "sent",
    "undeliv",
    "recv",
    "active",
    "waiting",
)
_COST = _COLUMNS.index("cost")


def _table(agents: list[AgentStats], prices: PriceTable) -> str:
    costs = [a.cost(prices) for a in agents]
    # Names and reasons may come from a spans file anyone could write: one line each, no
    # terminal control sequences, so a cell cannot break the table or the terminal.
    rows = [
        [
            for_terminal(a.name, newlines=False),
            for_terminal(a.role, newlines=False),
            for_terminal(a.state, newlines=False),
            for_terminal(a.reason, newlines=False),
            str(a.turns),
            str(a.model_calls),
            str(a.input_tokens),
            str(a.output_tokens),
            str(a.cache_read_tokens),
            str(a.cache_creation_tokens),
            format_usd(cost),
            str(a.tool_calls),
            str(a.tool_errors),
            str(a.sent),
            str(a.undelivered),
            str(a.received),
            f"{max(0, a.lifetime_ns - a.waiting_ns) / 1e9:.2f}s",
            f"{a.waiting_ns / 1e9:.2f}s",
        ]
        for a, cost in zip(agents, costs, strict=True)
    ]
    # The run's cost is the sum of the agents' unrounded costs (each cell is rounded).
    total_cost = None if None in costs else sum(c for c in costs if c is not None)
    total = (
        ["total", "", "", ""]
        + [str(sum(int(r[i]) for r in rows)) for i in range(4, _COST)]
        + [format_usd(total_cost)]
        + [str(sum(int(r[i]) for r in rows)) for i in range(_COST + 1, 16)]
        + [
            f"{sum(float(r[16][:-1]) for r in rows):.2f}s",
            f"{sum(float(r[17][:-1]) for r in rows):.2f}s",
        ]
    )
    table = [list(_COLUMNS), *rows, total]
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]

    def fmt(row: list[str]) -> str:
        cells = [
            c.ljust(w) if i < 4 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join(fmt(r) for r in table)
