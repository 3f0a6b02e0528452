"""Render a :class:`~telemetry.profile.Profile` as terminal text or Mermaid."""

from __future__ import annotations

import re
from typing import Final

from telemetry.cost import format_usd
from telemetry.profile import CATEGORIES, AgentTimeline, Profile

#: Bar characters per category: (terminal, plain ASCII).
_BAR: Final = {
    "model": ("█", "M"),
    "queued": ("▒", "q"),
    "tool": ("▓", "T"),
    "messaging": ("▞", "s"),
    "waiting": ("░", "."),
    "other": ("·", "-"),
}
#: Critical-path segments shorter than this share of the run are folded into one line.
_MIN_SHARE: Final = 0.005


def _s(ns: int | float) -> str:
    return f"{ns / 1e9:.3f}s"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def _safe(text: str) -> str:
    """Names come from spans (a file anyone could write): no control characters."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def render_text(profile: Profile, *, width: int = 100, fancy: bool = True) -> str:
    """The profile for a terminal: timelines as bars ``width`` columns wide (Unicode blocks
    when ``fancy``, else ASCII letters), the critical path, and the waits."""
    lines: list[str] = []
    wall = profile.wall_ns
    lines.append(
        f"Profile of run {_safe(profile.workflow)} · trace {profile.trace_id} · "
        f"{_s(wall)} · {_safe(profile.outcome) or 'unknown outcome'}"
    )
    lines.append("")
    which = 0 if fancy else 1
    legend = "  ".join(f"{_BAR[c][which]!r} {c}" for c in CATEGORIES if c != "other")
    lines.append(f"Each agent's time, left to right ({legend}; '{_BAR['other'][which]}' other):")
    names = [_safe(a.agent) for a in profile.agents]
    name_w = max((len(n) for n in names), default=5)
    bar_w = max(10, width - name_w - 14)  # the line: 2 + name + 1 + 8 + ' |' + bar + '|'
    for a, name in zip(profile.agents, names, strict=True):
        lines.append(f"  {name:<{name_w}} {_s(a.wall_ns):>8} |{_bar(a, profile, bar_w, which)}|")
    lines.append("")
    header = ["agent", "wall", *CATEGORIES, "woke for (blocked)"]
    rows = [header]
    for a, name in zip(profile.agents, names, strict=True):
        woke = ", ".join(
            f"{_safe(w)} {_s(ns)}" for w, ns in sorted(a.woke_for.items(), key=lambda x: -x[1])
        )
        rows.append(
            [name, _s(a.wall_ns), *(_pct(a.parts.get(c, 0), a.wall_ns) for c in CATEGORIES), woke]
        )
    lines += _table(rows)
    tools = sorted(
        {(t, ns) for a in profile.agents for t, ns in a.tools.items()}, key=lambda x: -x[1]
    )
    if tools:
        totals: dict[str, int] = {}
        for a in profile.agents:
            for t, ns in a.tools.items():
                totals[t] = totals.get(t, 0) + ns
        lines.append(
            "  tools: "
            + ", ".join(
                f"{_safe(t)} {_s(ns)}" for t, ns in sorted(totals.items(), key=lambda x: -x[1])
            )
        )
    lines.append("")

    path = profile.critical_path
    lines.append(
        f"Critical path ({_s(sum(s.duration_ns for s in path))} of {_s(wall)}; "
        "what the run's end waited on, across agents):"
    )
    rows = [["start", "took", "share", "agent", "span"]]
    folded = folded_ns = 0
    for seg in path:
        if wall and seg.duration_ns / wall < _MIN_SHARE and seg.via is None:  # hops stay
            folded += 1
            folded_ns += seg.duration_ns
            continue
        span = _safe(seg.name) + (f"  ← woken by {_safe(seg.via)}" if seg.via else "")
        rows.append(
            [
                _s(seg.start_ns - profile.start_ns),
                _s(seg.duration_ns),
                _pct(seg.duration_ns, wall),
                _safe(seg.agent),
                span,
            ]
        )
    lines += _table(rows)
    if folded:
        lines.append(f"  (+ {folded} short segments, {_s(folded_ns)} in all)")
    by_cat = sorted(profile.path_totals().items(), key=lambda x: -x[1])
    lines.append(
        "  by category: " + ", ".join(f"{c} {_s(ns)} ({_pct(ns, wall)})" for c, ns in by_cat)
    )
    by_agent = sorted(profile.path_by_agent().items(), key=lambda x: -x[1])
    lines.append(
        "  by agent: " + ", ".join(f"{_safe(a)} {_s(ns)} ({_pct(ns, wall)})" for a, ns in by_agent)
    )
    lines.append("")

    if profile.waits:
        senders = sorted({s for row in profile.waits.values() for s in row})
        lines.append("Who waited for whom (seconds blocked in wait_for_message, by who woke it):")
        rows = [["waiter", *map(_safe, senders)]]
        column = {sender: i for i, sender in enumerate(senders, 1)}
        for waiter, row in profile.waits.items():
            cells = [_safe(waiter), *["-"] * len(senders)]  # a waiter has few senders
            for sender, seconds in row.items():
                cells[column[sender]] = f"{seconds:.3f}"
            rows.append(cells)
        lines += _table(rows)
        lines.append("")
    if profile.costs:
        lines.append("Cost (list prices; ? = a model with no price):")
        rows = [["agent", "model", "in tok", "out tok", "cache rd", "cache wr", "cost"]]
        for c in profile.costs:
            rows.append(
                [
                    _safe(c.agent),
                    _safe(", ".join(sorted(c.models))) or "-",
                    str(c.input_tokens),
                    str(c.output_tokens),
                    str(c.cache_read_tokens),
                    str(c.cache_write_tokens),
                    format_usd(c.usd),
                ]
            )
        rows.append(["total", "", "", "", "", "", format_usd(profile.total_cost)])
        lines += _table(rows)
        lines.append("")
    if profile.latencies:
        lines.append("Send → receive latency:")
        rows = [["sender", "recipient", "messages", "p50", "max"]]
        for (sender, recipient), values in sorted(profile.latencies.items()):
            ordered = sorted(values)
            rows.append(
                [
                    _safe(sender),
                    _safe(recipient),
                    str(len(values)),
                    f"{ordered[len(ordered) // 2]:.3f}s",
                    f"{ordered[-1]:.3f}s",
                ]
            )
        lines += _table(rows)
    return "\n".join(lines).rstrip() + "\n"


def _bar(agent: AgentTimeline, profile: Profile, width: int, which: int) -> str:
    """One character per time slice of the run: the category that filled most of it.

    One sweep over the columns and the agent's steps (in start order): a column looks only
    at the steps that overlap it, in step order, so a long agent costs its steps plus its
    columns, not their product.
    """
    wall = profile.wall_ns or 1
    steps = agent.steps
    cells: list[str] = []
    active: list[tuple[int, int, str]] = []  # steps begun before the column's end, in order
    first_end = 0  # the earliest end among them
    ahead = 0  # the first step not yet begun
    for column in range(width):
        lo = profile.start_ns + wall * column // width
        hi = profile.start_ns + wall * (column + 1) // width
        if hi <= agent.start_ns or lo >= agent.end_ns:
            cells.append(" ")
            continue
        while ahead < len(steps) and steps[ahead][0] < hi:
            step = steps[ahead]
            if not active or step[1] < first_end:
                first_end = step[1]
            active.append(step)
            ahead += 1
        if active and first_end <= lo:
            active = [step for step in active if step[1] > lo]  # over before this column
            first_end = min([step[1] for step in active], default=0)
        filled: dict[str, int] = {}
        for start, end, cat in active:
            overlap = (end if end < hi else hi) - (start if start > lo else lo)
            if overlap > 0:
                filled[cat] = filled.get(cat, 0) + overlap
        inside = min(hi, agent.end_ns) - max(lo, agent.start_ns)
        other = inside - sum(filled.values())
        best = max(filled, key=filled.__getitem__) if filled else "other"  # the first most
        cells.append(_BAR[best if filled.get(best, 0) >= other else "other"][which])
    return "".join(cells)


def _table(rows: list[list[str]]) -> list[str]:
    # map and zip: the wait matrix of a thousand agents is a million cells.
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    return ["  " + "  ".join(map(str.ljust, r, widths)).rstrip() for r in rows]


_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,()/:+\-=→]")


def _mermaid_text(text: str) -> str:
    """Message text for Mermaid: anything outside a safe set as an entity code (#59;)."""
    return _MERMAID_UNSAFE.sub(lambda m: f"#{ord(m.group())};", text)


def render_mermaid(profile: Profile) -> str:
    """The run as a Mermaid ``sequenceDiagram``: spawns, messages (id and wait) and kills."""
    order: list[str] = []
    for a in profile.agents:
        if a.agent not in order:
            order.append(a.agent)
    for e in profile.events:
        for who in (e.source, e.target):
            if who not in order:
                order.append(who)
    alias = {name: f"a{i}" for i, name in enumerate(order)}
    lines = ["sequenceDiagram"]
    lines += [f"    participant {alias[n]} as {_mermaid_text(n)}" for n in order]
    for e in profile.events:
        src, dst = alias[e.source], alias[e.target]
        if e.kind == "spawn":
            lines.append(f"    {src}->>{dst}: spawn")
        elif e.kind == "kill":
            lines.append(f"    {src}-x{dst}: kill")
        elif e.kind == "end":
            lines.append(f"    Note over {src}: {_mermaid_text(e.label)}")
        else:
            label = e.message_id or "message"
            if e.wait_seconds is not None:
                label += f" (waited {e.wait_seconds:.3f}s)"
            if e.outcome and e.outcome != "delivered":
                label += f" ({e.outcome})"
            arrow = "->>" if e.outcome in (None, "delivered") else "--x"
            lines.append(f"    {src}{arrow}{dst}: {_mermaid_text(label)}")
    return "\n".join(lines) + "\n"
