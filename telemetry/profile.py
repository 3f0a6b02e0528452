"""Where a multi-agent run spent its time: per-agent timelines, the cross-agent critical
path, who waited for whom, and the run's messages in order — computed from spans only.

Input is the finished spans of one trace (:class:`~telemetry.records.SpanRecord`, from a
spans file or Jaeger), so a profile can be made of any past run.

**Per-agent timeline.** An agent's wall time is its ``invoke_agent`` span. Its direct
children split it: ``chat`` spans are *model* time (retries included; the time queued for
a model slot, ``orchestrace.model.queue_seconds``, precedes the span and is *queued*),
``execute_tool wait_for_message`` is *waiting*, ``execute_tool send_message`` is
*messaging*, every other ``execute_tool X`` is *tool X*; the remainder is *other* (the
runtime's own time between steps).

**Critical path.** The chain of spans that determined the run's wall time, found by walking
backwards from the end of the root span. At a position (span ``S``, time ``t``) the walk
looks for the child of ``S`` that ended last at or before ``t``. If there is one, the time
between its end and ``t`` is ``S``'s own (a segment on ``S``) and the walk descends into it
at its end. If there is none, ``S``'s own time runs back to its start, and the walk goes up
to ``S``'s parent at ``S``'s start. Spans are visited once. The cross-agent step: when the
child is a ``wait_for_message`` call, the agent was blocked until a message arrived, so the
time before the arrival is explained by the sender, not by the waiter. The ``receive``
span that follows the wait links to the ``send`` spans of the messages it delivered; the
message that woke the wait is the first one sent after the wait began (and before it
ended). The segment from that send to the end of the wait is the message's hand-off
(*messaging*; kept even when it lasts no time, so the path shows every hop), and the walk
continues at the ``send`` span in the sender's turn, at the moment it sent — from there up
through the sender's tool call and agent span, and for a spawned agent into the spawning
``create_subagents`` call. A wait that timed out, or whose messages were already waiting,
has no such hop and counts as the waiter's own time. Segments never overlap, each lies
inside its span, and together they never exceed the root span's duration. A span file is
anyone's input: a parent chain that loops back on itself is cut where it loops, and ties
in time are broken by names, not by the order the spans were read in, so a run read from
a file and from Jaeger profiles the same.

**Cost.** Each agent's ``chat`` spans' token counts (cache reads and writes at their own
rates) priced by :mod:`telemetry.cost` per call; a model without a price makes the agent's
and the run's cost unknown (None), never 0.

**Waits.** Each ``wait_for_message`` call's duration is charged to the sender whose message
woke it (``(no message)`` when it timed out or no sender was left, ``(cancelled)`` when the
waiting agent was killed); send → receive latency per sender and recipient
comes from the ``orchestrace.message.wait_seconds`` attribute on each ``receive`` link.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from telemetry import semconv as sc
from telemetry.records import SpanRecord, iter_spans_file

#: The timeline's categories, in display order.
CATEGORIES: Final = ("model", "queued", "tool", "messaging", "waiting", "other")

WAIT_TOOL: Final = "wait_for_message"
SEND_TOOL: Final = "send_message"
#: Who "woke" a wait that no message ended: it timed out or no sender was left.
NO_MESSAGE: Final = "(no message)"
#: ... or the waiting agent was killed or cancelled while it waited.
CANCELLED: Final = "(cancelled)"


class ProfileError(Exception):
    """No run to profile: the file or trace holds no ``invoke_workflow`` root span."""


def category(span: SpanRecord) -> str:
    """``model``, ``tool``, ``messaging``, ``waiting`` or ``runtime`` for a span (``runtime``:
    agent and workflow spans, whose own time the timeline calls *other*)."""
    operation = span.attributes.get(sc.GEN_AI_OPERATION_NAME)
    if operation == sc.OP_CHAT:
        return "model"
    if operation == sc.OP_TOOL:
        tool = span.attributes.get(sc.GEN_AI_TOOL_NAME)
        if tool == WAIT_TOOL:
            return "waiting"
        if tool == SEND_TOOL:
            return "messaging"
        return "tool"
    if span.name.startswith((f"{sc.OP_SEND} ", f"{sc.OP_RECEIVE} ")):
        return "messaging"
    return "runtime"


def _agent_of(span: SpanRecord) -> str:
    value = span.attributes.get(sc.GEN_AI_AGENT_NAME)
    return str(value) if value is not None else "(run)"


def _is_wait(span: SpanRecord) -> bool:
    return span.attributes.get(sc.GEN_AI_TOOL_NAME) == WAIT_TOOL and span.name.startswith(
        sc.OP_TOOL
    )


def _is_receive(span: SpanRecord) -> bool:
    return span.name.startswith(f"{sc.OP_RECEIVE} ")


def _is_chat(span: SpanRecord) -> bool:
    return span.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OP_CHAT


def _seconds(value: object) -> float | None:
    """A seconds attribute as a float, or None when it is not a finite number (a spans
    file may hold ``"NaN"``, which JSON cannot carry)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _json_value(value: object) -> object:
    """An attribute value as JSON-ready data: tuples as lists, non-finite floats as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


@dataclass(frozen=True)
class Segment:
    """One piece of the critical path: ``span`` ran from ``start_ns`` to ``end_ns``.

    ``via`` names the message (id and sender) whose arrival ended a wait: the path
    continues in the sender's turn before this segment.
    """

    agent: str
    span_id: str
    name: str
    category: str
    start_ns: int
    end_ns: int
    via: str | None = None

    @property
    def duration_ns(self) -> int:
        """How long the segment lasted."""
        return self.end_ns - self.start_ns


@dataclass
class AgentTimeline:
    """One agent's wall time, split by category (nanoseconds)."""

    agent: str
    role: str
    start_ns: int
    end_ns: int
    state: str
    #: Nanoseconds by category (see :data:`CATEGORIES`).
    parts: dict[str, int] = field(default_factory=dict)
    #: Nanoseconds by tool name (the ``tool`` category split up).
    tools: dict[str, int] = field(default_factory=dict)
    #: Blocked nanoseconds by the sender whose message ended the wait.
    woke_for: dict[str, int] = field(default_factory=dict)
    #: The agent's steps in time order: (start_ns, end_ns, category).
    steps: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def wall_ns(self) -> int:
        """The agent's wall time."""
        return max(0, self.end_ns - self.start_ns)

    def share(self, part: str) -> float:
        """``part``'s share of the wall time, 0..1."""
        return self.parts.get(part, 0) / self.wall_ns if self.wall_ns else 0.0


@dataclass(frozen=True)
class Event:
    """One step of the run's story, for the sequence diagram: a spawn, message or kill."""

    kind: str  # "spawn", "message", "kill", "end"
    at_ns: int
    source: str
    target: str
    label: str
    message_id: str | None = None
    wait_seconds: float | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class Bar:
    """One span as a bar on the timeline (for the HTML report)."""

    span_id: str
    agent: str
    name: str
    category: str
    start_ns: int
    end_ns: int
    on_path: bool
    attributes: Mapping[str, object]


@dataclass
class AgentCost:
    """One agent's tokens (every ``chat`` span) and their list-price cost in USD.

    ``usd`` is None when any of its calls used a model the price table does not know.
    """

    agent: str
    models: set[str] = field(default_factory=set)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usd: float | None = 0.0


def _int_attr(span: SpanRecord, key: str) -> int:
    value = span.attributes.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _costs(spans: Sequence[SpanRecord], order: Sequence[str]) -> list[AgentCost]:
    """Per-agent tokens and cost, priced call by call (``telemetry.cost``)."""
    from telemetry.cost import default_prices, uncached_input

    prices = default_prices()
    by_agent: dict[str, AgentCost] = {name: AgentCost(name) for name in order}
    for s in spans:
        if s.attributes.get(sc.GEN_AI_OPERATION_NAME) != sc.OP_CHAT:
            continue
        c = by_agent.setdefault(_agent_of(s), AgentCost(_agent_of(s)))
        model = str(
            s.attributes.get(sc.GEN_AI_RESPONSE_MODEL)
            or s.attributes.get(sc.GEN_AI_REQUEST_MODEL)
            or ""
        )
        tokens_in = _int_attr(s, sc.GEN_AI_USAGE_INPUT_TOKENS)
        tokens_out = _int_attr(s, sc.GEN_AI_USAGE_OUTPUT_TOKENS)
        read = _int_attr(s, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)
        write = _int_attr(s, sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)
        c.models.add(model)
        c.input_tokens += tokens_in
        c.output_tokens += tokens_out
        c.cache_read_tokens += read
        c.cache_write_tokens += write
        usd = prices.cost(model, uncached_input(tokens_in, read, write), tokens_out, read, write)
        c.usd = None if usd is None or c.usd is None else c.usd + usd
    return list(by_agent.values())


@dataclass
class Profile:
    """Everything ``orchestrace profile`` reports about one run."""

    trace_id: str
    workflow: str
    start_ns: int
    end_ns: int
    outcome: str
    agents: list[AgentTimeline]
    critical_path: list[Segment]
    #: Blocked seconds: waits[waiter][sender].
    waits: dict[str, dict[str, float]]
    #: Send → receive seconds per (sender, recipient): every delivery's latency.
    latencies: dict[tuple[str, str], list[float]]
    events: list[Event]
    bars: list[Bar]
    #: Token counts and cost per agent, in agent order (see :class:`AgentCost`).
    costs: list[AgentCost] = field(default_factory=list)

    @property
    def total_cost(self) -> float | None:
        """The run's cost in USD; None when any call's model has no price (never 0)."""
        total = 0.0
        for c in self.costs:
            if c.usd is None:
                return None
            total += c.usd
        return total

    @property
    def wall_ns(self) -> int:
        """The run's wall time (its root span)."""
        return max(0, self.end_ns - self.start_ns)

    def path_totals(self) -> dict[str, int]:
        """Critical-path nanoseconds by category."""
        totals: dict[str, int] = {}
        for seg in self.critical_path:
            totals[seg.category] = totals.get(seg.category, 0) + seg.duration_ns
        return totals

    def path_by_agent(self) -> dict[str, int]:
        """Critical-path nanoseconds by agent."""
        totals: dict[str, int] = {}
        for seg in self.critical_path:
            totals[seg.agent] = totals.get(seg.agent, 0) + seg.duration_ns
        return totals

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON-ready data (the shape ``orchestrace profile --json`` prints;
        times are seconds from the run's start, durations seconds)."""
        origin = self.start_ns

        def at(ns: int) -> float:
            return round((ns - origin) / 1e9, 6)

        def secs(ns: int) -> float:
            return round(ns / 1e9, 6)

        return {
            "trace_id": self.trace_id,
            "workflow": self.workflow,
            "outcome": self.outcome,
            "wall_seconds": secs(self.wall_ns),
            "agents": [
                {
                    "agent": a.agent,
                    "role": a.role,
                    "state": a.state,
                    "start": at(a.start_ns),
                    "wall_seconds": secs(a.wall_ns),
                    "seconds": {k: secs(v) for k, v in a.parts.items()},
                    "tools": {k: secs(v) for k, v in a.tools.items()},
                    "woke_for": {k: secs(v) for k, v in a.woke_for.items()},
                }
                for a in self.agents
            ],
            "critical_path": {
                "segments": [
                    {
                        "agent": s.agent,
                        "span": s.name,
                        "span_id": s.span_id,
                        "category": s.category,
                        "start": at(s.start_ns),
                        "seconds": secs(s.duration_ns),
                        "share": round(s.duration_ns / self.wall_ns, 6) if self.wall_ns else 0,
                        "via": s.via,
                    }
                    for s in self.critical_path
                ],
                "by_category": {k: secs(v) for k, v in self.path_totals().items()},
                "by_agent": {k: secs(v) for k, v in self.path_by_agent().items()},
            },
            "waits": [
                {"waiter": w, "sender": s, "seconds": round(v, 6)}
                for w, row in self.waits.items()
                for s, v in row.items()
            ],
            "latency": [
                {
                    "sender": s,
                    "recipient": r,
                    "messages": len(v),
                    "p50_seconds": round(_quantile(v, 0.5), 6),
                    "max_seconds": round(max(v), 6),
                }
                for (s, r), v in sorted(self.latencies.items())
            ],
            "events": [
                {
                    "kind": e.kind,
                    "at": at(e.at_ns),
                    "from": e.source,
                    "to": e.target,
                    "label": e.label,
                    "message_id": e.message_id,
                    "wait_seconds": None if e.wait_seconds is None else round(e.wait_seconds, 6),
                    "outcome": e.outcome,
                }
                for e in self.events
            ],
            "cost": {
                "total_usd": None if self.total_cost is None else round(self.total_cost, 6),
                "agents": [
                    {
                        "agent": c.agent,
                        "models": sorted(c.models),
                        "input_tokens": c.input_tokens,
                        "output_tokens": c.output_tokens,
                        "cache_read_tokens": c.cache_read_tokens,
                        "cache_write_tokens": c.cache_write_tokens,
                        "usd": None if c.usd is None else round(c.usd, 6),
                    }
                    for c in self.costs
                ],
            },
            "spans": [
                {
                    "span_id": b.span_id,
                    "agent": b.agent,
                    "name": b.name,
                    "category": b.category,
                    "start": at(b.start_ns),
                    "seconds": secs(b.end_ns - b.start_ns),
                    "on_critical_path": b.on_path,
                    "attributes": {k: _json_value(v) for k, v in b.attributes.items()},
                }
                for b in self.bars
            ],
        }


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _tie(span: SpanRecord) -> tuple[str, str]:
    """What orders spans that start and end together: their names, never the read order."""
    return (span.name, _agent_of(span))


class _Trace:
    """Index of one trace's spans: by id, parents (loops cut), children by parent ordered
    by end time and by start time."""

    def __init__(self, spans: Sequence[SpanRecord]) -> None:
        self.by_id = {s.span_id: s for s in spans}
        self.parents = _acyclic_parents(self.by_id)
        self.children: dict[str, list[SpanRecord]] = {}
        for s in spans:
            parent = self.parents.get(s.span_id)
            if parent is not None:
                self.children.setdefault(parent, []).append(s)
        self.ends: dict[str, list[int]] = {}
        self.by_start: dict[str, list[SpanRecord]] = {}
        self.starts: dict[str, list[int]] = {}
        for parent, kids in self.children.items():
            kids.sort(key=lambda k: (k.end_ns, k.start_ns, *_tie(k)))
            self.ends[parent] = [k.end_ns for k in kids]
            ordered = sorted(kids, key=lambda k: (k.start_ns, k.end_ns, *_tie(k)))
            self.by_start[parent] = ordered
            self.starts[parent] = [k.start_ns for k in ordered]

    def parent(self, span: SpanRecord) -> SpanRecord | None:
        parent = self.parents.get(span.span_id)
        return None if parent is None else self.by_id[parent]

    def latest_child(self, span: SpanRecord, t: int, visited: set[str]) -> SpanRecord | None:
        """The unvisited child that ended last at or before ``t`` (and after ``span`` began)."""
        kids = self.children.get(span.span_id)
        if not kids:
            return None
        i = bisect.bisect_right(self.ends[span.span_id], t) - 1
        while i >= 0:
            kid = kids[i]
            if kid.end_ns < span.start_ns:
                return None
            if kid.span_id not in visited:
                return kid
            i -= 1
        return None

    def wake_send(self, wait: SpanRecord) -> SpanRecord | None:
        """The ``send`` span whose message ended ``wait``, if a message did."""
        parent = self.parents.get(wait.span_id)
        if parent is None:
            return None
        siblings, starts = self.by_start[parent], self.starts[parent]
        lo = bisect.bisect_left(starts, wait.end_ns)
        hi = bisect.bisect_right(starts, wait.end_ns)
        # A step that starts as the wait ends could be before or after the delivery (the
        # same instant): a receive among them is the delivery.
        receive = next((s for s in siblings[lo:hi] if _is_receive(s)), None)
        if receive is None and not any(_is_chat(s) for s in siblings[lo:hi]):
            for sibling in siblings[hi:]:
                if _is_receive(sibling):
                    receive = sibling
                    break
                if _is_chat(sibling):
                    break  # the next turn began: nothing was delivered for this wait
        if receive is None:
            return None
        sends = [self.by_id[link.span_id] for link in receive.links if link.span_id in self.by_id]
        # Sent while the wait lasted: a message sent before it began was already waiting
        # (no block), one sent after it ended cannot have ended it.
        woke = [s for s in sends if s.end_ns >= wait.start_ns and s.start_ns <= wait.end_ns]
        return min(woke, key=lambda s: (s.end_ns, s.start_ns, *_tie(s))) if woke else None


def _acyclic_parents(by_id: Mapping[str, SpanRecord]) -> dict[str, str]:
    """Each span's parent id, for parents that are in the trace; a span whose parent chain
    loops back (a malformed file) loses the link that closes the loop, so walking up always
    ends."""
    parents = {
        s.span_id: s.parent_span_id
        for s in by_id.values()
        if s.parent_span_id is not None and s.parent_span_id in by_id
    }
    settled: set[str] = set()  # spans whose chain is known to end
    for start in list(parents):
        chain: list[str] = []
        on_chain: set[str] = set()
        node: str | None = start
        while node is not None and node not in settled:
            if node in on_chain:
                del parents[chain[-1]]  # the link back into the chain closes a loop
                break
            chain.append(node)
            on_chain.add(node)
            node = parents.get(node)
        settled.update(chain)
    return parents


def critical_path(spans: Sequence[SpanRecord], root: SpanRecord) -> list[Segment]:
    """The critical path of the run under ``root`` (see the module docstring), in time order."""
    trace = _Trace(spans)
    segments: list[Segment] = []
    visited: set[str] = {root.span_id}
    span: SpanRecord | None = root
    t = root.end_ns

    def own(s: SpanRecord, start: int, end: int, via: str | None = None) -> None:
        start, end = max(start, s.start_ns, root.start_ns), min(end, s.end_ns)
        if end > start or (via is not None and end == start):
            cat = "messaging" if via is not None else category(s)
            segments.append(Segment(_agent_of(s), s.span_id, s.name, cat, start, end, via))

    while span is not None:
        child = trace.latest_child(span, t, visited)
        if child is not None:
            visited.add(child.span_id)
            own(span, child.end_ns, t)
            send = trace.wake_send(child) if _is_wait(child) else None
            if send is not None and send.span_id not in visited:
                visited.add(send.span_id)
                arrived = max(child.start_ns, min(send.end_ns, child.end_ns))
                message = send.attributes.get(sc.MESSAGING_MESSAGE_ID, "?")
                own(child, arrived, child.end_ns, via=f"{message} from {_agent_of(send)}")
                span, t = send, min(send.end_ns, arrived)
                continue
            span, t = child, child.end_ns
            continue
        own(span, span.start_ns, t)
        t = min(t, span.start_ns)
        span = trace.parent(span)
    segments.reverse()
    return segments


def _timelines(spans: Sequence[SpanRecord], trace: _Trace) -> list[AgentTimeline]:
    timelines: list[AgentTimeline] = []
    for agent_span in sorted(
        (s for s in spans if s.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OP_AGENT),
        key=lambda s: (s.start_ns, s.end_ns, *_tie(s)),
    ):
        a = AgentTimeline(
            agent=_agent_of(agent_span),
            role=str(agent_span.attributes.get(sc.AGENT_ROLE, "")),
            start_ns=agent_span.start_ns,
            end_ns=agent_span.end_ns,
            state=str(agent_span.attributes.get(sc.AGENT_STATE, "")),
        )
        parts = dict.fromkeys(CATEGORIES, 0)
        for child in trace.children.get(agent_span.span_id, ()):
            duration = max(0, child.end_ns - child.start_ns)
            cat = category(child)
            if cat == "runtime":
                continue  # receive spans take no time; spawned agents are not children
            parts[cat] += duration
            a.steps.append((child.start_ns, child.end_ns, cat))
            if cat == "model":
                queued = child.attributes.get(sc.MODEL_QUEUE_SECONDS)
                if isinstance(queued, int | float) and queued > 0:
                    parts["queued"] += int(queued * 1e9)
                    a.steps.append((child.start_ns - int(queued * 1e9), child.start_ns, "queued"))
            elif cat == "tool":
                tool = str(child.attributes.get(sc.GEN_AI_TOOL_NAME, child.name))
                a.tools[tool] = a.tools.get(tool, 0) + duration
            elif cat == "waiting":
                send = trace.wake_send(child)
                if send is not None:
                    who = _agent_of(send)
                elif child.attributes.get(sc.TOOL_CANCELLED):
                    who = CANCELLED
                else:
                    who = NO_MESSAGE
                a.woke_for[who] = a.woke_for.get(who, 0) + duration
        parts["other"] = max(0, a.wall_ns - sum(v for k, v in parts.items() if k != "other"))
        a.steps.sort()
        a.parts = parts
        timelines.append(a)
    return timelines


def _events(spans: Sequence[SpanRecord], trace: _Trace) -> list[Event]:
    events: list[Event] = []
    waits: dict[str, float] = {}
    for s in spans:
        for link in s.links:
            wait = _seconds(link.attributes.get(sc.MESSAGE_WAIT_SECONDS))
            if wait is not None:
                waits[link.span_id] = wait
    kills = [s for s in spans if s.attributes.get(sc.GEN_AI_TOOL_NAME) == "kill_subagents"]
    for s in spans:
        operation = s.attributes.get(sc.GEN_AI_OPERATION_NAME)
        if operation == sc.OP_AGENT:
            parent = trace.parent(s)
            agent = _agent_of(s)
            if parent is not None and parent.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OP_TOOL:
                events.append(Event("spawn", s.start_ns, _agent_of(parent), agent, "spawn"))
            state = str(s.attributes.get(sc.AGENT_STATE, ""))
            killer = next(
                (k for k in kills if k.start_ns <= s.end_ns <= k.end_ns and state == "killed"),
                None,
            )
            if killer is not None:
                events.append(Event("kill", s.end_ns, _agent_of(killer), agent, "kill"))
            else:
                reason = str(s.attributes.get(sc.AGENT_END_REASON, ""))
                events.append(Event("end", s.end_ns, agent, agent, f"{state} ({reason})"))
        elif s.name.startswith(f"{sc.OP_SEND} ") and s.kind == "PRODUCER":
            message_id = s.attributes.get(sc.MESSAGING_MESSAGE_ID)
            outcome = s.attributes.get(sc.MESSAGE_OUTCOME)
            events.append(
                Event(
                    "message",
                    s.start_ns,
                    _agent_of(s),
                    str(s.attributes.get(sc.MESSAGING_DESTINATION_NAME, "?")),
                    str(message_id or "message"),
                    message_id=None if message_id is None else str(message_id),
                    wait_seconds=waits.get(s.span_id),
                    outcome=None if outcome is None else str(outcome),
                )
            )
    order = {"spawn": 0, "message": 1, "kill": 2, "end": 3}
    events.sort(key=lambda e: (e.at_ns, order[e.kind], e.source, e.target, e.label))
    return events


#: Attributes a bar shows on hover in the HTML report.
BAR_KEYS: Final = (
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_USAGE_INPUT_TOKENS,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    sc.GEN_AI_TOOL_NAME,
    sc.MESSAGING_MESSAGE_ID,
    sc.MESSAGING_DESTINATION_NAME,
    sc.ERROR_TYPE,
    sc.AGENT_STATE,
    sc.AGENT_END_REASON,
)


def build_profile(spans: Iterable[SpanRecord], trace_id: str | None = None) -> Profile:
    """The profile of ``trace_id`` (default: the run whose root span started last).

    Raises :class:`ProfileError` when there is no such run.
    """
    all_spans = list(spans)
    roots = [
        s
        for s in all_spans
        if s.parent_span_id is None
        and s.name.startswith(f"{sc.OP_WORKFLOW} ")
        and (trace_id is None or s.trace_id == trace_id)
    ]
    if not roots:
        which = f"trace {trace_id}" if trace_id else "the spans"
        raise ProfileError(f"no run (invoke_workflow root span) in {which}")
    root = max(roots, key=lambda s: s.start_ns)
    mine = [s for s in all_spans if s.trace_id == root.trace_id]
    # The same span twice (a file concatenated, a collector that retried) counts once.
    mine = list({s.span_id: s for s in mine}.values())
    trace = _Trace(mine)
    path = critical_path(mine, root)
    on_path = {seg.span_id for seg in path}
    timelines = _timelines(mine, trace)
    waits: dict[str, dict[str, float]] = {}
    for a in timelines:
        for sender, ns in a.woke_for.items():
            waits.setdefault(a.agent, {})[sender] = ns / 1e9
    latencies: dict[tuple[str, str], list[float]] = {}
    for s in mine:
        if not s.name.startswith(f"{sc.OP_RECEIVE} "):
            continue
        recipient = _agent_of(s)
        for link in s.links:
            wait = _seconds(link.attributes.get(sc.MESSAGE_WAIT_SECONDS))
            from_ = link.attributes.get(sc.MESSAGE_SENDER)
            if wait is not None and from_ is not None:
                latencies.setdefault((str(from_), recipient), []).append(wait)
    bars = [
        Bar(
            s.span_id,
            _agent_of(s),
            s.name,
            category(s),
            s.start_ns,
            s.end_ns,
            s.span_id in on_path,
            {k: s.attributes[k] for k in BAR_KEYS if k in s.attributes},
        )
        for s in sorted(mine, key=lambda s: (s.start_ns, s.end_ns, *_tie(s)))
    ]
    return Profile(
        trace_id=root.trace_id,
        workflow=str(root.attributes.get(sc.GEN_AI_WORKFLOW_NAME, root.name)),
        start_ns=root.start_ns,
        end_ns=root.end_ns,
        outcome=str(root.attributes.get(sc.RUN_OUTCOME, "")),
        agents=timelines,
        critical_path=path,
        waits=waits,
        latencies=latencies,
        events=_events(mine, trace),
        bars=bars,
        costs=_costs(mine, [a.agent for a in timelines]),
    )


def profile_file(path: str | os.PathLike[str], trace_id: str | None = None) -> Profile:
    """The profile of one run in an OTLP/JSON-lines spans file (default: the latest run)."""
    wanted = trace_id
    return build_profile(
        (s for s in iter_spans_file(path) if wanted is None or s.trace_id == wanted), trace_id
    )
