"""Where a multi-agent run spent its time: per-agent timelines, the cross-agent critical
path, who waited for whom, and the run's messages in order — computed from spans only.

Input is the finished spans of one trace (:class:`~telemetry.records.SpanRecord`, from
Jaeger or a live run; or the spans file reader's lean :class:`~telemetry.scan.TreeFacts`),
so a profile can be made of any past run.

**Speed.** A 1,000-agent run leaves ~400,000 spans. :func:`profile_file` decodes only the
attributes the profile reads (:data:`PROFILE_KEYS`), in parallel processes for a big file;
each span's agent and category are worked out once; children are sorted only for the
parents that are asked about; and ``--json`` is written row by row
(:meth:`Profile.write_json`). The results are the same as from full records, read in one
pass (``tests/test_profile_fast.py``).

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
import codecs
import gc
import json
import math
import os
import pickle
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import IO, Any, Final, Protocol

import msgspec

from telemetry import semconv as sc
from telemetry.records import AttrValue, LinkRecord, ReadNotes

#: The timeline's categories, in display order.
CATEGORIES: Final = ("model", "queued", "tool", "messaging", "waiting", "other")

WAIT_TOOL: Final = "wait_for_message"
SEND_TOOL: Final = "send_message"
KILL_TOOL: Final = "kill_subagents"
#: Who "woke" a wait that no message ended: it timed out or no sender was left.
NO_MESSAGE: Final = "(no message)"
#: ... or the waiting agent was killed or cancelled while it waited.
CANCELLED: Final = "(cancelled)"

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
#: Every span attribute the profile reads: a spans file's other attributes are skipped
#: unread (:func:`profile_file`), and the profile is the same as from the full records.
PROFILE_KEYS: Final = frozenset(
    {
        *BAR_KEYS,
        sc.GEN_AI_OPERATION_NAME,
        sc.GEN_AI_AGENT_NAME,
        sc.GEN_AI_WORKFLOW_NAME,
        sc.GEN_AI_RESPONSE_MODEL,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
        sc.AGENT_ROLE,
        sc.MODEL_QUEUE_SECONDS,
        sc.TOOL_CANCELLED,
        sc.MESSAGE_OUTCOME,
        sc.RUN_OUTCOME,
    }
)
#: ... and every link attribute it reads.
LINK_KEYS: Final = frozenset({sc.MESSAGE_WAIT_SECONDS, sc.MESSAGE_SENDER})

_SEND: Final = f"{sc.OP_SEND} "
_RECEIVE: Final = f"{sc.OP_RECEIVE} "
_WORKFLOW: Final = f"{sc.OP_WORKFLOW} "


class ProfileError(Exception):
    """No run to profile: the file or trace holds no ``invoke_workflow`` root span."""


class ProfileSpan(Protocol):
    """What the profile reads of a span: a :class:`~telemetry.records.SpanRecord` (from
    Jaeger, a live run or tests) or a :class:`~telemetry.scan.TreeFacts` (the spans-file
    reader's lean record) — the same fields, and the same profile from either."""

    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def attributes(self) -> Mapping[str, AttrValue]: ...
    @property
    def links(self) -> Sequence[LinkRecord]: ...


def category(span: ProfileSpan) -> str:
    """``model``, ``tool``, ``messaging``, ``waiting`` or ``runtime`` for a span (``runtime``:
    agent and workflow spans, whose own time the timeline calls *other*)."""
    attributes = span.attributes
    return _category(
        attributes.get(sc.GEN_AI_OPERATION_NAME), attributes.get(sc.GEN_AI_TOOL_NAME), span.name
    )


def _category(operation: object, tool: object, name: str) -> str:
    if operation == sc.OP_CHAT:
        return "model"
    if operation == sc.OP_TOOL:
        if tool == WAIT_TOOL:
            return "waiting"
        if tool == SEND_TOOL:
            return "messaging"
        return "tool"
    if name.startswith((_SEND, _RECEIVE)):
        return "messaging"
    return "runtime"


class _Span(msgspec.Struct, gc=False):
    """One span as the analysis reads it: the record's fields and, worked out once, what
    every step asks of it (its agent, category, operation and tool)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttrValue]
    links: Sequence[LinkRecord]
    agent: str
    cat: str
    operation: AttrValue | None
    tool: AttrValue | None


def _span_of(record: ProfileSpan) -> _Span:
    attributes = record.attributes
    operation = attributes.get(sc.GEN_AI_OPERATION_NAME)
    tool = attributes.get(sc.GEN_AI_TOOL_NAME)
    agent = attributes.get(sc.GEN_AI_AGENT_NAME)
    name = record.name
    return _Span(
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        name,
        record.kind,
        record.start_ns,
        record.end_ns,
        attributes,
        record.links,
        "(run)" if agent is None else str(agent),
        _category(operation, tool, name),
        operation,
        tool,
    )


#: What orders spans: by time, and spans that start and end together by their names, never
#: by the order they were read in.
_BY_END: Final = attrgetter("end_ns", "start_ns", "name", "agent")
_BY_START: Final = attrgetter("start_ns", "end_ns", "name", "agent")


def _is_wait(span: _Span) -> bool:
    return span.tool == WAIT_TOOL and span.name.startswith(sc.OP_TOOL)


def _seconds(value: object) -> float | None:
    """A seconds attribute as a float, or None when it is not a finite number (a spans
    file may hold ``"NaN"``, which JSON cannot carry)."""
    if value.__class__ is float:  # the usual case, first
        return value if math.isfinite(value) else None
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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


def _count(value: object) -> int:
    """A token count attribute: a positive int, else 0."""
    if value.__class__ is int:  # the usual case, first
        return value if value > 0 else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _costs(chats: Sequence[_Span], order: Sequence[str]) -> list[AgentCost]:
    """Per-agent tokens and cost, priced call by call (``telemetry.cost``)."""
    from telemetry.cost import Price, default_prices, uncached_input

    prices = default_prices()
    price_of: dict[str, Price | None] = {}  # each model looked up once
    by_agent: dict[str, list[_Span]] = {name: [] for name in order}
    for s in chats:
        calls = by_agent.get(s.agent)
        if calls is None:
            by_agent[s.agent] = [s]
        else:
            calls.append(s)
    costs = []
    for agent, calls in by_agent.items():
        c = AgentCost(agent)
        tokens_in = tokens_out = tokens_read = tokens_written = 0
        usd: float | None = 0.0
        for s in calls:
            attributes = s.attributes
            model = str(
                attributes.get(sc.GEN_AI_RESPONSE_MODEL)
                or attributes.get(sc.GEN_AI_REQUEST_MODEL)
                or ""
            )
            in_ = _count(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS))
            out = _count(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
            read = _count(attributes.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS))
            write = _count(sc.cache_write_tokens(attributes))
            c.models.add(model)
            tokens_in += in_
            tokens_out += out
            tokens_read += read
            tokens_written += write
            if model in price_of:
                price = price_of[model]
            else:
                price = price_of[model] = prices.price(model)
            if usd is not None:
                usd = (
                    None
                    if price is None
                    else usd + price.cost(uncached_input(in_, read, write), out, read, write)
                )
        c.input_tokens, c.output_tokens = tokens_in, tokens_out
        c.cache_read_tokens, c.cache_write_tokens = tokens_read, tokens_written
        c.usd = usd
        costs.append(c)
    return costs


#: Rows of ``--json``'s event and span lists written at a time.
_JSON_CHUNK: Final = 4096
#: JSON text of a string, as ``json.dumps(..., ensure_ascii=False)`` writes it (the C one).
_json_str: Final = json.encoder.encode_basestring


def _json_text(data: object) -> str:
    """``data`` as ``json.dumps(data, indent=2, ensure_ascii=False)`` writes it: encoded
    by the C encoder (Python's is pure Python when it indents) and indented by msgspec —
    the same text, about 10x sooner."""
    try:
        compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return msgspec.json.format(compact, indent=2)
    except (msgspec.MsgspecError, ValueError):  # NaN, lone surrogates: the slow way
        return json.dumps(data, ensure_ascii=False, indent=2)


def _json_scalar(value: object) -> str:
    """One value as ``json.dumps(value, ensure_ascii=False)`` writes it (``indent=2`` for a
    list or mapping, whose lines then need indenting by the caller)."""
    if type(value) is str:
        return _json_str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return _json_text(value)


def _write_joined(out: IO[str], rows: Iterable[str]) -> None:
    """Write ``rows`` ``,``-separated, a few thousand at a time."""
    chunk: list[str] = []
    separator = ""
    for row in rows:
        chunk.append(row)
        if len(chunk) == _JSON_CHUNK:
            out.write(separator + ",\n".join(chunk))
            chunk.clear()
            separator = ",\n"
    if chunk:
        out.write(separator + ",\n".join(chunk))


#: A list of ``--json`` at least this long is written by two processes: a forked copy of
#: this one writes the second half to a temporary file while this one writes the first.
FORK_ROWS: int = 50_000


def _write_list(out: IO[str], rows: Callable[[int, int], Iterator[str]], count: int) -> None:
    """Write the ``count`` rows of a list, ``rows(start, stop)`` making those in a range."""
    # The copy writes the last three eighths: its first touch of each page of the spans
    # copies the page, so it makes rows ~1.7 times slower than this process.
    half = count - count * 3 // 8
    child = _fork_rows(rows, half, count) if count >= FORK_ROWS else None
    if child is None:
        _write_joined(out, rows(0, count))
        return
    pid, part = child
    try:
        _write_joined(out, rows(0, half))
        _, status = os.waitpid(pid, 0)
        pid = 0
        if os.waitstatus_to_exitcode(status) != 0:  # say, text UTF-8 cannot carry: here
            out.write(",\n")
            _write_joined(out, rows(half, count))
            return
        out.write(",\n")
        part.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        while block := part.read(1 << 20):
            out.write(decoder.decode(block))
        out.write(decoder.decode(b"", final=True))
    finally:
        if pid:  # this process failed first (a closed pipe): the copy is not needed
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        part.close()


def _fork_rows(
    rows: Callable[[int, int], Iterator[str]], start: int, stop: int
) -> tuple[int, IO[bytes]] | None:
    """A forked copy of this process writing ``rows(start, stop)`` (UTF-8) to a temporary
    file: its id and the file; None where forking is unsafe (threads) or unavailable."""
    from telemetry.scan import cpus

    if not hasattr(os, "fork") or cpus() < 2 or threading.active_count() != 1:
        return None
    part = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it)
    try:
        pid = os.fork()
    except OSError:
        part.close()
        return None
    if pid == 0:  # the copy: write, and leave without running anything of the parent's
        code = 1
        try:
            gc.disable()
            with open(part.fileno(), "w", encoding="utf-8", closefd=False) as text:
                _write_joined(text, rows(start, stop))
            code = 0
        finally:
            os._exit(code)
    return pid, part


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
    #: Token counts and cost per agent, in agent order (see :class:`AgentCost`).
    costs: list[AgentCost] = field(default_factory=list)
    #: The run's spans (:attr:`bars` and ``--json``'s span list are made from them when
    #: asked for: the text report never needs them).
    _spans: list[_Span] = field(default_factory=list, repr=False, compare=False)
    _ordered: bool = field(default=False, repr=False, compare=False)

    def _spans_in_order(self) -> list[_Span]:
        if not self._ordered:
            self._spans.sort(key=_BY_START)
            self._ordered = True
        return self._spans

    @property
    def bars(self) -> list[Bar]:
        """Every span of the run as a bar, in time order."""
        on_path = {seg.span_id for seg in self.critical_path}
        return [
            Bar(
                s.span_id,
                s.agent,
                s.name,
                s.cat,
                s.start_ns,
                s.end_ns,
                s.span_id in on_path,
                {k: s.attributes[k] for k in BAR_KEYS if k in s.attributes},
            )
            for s in self._spans_in_order()
        ]

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
        data = self._json_head()
        data["spans"] = self._json_spans(self._spans_in_order())
        return data

    def write_json(self, out: IO[str]) -> None:
        """Write :meth:`to_json` to ``out`` exactly as ``json.dump(..., indent=2,
        ensure_ascii=False)`` would (no newline at the end), ten times sooner.

        The long lists — events and spans — are written row by row from the profile (each
        row's text made directly; values as the ``json`` module spells them), never held as
        data or text in full, and a long one by two processes (:data:`FORK_ROWS`); the rest
        is encoded by :func:`_json_text`.
        """
        head = self._json_head(events=False)
        head["spans"] = []
        text = _json_text(head)
        lists = {
            "events": (len(self.events), self._event_rows),
            "spans": (len(self._spans_in_order()), self._span_rows),
        }
        for key, (count, rows) in lists.items():
            # A newline in the text is always the layout's (JSON strings escape theirs).
            marker = f'\n  "{key}": []'
            before, found, text = text.partition(marker)
            out.write(before)
            if not found:
                raise AssertionError(f"{key} is not in the JSON document")  # pragma: no cover
            if not count:
                out.write(marker)
                continue
            out.write(f'\n  "{key}": [\n')
            _write_list(out, rows, count)
            out.write("\n  ]")
        out.write(text)

    def _event_rows(self, start: int, stop: int) -> Iterator[str]:
        origin = self.start_ns
        text, scalar, seconds = _json_str, _json_scalar, float.__repr__
        for e in self.events[start:stop]:
            wait = "null" if e.wait_seconds is None else scalar(round(e.wait_seconds, 6))
            yield (
                f'    {{\n      "kind": {text(e.kind)},\n'
                f'      "at": {seconds(round((e.at_ns - origin) / 1e9, 6))},\n'
                f'      "from": {text(e.source)},\n      "to": {text(e.target)},\n'
                f'      "label": {text(e.label)},\n'
                f'      "message_id": {scalar(e.message_id)},\n'
                f'      "wait_seconds": {wait},\n'
                f'      "outcome": {scalar(e.outcome)}\n    }}'
            )

    def _span_rows(self, start: int, stop: int) -> Iterator[str]:
        origin = self.start_ns
        on_path = {seg.span_id for seg in self.critical_path}
        text, seconds = _json_str, float.__repr__
        keys = {k: f"        {text(k)}: " for k in BAR_KEYS}

        def value(v: AttrValue) -> str:
            if v.__class__ is str:
                return text(v)
            return _json_scalar(_json_value(v)).replace("\n", "\n        ")

        for s in self._spans_in_order()[start:stop]:
            attributes = s.attributes
            shown = [keys[k] + value(attributes[k]) for k in BAR_KEYS if k in attributes]
            yield (
                f'    {{\n      "span_id": {text(s.span_id)},\n'
                f'      "agent": {text(s.agent)},\n      "name": {text(s.name)},\n'
                f'      "category": {text(s.cat)},\n'
                f'      "start": {seconds(round((s.start_ns - origin) / 1e9, 6))},\n'
                f'      "seconds": {seconds(round((s.end_ns - s.start_ns) / 1e9, 6))},\n'
                f'      "on_critical_path": {"true" if s.span_id in on_path else "false"},\n'
                + (
                    '      "attributes": {\n' + ",\n".join(shown) + "\n      }\n    }"
                    if shown
                    else '      "attributes": {}\n    }'
                )
            )

    def _json_spans(self, spans: Sequence[_Span]) -> list[dict[str, Any]]:
        origin = self.start_ns
        on_path = {seg.span_id for seg in self.critical_path}
        return [
            {
                "span_id": s.span_id,
                "agent": s.agent,
                "name": s.name,
                "category": s.cat,
                "start": round((s.start_ns - origin) / 1e9, 6),
                "seconds": round((s.end_ns - s.start_ns) / 1e9, 6),
                "on_critical_path": s.span_id in on_path,
                "attributes": {
                    k: _json_value(s.attributes[k]) for k in BAR_KEYS if k in s.attributes
                },
            }
            for s in spans
        ]

    def _json_head(self, *, events: bool = True) -> dict[str, Any]:
        """Every key of :meth:`to_json` but ``spans`` (and with ``events=False``, an empty
        event list)."""
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
                for e in (self.events if events else ())
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
        }


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Trace:
    """Index of one trace's spans: by id; each span's parent (a link that closes a loop cut);
    children by parent (ordered by end time or by start time when first asked: most parents
    are never asked); and, sorted out in the same pass, the spans each part of the profile
    reads (each list in read order)."""

    def __init__(self, by_id: Mapping[str, _Span]) -> None:
        self.by_id = by_id
        self.agents: list[_Span] = []  # invoke_agent spans
        self.story: list[_Span] = []  # ... and send spans: the sequence diagram's
        self.linked: list[_Span] = []  # spans with links
        self.receives: list[_Span] = []  # receive spans with links
        self.kills: list[_Span] = []  # kill_subagents calls
        self.chats: list[_Span] = []  # model calls
        groups: dict[str, list[_Span]] = {}
        for s in by_id.values():
            parent = s.parent_span_id
            if parent is not None:
                kids = groups.get(parent)
                if kids is None:
                    groups[parent] = [s]
                else:
                    kids.append(s)
            operation = s.operation
            if operation == sc.OP_AGENT:
                self.agents.append(s)
                self.story.append(s)
            elif s.kind == "PRODUCER" and s.name.startswith(_SEND):
                self.story.append(s)
            if operation == sc.OP_CHAT:
                self.chats.append(s)
            if s.tool == KILL_TOOL:
                self.kills.append(s)
            if s.links:
                self.linked.append(s)
                if s.name.startswith(_RECEIVE):
                    self.receives.append(s)
        #: Children by parent id, in read order (parents in the trace only).
        self.children = {p: kids for p, kids in groups.items() if p in by_id}
        self.cut = _loop_links(by_id, self.children)
        for span_id in self.cut:
            parent = by_id[span_id].parent_span_id
            assert parent is not None
            self.children[parent] = [k for k in self.children[parent] if k.span_id != span_id]
        self._by_end: dict[str, tuple[list[_Span], list[int]]] = {}
        self._by_start: dict[str, tuple[list[_Span], list[int]]] = {}

    def by_end(self, parent: str) -> tuple[list[_Span], list[int]]:
        """``parent``'s children ordered by end time, and their ends."""
        found = self._by_end.get(parent)
        if found is None:
            kids = sorted(self.children.get(parent, ()), key=_BY_END)
            found = self._by_end[parent] = (kids, [k.end_ns for k in kids])
        return found

    def by_start(self, parent: str) -> tuple[list[_Span], list[int]]:
        """``parent``'s children ordered by start time, and their starts."""
        found = self._by_start.get(parent)
        if found is None:
            kids = sorted(self.children.get(parent, ()), key=_BY_START)
            found = self._by_start[parent] = (kids, [k.start_ns for k in kids])
        return found

    def parent(self, span: _Span) -> _Span | None:
        parent = span.parent_span_id
        if parent is None or span.span_id in self.cut:
            return None
        return self.by_id.get(parent)

    def latest_child(self, span: _Span, t: int, visited: set[str]) -> _Span | None:
        """The unvisited child that ended last at or before ``t`` (and after ``span`` began)."""
        kids, ends = self.by_end(span.span_id)
        i = bisect.bisect_right(ends, t) - 1
        while i >= 0:
            kid = kids[i]
            if kid.end_ns < span.start_ns:
                return None
            if kid.span_id not in visited:
                return kid
            i -= 1
        return None

    def wake_send(self, wait: _Span) -> _Span | None:
        """The ``send`` span whose message ended ``wait``, if a message did."""
        parent = self.parent(wait)
        if parent is None:
            return None
        siblings, starts = self.by_start(parent.span_id)
        lo = bisect.bisect_left(starts, wait.end_ns)
        hi = bisect.bisect_right(starts, wait.end_ns)
        # A step that starts as the wait ends could be before or after the delivery (the
        # same instant): a receive among them is the delivery.
        receive: _Span | None = None
        chat = False
        for i in range(lo, hi):
            sibling = siblings[i]
            if receive is None and sibling.name.startswith(_RECEIVE):
                receive = sibling
            chat = chat or sibling.cat == "model"
        if receive is None and not chat:
            for i in range(hi, len(siblings)):
                sibling = siblings[i]
                if sibling.name.startswith(_RECEIVE):
                    receive = sibling
                    break
                if sibling.cat == "model":
                    break  # the next turn began: nothing was delivered for this wait
        if receive is None:
            return None
        by_id = self.by_id
        sends = [by_id[link.span_id] for link in receive.links if link.span_id in by_id]
        # Sent while the wait lasted: a message sent before it began was already waiting
        # (no block), one sent after it ended cannot have ended it.
        woke = [s for s in sends if s.end_ns >= wait.start_ns and s.start_ns <= wait.end_ns]
        return min(woke, key=_BY_END) if woke else None


def _loop_links(by_id: Mapping[str, _Span], children: Mapping[str, list[_Span]]) -> set[str]:
    """The spans whose link to their parent closes a loop (a malformed file): cut, walking
    up always ends.

    Walks up from each span in read order, marking the spans it passes with its number:
    meeting its own number again is a loop (the last link followed closes it), another's
    is a chain already known to end. Only parents can be on a loop, so a file without one
    is known after walking up from each parent; only then are all spans walked.
    """
    walked: dict[str, int] = {}
    for number, start in enumerate(children):
        node = start
        while node not in walked:
            walked[node] = number
            up = by_id[node].parent_span_id
            if up is None or up not in children:
                break
            node = up
        else:
            if walked[node] == number:
                break  # a loop
    else:
        return set()
    cut: set[str] = set()
    walked.clear()
    for number, span in enumerate(by_id.values()):
        parent = span.parent_span_id
        if parent is None or parent not in children:  # no parent in the trace
            continue
        # A span that is no one's parent cannot be on a loop: its walk is its parent's.
        node = span.span_id if span.span_id in children else parent
        last: str | None = None
        while True:
            seen = walked.get(node)
            if seen is not None:
                if seen == number and last is not None:
                    cut.add(last)  # the link back into the chain closes a loop
                break
            walked[node] = number
            up = by_id[node].parent_span_id
            if up is None or up not in children or node in cut:
                break
            last, node = node, up
    return cut


def critical_path(spans: Iterable[ProfileSpan], root: ProfileSpan) -> list[Segment]:
    """The critical path of the run under ``root`` (see the module docstring), in time order.

    A span given twice (the same id) counts once, its last copy.
    """
    return _critical_path(_Trace({s.span_id: _span_of(s) for s in spans}), _span_of(root))


def _critical_path(trace: _Trace, root: _Span) -> list[Segment]:
    segments: list[Segment] = []
    visited: set[str] = {root.span_id}
    span: _Span | None = root
    t = root.end_ns

    def own(s: _Span, start: int, end: int, via: str | None = None) -> None:
        start, end = max(start, s.start_ns, root.start_ns), min(end, s.end_ns)
        if end > start or (via is not None and end == start):
            cat = "messaging" if via is not None else s.cat
            segments.append(Segment(s.agent, s.span_id, s.name, cat, start, end, via))

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
                own(child, arrived, child.end_ns, via=f"{message} from {send.agent}")
                span, t = send, min(send.end_ns, arrived)
                continue
            span, t = child, child.end_ns
            continue
        own(span, span.start_ns, t)
        t = min(t, span.start_ns)
        span = trace.parent(span)
    segments.reverse()
    return segments


def _timelines(agent_spans: Sequence[_Span], trace: _Trace) -> list[AgentTimeline]:
    timelines: list[AgentTimeline] = []
    for agent_span in sorted(agent_spans, key=_BY_START):
        a = AgentTimeline(
            agent=agent_span.agent,
            role=str(agent_span.attributes.get(sc.AGENT_ROLE, "")),
            start_ns=agent_span.start_ns,
            end_ns=agent_span.end_ns,
            state=str(agent_span.attributes.get(sc.AGENT_STATE, "")),
        )
        parts = dict.fromkeys(CATEGORIES, 0)
        steps = a.steps
        for child in trace.by_end(agent_span.span_id)[0]:
            cat = child.cat
            if cat == "runtime":
                continue  # receive spans take no time; spawned agents are not children
            duration = max(0, child.end_ns - child.start_ns)
            parts[cat] += duration
            steps.append((child.start_ns, child.end_ns, cat))
            if cat == "model":
                queued = child.attributes.get(sc.MODEL_QUEUE_SECONDS)
                if isinstance(queued, int | float) and queued > 0:
                    parts["queued"] += int(queued * 1e9)
                    steps.append((child.start_ns - int(queued * 1e9), child.start_ns, "queued"))
            elif cat == "tool":
                tool = str(child.attributes.get(sc.GEN_AI_TOOL_NAME, child.name))
                a.tools[tool] = a.tools.get(tool, 0) + duration
            elif cat == "waiting":
                send = trace.wake_send(child)
                if send is not None:
                    who = send.agent
                elif child.attributes.get(sc.TOOL_CANCELLED):
                    who = CANCELLED
                else:
                    who = NO_MESSAGE
                a.woke_for[who] = a.woke_for.get(who, 0) + duration
        parts["other"] = max(0, a.wall_ns - sum(v for k, v in parts.items() if k != "other"))
        steps.sort()
        a.parts = parts
        timelines.append(a)
    return timelines


def _events(trace: _Trace) -> list[Event]:
    """The spawns, messages, kills and ends, in time order."""
    events: list[Event] = []
    waits: dict[str, float] = {}
    for s in trace.linked:
        for link in s.links:
            wait = _seconds(link.attributes.get(sc.MESSAGE_WAIT_SECONDS))
            if wait is not None:
                waits[link.span_id] = wait
    kills = trace.kills
    for s in trace.story:
        if s.operation == sc.OP_AGENT:
            parent = trace.parent(s)
            agent = s.agent
            if parent is not None and parent.operation == sc.OP_TOOL:
                events.append(Event("spawn", s.start_ns, parent.agent, agent, "spawn"))
            state = str(s.attributes.get(sc.AGENT_STATE, ""))
            killer = (
                next((k for k in kills if k.start_ns <= s.end_ns <= k.end_ns), None)
                if state == "killed"
                else None
            )
            if killer is not None:
                events.append(Event("kill", s.end_ns, killer.agent, agent, "kill"))
            else:
                reason = str(s.attributes.get(sc.AGENT_END_REASON, ""))
                events.append(Event("end", s.end_ns, agent, agent, f"{state} ({reason})"))
        else:
            message_id = s.attributes.get(sc.MESSAGING_MESSAGE_ID)
            outcome = s.attributes.get(sc.MESSAGE_OUTCOME)
            events.append(
                Event(  # positional: three times sooner than by keyword
                    "message",
                    s.start_ns,
                    s.agent,
                    str(s.attributes.get(sc.MESSAGING_DESTINATION_NAME, "?")),
                    str(message_id or "message"),
                    None if message_id is None else str(message_id),
                    waits.get(s.span_id),
                    None if outcome is None else str(outcome),
                )
            )
    order = {"spawn": 0, "message": 1, "kill": 2, "end": 3}
    events.sort(key=lambda e: (e.at_ns, order[e.kind], e.source, e.target, e.label))
    return events


class _Runs:
    """Collects spans as they are read, grouped by trace (the same span twice counts once:
    a file concatenated, a collector that retried), and remembers the latest root span."""

    def __init__(self, trace_id: str | None) -> None:
        self.wanted = trace_id
        self.traces: dict[str, dict[str, _Span]] = {}
        self.root: _Span | None = None
        self.duplicates = 0

    def add_all(self, records: Iterable[ProfileSpan]) -> _Runs:
        wanted, add = self.wanted, self.add
        for record in records:
            if wanted is None or record.trace_id == wanted:
                add(_span_of(record))
        return self

    def add(self, span: _Span) -> None:
        spans = self.traces.get(span.trace_id)
        if spans is None:
            spans = self.traces[span.trace_id] = {}
        if span.span_id in spans:
            self.duplicates += 1
        spans[span.span_id] = span
        if (
            span.parent_span_id is None
            and span.name.startswith(_WORKFLOW)
            and (self.root is None or span.start_ns > self.root.start_ns)
        ):
            self.root = span

    def profile(self) -> Profile:
        root = self.root
        if root is None:
            which = f"trace {self.wanted}" if self.wanted else "the spans"
            raise ProfileError(f"no run (invoke_workflow root span) in {which}")
        mine = self.traces.pop(root.trace_id)
        self.traces.clear()
        return _analyse(mine, root)


def _analyse(mine: dict[str, _Span], root: _Span) -> Profile:
    """The profile of the run under ``root``; ``mine`` is its trace's spans by id, in read
    order."""
    trace = _Trace(mine)
    path = _critical_path(trace, root)
    timelines = _timelines(trace.agents, trace)
    waits: dict[str, dict[str, float]] = {}
    for a in timelines:
        for sender, ns in a.woke_for.items():
            waits.setdefault(a.agent, {})[sender] = ns / 1e9
    latencies: dict[tuple[str, str], list[float]] = {}
    for s in trace.receives:
        recipient = s.agent
        for link in s.links:
            wait = _seconds(link.attributes.get(sc.MESSAGE_WAIT_SECONDS))
            from_ = link.attributes.get(sc.MESSAGE_SENDER)
            if wait is not None and from_ is not None:
                latencies.setdefault((str(from_), recipient), []).append(wait)
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
        events=_events(trace),
        costs=_costs(trace.chats, [a.agent for a in timelines]),
        _spans=list(mine.values()),
    )


def build_profile(
    spans: Iterable[ProfileSpan], trace_id: str | None = None, notes: ReadNotes | None = None
) -> Profile:
    """The profile of ``trace_id`` (default: the run whose root span started last).

    ``spans`` are :class:`~telemetry.records.SpanRecord` objects (from Jaeger, a live run
    or a test) or the spans-file reader's :class:`~telemetry.scan.TreeFacts`; a span read
    twice counts once (and in ``notes``). Raises :class:`ProfileError` when there is no
    such run.
    """
    runs = _Runs(trace_id).add_all(spans)
    if notes is not None:
        notes.duplicates += runs.duplicates
    return runs.profile()


def profile_file(
    path: str | os.PathLike[str],
    trace_id: str | None = None,
    *,
    workers: int | None = None,
    notes: ReadNotes | None = None,
) -> Profile:
    """The profile of one run in an OTLP/JSON-lines spans file (default: the latest run).

    The file is read by :func:`telemetry.scan.scan_span_tree`: only the attributes the profile
    reads (:data:`PROFILE_KEYS`, :data:`LINK_KEYS`) are decoded, and with ``trace_id`` only that
    trace's spans are kept. A file of :data:`telemetry.scan.PARALLEL_BYTES` or more is split at
    line boundaries: this process reads the first part while ``workers - 1`` others (default:
    one per available CPU, at most 4 in all) read the rest, and their spans are added in file
    order — the same profile as one pass. ``-`` reads standard input. ``notes``: as for
    :func:`telemetry.summary_file.summarize_file`.
    """
    from concurrent.futures.process import BrokenProcessPool

    from telemetry.scan import parallel_parts, scan_span_tree

    name = os.fspath(path)
    parts = parallel_parts(name, workers)

    def one_pass() -> _Runs:
        return _Runs(trace_id).add_all(
            scan_span_tree(name, PROFILE_KEYS, LINK_KEYS, trace_id=trace_id, notes=notes)
        )

    with _collecting():
        if len(parts) < 2:
            runs = one_pass()
        else:
            try:
                runs = _Runs(trace_id)
                _read_in_parallel(runs, name, parts, trace_id)
            except (ValueError, BrokenProcessPool):
                # A malformed (or cut) line: read again in one pass, whose error names the
                # line number (and a child that could not run: one pass all the same).
                runs = one_pass()
        if notes is not None:
            notes.duplicates += runs.duplicates
        return runs.profile()


@contextmanager
def _collecting() -> Iterator[None]:
    """No cyclic garbage collection while a file's spans are read and analysed: they make
    millions of objects and no cycles, and each collection would walk all of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_in_parallel(
    runs: _Runs, path: str, parts: Sequence[tuple[int, int]], trace_id: str | None
) -> None:
    """Read the first part here and the others in child processes, adding spans in order."""
    from telemetry.scan import reader_pool, scan_span_tree

    with reader_pool(len(parts) - 1) as pool:
        futures = [pool.submit(_read_part, path, a, b, trace_id) for a, b in parts[1:]]
        first, end = parts[0]
        runs.add_all(
            scan_span_tree(path, PROFILE_KEYS, LINK_KEYS, trace_id=trace_id, start=first, end=end)
        )
        for future in futures:
            for row in pickle.loads(future.result()):
                span = _Span(*row)
                if row[8]:
                    span.links = tuple([LinkRecord(*link) for link in row[8]])
                runs.add(span)


def _read_part(path: str, start: int, end: int, trace_id: str | None) -> bytes:
    """A child process's part of the file: its spans as pickled :class:`_Span` fields
    (links as tuples), the profile's own work on each span done here."""
    from telemetry.scan import scan_span_tree

    gc.disable()
    rows = []
    for record in scan_span_tree(
        path, PROFILE_KEYS, LINK_KEYS, trace_id=trace_id, start=start, end=end
    ):
        s = _span_of(record)
        links = tuple([(k.trace_id, k.span_id, k.attributes) for k in s.links]) if s.links else ()
        rows.append(
            (
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.name,
                s.kind,
                s.start_ns,
                s.end_ns,
                s.attributes,
                links,
                s.agent,
                s.cat,
                s.operation,
                s.tool,
            )
        )
    return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
