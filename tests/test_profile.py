"""`orchestrace profile`: the critical path, the timelines, the waits and the command.

The critical path is checked on hand-built spans whose answer is known, then as properties
over generated span trees with links, then on the built-in runs on fake time (looptime: the
scripted model's 0.25 s per call and the helpers' 1/2/3 s sleeps are exact, so the profile
is the same every run and is kept as a snapshot). The command's outputs (text, --json,
--mermaid), its errors, and the profile read back from Jaeger's v3 API are checked last.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import looptime
import opentelemetry.sdk.trace as sdk_trace
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from support import Traced, make_run
from test_jaeger_reader import FakeJaeger

import telemetry.spans
from runtime.cli import main
from runtime.hub import Hub
from runtime.scenarios import run_scenario
from telemetry import semconv as sc
from telemetry.otlp_json import encode_spans_json
from telemetry.profile import (
    NO_MESSAGE,
    Profile,
    Segment,
    build_profile,
    critical_path,
)
from telemetry.profile_render import render_mermaid, render_text
from telemetry.records import LinkRecord, SpanRecord, from_readable_span

S = 1_000_000_000  # nanoseconds per second
T0 = 1_700_000_000 * S
TRACE = "ab" * 16


# --- hand-built spans -------------------------------------------------------------------------
class Spans:
    """The spans of one hand-built run; times are seconds from ``T0``."""

    def __init__(self) -> None:
        self.records: list[SpanRecord] = []
        self._ids = itertools.count(1)
        self._messages = itertools.count(1)

    def span(
        self,
        name: str,
        start: float,
        end: float,
        parent: SpanRecord | None,
        attributes: Mapping[str, Any],
        *,
        kind: str = "INTERNAL",
        links: Sequence[LinkRecord] = (),
        parent_id: str | None = None,
    ) -> SpanRecord:
        record = SpanRecord(
            trace_id=TRACE,
            span_id=f"{next(self._ids):016x}",
            parent_span_id=parent.span_id if parent is not None else parent_id,
            name=name,
            kind=kind,
            start_ns=T0 + round(start * S),
            end_ns=T0 + round(end * S),
            status="UNSET",
            status_message="",
            attributes=dict(attributes),
            links=tuple(links),
            events=(),
            resource={},
        )
        self.records.append(record)
        return record

    def workflow(self, start: float, end: float) -> SpanRecord:
        attrs = {sc.GEN_AI_OPERATION_NAME: sc.OP_WORKFLOW, sc.GEN_AI_WORKFLOW_NAME: "hand"}
        return self.span("invoke_workflow hand", start, end, None, attrs)

    def agent(
        self, name: str, parent: SpanRecord, start: float, end: float, state: str = "done"
    ) -> SpanRecord:
        attrs = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_AGENT,
            sc.GEN_AI_AGENT_NAME: name,
            sc.AGENT_STATE: state,
        }
        return self.span(f"invoke_agent {name}", start, end, parent, attrs)

    def chat(self, agent: SpanRecord, start: float, end: float) -> SpanRecord:
        attrs = {sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT, sc.GEN_AI_AGENT_NAME: _name(agent)}
        return self.span("chat m", start, end, agent, attrs, kind="CLIENT")

    def tool(self, agent: SpanRecord, tool: str, start: float, end: float) -> SpanRecord:
        attrs = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_TOOL,
            sc.GEN_AI_TOOL_NAME: tool,
            sc.GEN_AI_AGENT_NAME: _name(agent),
        }
        return self.span(f"execute_tool {tool}", start, end, agent, attrs)

    def wait(self, agent: SpanRecord, start: float, end: float) -> SpanRecord:
        return self.tool(agent, "wait_for_message", start, end)

    def send(
        self, agent: SpanRecord, to: str, start: float, end: float, message_id: str | None = None
    ) -> SpanRecord:
        """An ``execute_tool send_message`` call holding one ``send`` span; returns the send."""
        call = self.tool(agent, "send_message", start, end)
        attrs = {
            sc.MESSAGING_DESTINATION_NAME: to,
            sc.MESSAGING_MESSAGE_ID: message_id or f"m{next(self._messages)}",
            sc.GEN_AI_AGENT_NAME: _name(agent),
            sc.MESSAGE_OUTCOME: "delivered",
        }
        return self.span(f"send {to}", start, end, call, attrs, kind="PRODUCER")

    def receive(self, agent: SpanRecord, at: float, *sends: SpanRecord) -> SpanRecord:
        links = [
            LinkRecord(
                TRACE,
                s.span_id,
                {
                    sc.MESSAGING_MESSAGE_ID: s.attributes[sc.MESSAGING_MESSAGE_ID],
                    sc.MESSAGE_SENDER: _name(s),
                    sc.MESSAGE_WAIT_SECONDS: max(0.0, (T0 + at * S - s.end_ns) / S),
                },
            )
            for s in sends
        ]
        attrs = {sc.GEN_AI_AGENT_NAME: _name(agent)}
        return self.span(
            f"receive {_name(agent)}", at, at, agent, attrs, kind="CLIENT", links=links
        )


def _name(span: SpanRecord) -> str:
    return str(span.attributes[sc.GEN_AI_AGENT_NAME])


def steps(segments: Sequence[Segment]) -> list[tuple[str, str, float, float, str | None]]:
    """The path as (agent, span, start, end, via), times in seconds from ``T0``."""
    return [(s.agent, s.name, (s.start_ns - T0) / S, (s.end_ns - T0) / S, s.via) for s in segments]


def path_of(spans: Spans) -> list[tuple[str, str, float, float, str | None]]:
    return steps(build_profile(spans.records).critical_path)


# --- the critical path on hand-built runs -------------------------------------------------------
def test_parent_and_children_only() -> None:
    b = Spans()
    root = b.workflow(0, 10)
    a = b.agent("A", root, 0, 10)
    b.chat(a, 1, 3)
    b.tool(a, "sleep", 4, 7)
    b.chat(a, 7, 9)
    assert path_of(b) == [
        ("A", "invoke_agent A", 0, 1, None),
        ("A", "chat m", 1, 3, None),
        ("A", "invoke_agent A", 3, 4, None),
        ("A", "execute_tool sleep", 4, 7, None),
        ("A", "chat m", 7, 9, None),
        ("A", "invoke_agent A", 9, 10, None),
    ]


def test_a_wait_hops_to_the_send_that_woke_it() -> None:
    b = Spans()
    root = b.workflow(0, 10)
    lead, helper = b.agent("L", root, 0, 10), b.agent("H", root, 0, 8)
    b.chat(helper, 0, 2)
    b.tool(helper, "sleep", 2, 5)
    send = b.send(helper, "L", 5, 5.5, "m1")
    b.chat(helper, 5.5, 8)
    b.chat(lead, 0, 1)
    b.wait(lead, 1, 6)
    b.receive(lead, 6, send)
    b.chat(lead, 6, 10)
    profile = build_profile(b.records)
    assert steps(profile.critical_path) == [
        ("H", "chat m", 0, 2, None),
        ("H", "execute_tool sleep", 2, 5, None),
        ("H", "send L", 5, 5.5, None),
        ("L", "execute_tool wait_for_message", 5.5, 6, "m1 from H"),
        ("L", "chat m", 6, 10, None),
    ]
    assert [s.category for s in profile.critical_path] == [
        "model",
        "tool",
        "messaging",
        "messaging",
        "model",
    ]
    # the wait is charged to the sender that woke it
    assert profile.waits == {"L": {"H": 5.0}}


def test_a_chain_of_hops_across_three_agents() -> None:
    b = Spans()
    root = b.workflow(0, 9)
    a, bb, c = b.agent("A", root, 0, 9), b.agent("B", root, 0, 8), b.agent("C", root, 0, 7)
    b.chat(c, 0, 3)
    to_b = b.send(c, "B", 3, 3.5, "m1")
    b.chat(c, 3.5, 7)
    b.wait(bb, 0, 4)
    b.receive(bb, 4, to_b)
    b.chat(bb, 4, 6)
    to_a = b.send(bb, "A", 6, 6.5, "m2")
    b.chat(bb, 6.5, 8)
    b.wait(a, 0, 7)
    b.receive(a, 7, to_a)
    b.chat(a, 7, 9)
    assert path_of(b) == [
        ("C", "chat m", 0, 3, None),
        ("C", "send B", 3, 3.5, None),
        ("B", "execute_tool wait_for_message", 3.5, 4, "m1 from C"),
        ("B", "chat m", 4, 6, None),
        ("B", "send A", 6, 6.5, None),
        ("A", "execute_tool wait_for_message", 6.5, 7, "m2 from B"),
        ("A", "chat m", 7, 9, None),
    ]


def test_of_parallel_helpers_only_the_slowest_counts() -> None:
    b = Spans()
    root = b.workflow(0, 5)
    lead = b.agent("L", root, 0, 5)
    b.chat(lead, 0, 1)
    spawn = b.tool(lead, "create_subagents", 1, 1.5)
    sends = []
    for i in (1, 2, 3):
        helper = b.agent(f"H{i}", spawn, 1.5, 4.9, state="killed")
        b.tool(helper, "sleep", 1.5, 1.5 + i)
        sends.append(b.send(helper, "L", 1.5 + i, 1.75 + i, f"m{i}"))
        b.wait(helper, 1.75 + i, 4.9)
    b.wait(lead, 1.5, 2.75)
    b.receive(lead, 2.75, sends[0])
    b.wait(lead, 2.75, 3.75)
    b.receive(lead, 3.75, sends[1])
    b.wait(lead, 3.75, 4.8)
    b.receive(lead, 4.8, sends[2])
    b.chat(lead, 4.8, 5)
    profile = build_profile(b.records)
    assert steps(profile.critical_path) == [
        ("L", "chat m", 0, 1, None),
        ("L", "execute_tool create_subagents", 1, 1.5, None),
        ("H3", "execute_tool sleep", 1.5, 4.5, None),
        ("H3", "send L", 4.5, 4.75, None),
        ("L", "execute_tool wait_for_message", 4.75, 4.8, "m3 from H3"),
        ("L", "chat m", 4.8, 5, None),
    ]
    assert set(profile.path_by_agent()) == {"L", "H3"}
    assert profile.waits["L"] == pytest.approx({"H1": 1.25, "H2": 1.0, "H3": 1.05})


def test_a_wait_that_timed_out_is_the_waiters_own_time() -> None:
    b = Spans()
    root = b.workflow(0, 6)
    lead, helper = b.agent("L", root, 0, 6), b.agent("H", root, 0, 3)
    late = b.send(helper, "L", 2, 2.1)
    b.chat(lead, 0, 1)
    b.wait(lead, 1, 4)  # timed out: the next step is a model call, not a delivery
    b.chat(lead, 4, 5)
    b.receive(lead, 5, late)  # delivered later, as a new turn
    b.chat(lead, 5, 6)
    profile = build_profile(b.records)
    assert steps(profile.critical_path) == [
        ("L", "chat m", 0, 1, None),
        ("L", "execute_tool wait_for_message", 1, 4, None),
        ("L", "chat m", 4, 5, None),
        ("L", "chat m", 5, 6, None),
    ]
    assert profile.critical_path[1].category == "waiting"
    assert profile.waits == {"L": {NO_MESSAGE: 3.0}}


def test_messages_sent_outside_the_wait_did_not_end_it() -> None:
    # Already waiting when the wait began (no block), or sent after it ended (another
    # host's clock): neither is the message that woke it.
    b = Spans()
    root = b.workflow(0, 6)
    lead, helper = b.agent("L", root, 0, 6), b.agent("H", root, 0, 6)
    early = b.send(helper, "L", 0.2, 0.3)
    skewed = b.send(helper, "L", 4.5, 4.6)
    b.chat(lead, 0, 1)
    b.wait(lead, 1, 4)
    b.receive(lead, 4, early, skewed)
    b.chat(lead, 4, 6)
    profile = build_profile(b.records)
    assert all(s.via is None for s in profile.critical_path)
    assert [s.agent for s in profile.critical_path] == ["L"] * 3
    assert profile.waits == {"L": {NO_MESSAGE: 3.0}}


def test_zero_duration_spans_end_the_walk() -> None:
    b = Spans()
    root = b.workflow(5, 5)
    lead, helper = b.agent("L", root, 5, 5), b.agent("H", root, 5, 5)
    send = b.send(helper, "L", 5, 5)
    b.chat(lead, 5, 5)
    b.wait(lead, 5, 5)
    b.receive(lead, 5, send)
    b.chat(lead, 5, 5)
    path = build_profile(b.records).critical_path
    assert sum(s.duration_ns for s in path) == 0
    # the hop is kept even though it took no time
    assert [s.via for s in path] == ["m1 from H"]


def test_zero_duration_steps_inside_a_run() -> None:
    b = Spans()
    root = b.workflow(0, 2)
    a = b.agent("A", root, 0, 2)
    for _ in range(5):
        b.tool(a, "get_status", 1, 1)
    b.chat(a, 1, 2)
    assert path_of(b) == [("A", "invoke_agent A", 0, 1, None), ("A", "chat m", 1, 2, None)]


@pytest.mark.parametrize("loop", ["self", "pair"])
def test_a_parent_chain_that_loops_ends_the_walk(loop: str) -> None:
    # The send that woke the wait is its own parent, or its call's parent is the send: a
    # malformed file. The walk follows the hop, then stops where the loop was cut.
    b = Spans()
    root = b.workflow(0, 10)
    lead = b.agent("L", root, 0, 10)
    helper = {sc.GEN_AI_AGENT_NAME: "H"}
    call = b.span("execute_tool send_message", 2, 3, None, helper, parent_id="00000000000000ff")
    send = b.span("send L", 2, 3, call, {sc.MESSAGING_MESSAGE_ID: "m1", **helper})
    looped = send if loop == "self" else call
    b.records = [replace(r, parent_span_id=send.span_id) if r is looped else r for r in b.records]
    b.chat(lead, 0, 1)
    b.wait(lead, 1, 8)
    b.receive(lead, 8, send)
    b.chat(lead, 8, 10)
    path = path_of(b)
    assert path[-2:] == [
        ("L", "execute_tool wait_for_message", 3, 8, "m1 from H"),
        ("L", "chat m", 8, 10, None),
    ]
    assert {agent for agent, *_ in path[:-2]} <= {"H"}


# --- properties over generated runs -----------------------------------------------------------
@st.composite
def runs(draw: st.DrawFn) -> tuple[list[SpanRecord], SpanRecord]:
    """A run of one to four agents, each a row of model calls, tools, sends, waits and
    spawns (later agents may be children of an earlier agent's spawn), with receives after
    some waits linking to any sends; times are whole seconds and may be zero-length, and the
    root may end before its children do."""
    b = Spans()
    ticks = st.integers(0, 6)
    root = b.workflow(0, draw(st.integers(0, 40)))
    spawns: list[SpanRecord] = []
    sends: list[SpanRecord] = []
    waits: list[tuple[SpanRecord, SpanRecord]] = []
    for i in range(draw(st.integers(1, 4))):
        parent = draw(st.sampled_from([root, *spawns]))
        start = draw(st.integers(0, 20))
        agent = b.agent(f"a{i}", parent, start, start)  # its end is set below
        t = start
        for kind in draw(st.lists(st.sampled_from(["chat", "tool", "send", "wait", "spawn"]))):
            t += draw(st.integers(0, 2))
            end = t + draw(ticks)
            if kind == "chat":
                b.chat(agent, t, end)
            elif kind == "tool":
                b.tool(agent, "sleep", t, end)
            elif kind == "spawn":
                spawns.append(b.tool(agent, "create_subagents", t, end))
            elif kind == "send":
                sends.append(b.send(agent, f"a{draw(st.integers(0, 3))}", t, end))
            else:
                waits.append((agent, b.wait(agent, t, end)))
            t = end
        end = t + draw(st.integers(0, 2))
        b.records[b.records.index(agent)] = _ended(agent, T0 + end * S)
    for agent, wait in waits:
        if sends and draw(st.booleans()):
            linked = draw(
                st.lists(st.sampled_from(sends), max_size=3, unique_by=lambda s: s.span_id)
            )
            b.receive(agent, (wait.end_ns - T0) / S + draw(st.integers(0, 1)), *linked)
    return b.records, root


def _ended(span: SpanRecord, end_ns: int) -> SpanRecord:
    return replace(span, end_ns=end_ns)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_critical_path_properties(run: tuple[list[SpanRecord], SpanRecord]) -> None:
    spans, root = run
    by_id = {s.span_id: s for s in spans}
    path = critical_path(spans, root)
    # in time order, never overlapping, inside the root
    for earlier, later in itertools.pairwise(path):
        assert earlier.end_ns <= later.start_ns
    for seg in path:
        span = by_id[seg.span_id]
        assert span.start_ns <= seg.start_ns <= seg.end_ns <= span.end_ns
        assert root.start_ns <= seg.start_ns
        assert seg.end_ns <= root.end_ns
    assert sum(s.duration_ns for s in path) <= max(0, root.end_ns - root.start_ns)
    # every hop follows a link from the receive after a wait to a send made during it
    for seg in path:
        if seg.via is None:
            continue
        wait = by_id[seg.span_id]
        assert wait.attributes[sc.GEN_AI_TOOL_NAME] == "wait_for_message"
        linked = {
            link.span_id
            for r in spans
            if r.name.startswith("receive ")
            and r.parent_span_id == wait.parent_span_id
            and r.start_ns >= wait.end_ns
            for link in r.links
        }
        woke = [
            by_id[i]
            for i in linked
            if f"{by_id[i].attributes[sc.MESSAGING_MESSAGE_ID]} from {_name(by_id[i])}" == seg.via
        ]
        assert woke, seg
        assert any(s.start_ns <= wait.end_ns and s.end_ns >= wait.start_ns for s in woke)
    # and the whole profile is JSON
    json.dumps(build_profile(spans).to_json(), allow_nan=False)


# --- the built-in runs on fake time -----------------------------------------------------------
#: Where the fake clock starts: now, to the second (Jaeger's --last searches recent runs).
EPOCH = time.time_ns() // S * S


@contextmanager
def span_clock(clock: Any) -> Iterator[None]:
    """Spans timed by ``clock`` (the SDK's and the receive span's ``time_ns``)."""
    fake_time = types.SimpleNamespace(**vars(time))
    fake_time.time_ns = clock
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sdk_trace, "time_ns", clock)
        mp.setattr(telemetry.spans, "time", fake_time)
        yield


def run_on_fake_time(scenario: str, start_ns: int) -> list[ReadableSpan]:
    """Run ``scenario`` on the scripted model on looptime's loop, spans timed by its clock."""
    traced = Traced()

    async def go() -> None:
        loop = asyncio.get_running_loop()

        def clock() -> int:
            return start_ns + round(loop.time() * 1e9)

        with span_clock(clock):
            run = make_run(traced, hub=Hub(clock_ns=clock))
            await run_scenario(scenario, run)

    try:
        with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0)) as runner:
            runner.run(go())
    finally:
        traced.tracer_provider.shutdown()
        traced.meter_provider.shutdown()
    return traced.spans


@dataclass
class Recorded:
    """The spawn and team runs on fake time, and a spans file holding both."""

    spans: dict[str, list[ReadableSpan]]
    path: Path

    def records(self, scenario: str) -> list[SpanRecord]:
        return [from_readable_span(s) for s in self.spans[scenario]]

    def trace_id(self, scenario: str) -> str:
        return self.records(scenario)[0].trace_id

    def profile(self, scenario: str) -> Profile:
        return build_profile(self.records(scenario))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    spans = {
        "spawn": run_on_fake_time("spawn", EPOCH),
        "team": run_on_fake_time("team", EPOCH + 60 * S),  # the later run
    }
    path = tmp_path_factory.mktemp("profile") / "spans.jsonl"
    path.write_text("".join(encode_spans_json(s) + "\n" for s in spans.values()))
    return Recorded(spans, path)


def test_spawn_critical_path_runs_through_helper3s_sleep(recorded: Recorded) -> None:
    profile = recorded.profile("spawn")
    assert profile.wall_ns == round(4.25 * S)
    start = profile.start_ns
    path = [
        (s.agent, s.name, (s.start_ns - start) / S, (s.end_ns - start) / S, s.via)
        for s in profile.critical_path
    ]
    assert path == [
        ("lead", "chat claude-opus-4-8", 0, 0.25, None),
        ("helper3", "chat claude-opus-4-8", 0.25, 0.5, None),
        ("helper3", "execute_tool sleep", 0.5, 3.5, None),
        ("helper3", "chat claude-opus-4-8", 3.5, 3.75, None),
        ("lead", "execute_tool wait_for_message", 3.75, 3.75, "msg-3 from helper3"),
        ("lead", "chat claude-opus-4-8", 3.75, 4.0, None),
        ("lead", "chat claude-opus-4-8", 4.0, 4.25, None),
    ]
    # the hop is the message the lead's last receive delivered: helper3's report
    records = recorded.records("spawn")
    last_receive = max((s for s in records if s.name == "receive lead"), key=lambda s: s.start_ns)
    (link,) = last_receive.links
    assert link.attributes[sc.MESSAGING_MESSAGE_ID] == "msg-3"
    assert link.attributes[sc.MESSAGE_SENDER] == "helper3"
    assert profile.path_totals() == {"model": round(1.25 * S), "tool": 3 * S, "messaging": 0}
    assert profile.waits["lead"] == {"helper1": 1.0, "helper2": 0.75, "helper3": 0.75}


def _normalized(data: dict[str, Any]) -> dict[str, Any]:
    """The profile's JSON with its trace id and span ids replaced by stable names."""
    names = {data["trace_id"]: "<trace>"}
    for i, span in enumerate(data["spans"]):
        names[span["span_id"]] = f"<span {i}>"
    text = json.dumps(data)
    for real, name in names.items():
        text = text.replace(f'"{real}"', json.dumps(name))
    normalized: dict[str, Any] = json.loads(text)
    return normalized


@pytest.mark.parametrize("scenario", ["spawn", "team"])
def test_profile_json_snapshot(recorded: Recorded, scenario: str, snapshot: Any) -> None:
    assert _normalized(recorded.profile(scenario).to_json()) == snapshot


@pytest.mark.parametrize("scenario", ["spawn", "team"])
def test_the_order_spans_are_read_in_does_not_matter(recorded: Recorded, scenario: str) -> None:
    records = recorded.records(scenario)
    forward = build_profile(records).to_json()
    assert build_profile(reversed(records)).to_json() == forward
    assert build_profile(sorted(records, key=lambda s: s.span_id)).to_json() == forward


def test_every_span_of_the_run_is_a_bar(recorded: Recorded) -> None:
    profile = recorded.profile("spawn")
    assert len(profile.bars) == len(recorded.spans["spawn"])
    on_path = {s.span_id for s in profile.critical_path}
    assert {b.span_id for b in profile.bars if b.on_path} == on_path


# --- the command ------------------------------------------------------------------------------
def profile_cmd(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["profile", *argv], out=out)
    return code, out.getvalue()


#: The --json shape (README, "Profile a run").
JSON_KEYS = {
    "trace_id",
    "workflow",
    "outcome",
    "wall_seconds",
    "agents",
    "critical_path",
    "waits",
    "latency",
    "events",
    "spans",
}


def test_json_shape(recorded: Recorded) -> None:
    code, out = profile_cmd(str(recorded.path), "--trace-id", recorded.trace_id("spawn"), "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= JSON_KEYS
    assert data == json.loads(json.dumps(recorded.profile("spawn").to_json()))
    assert (data["workflow"], data["outcome"], data["wall_seconds"]) == ("spawn", "completed", 4.25)
    assert set(data["agents"][0]) == {
        "agent",
        "role",
        "state",
        "start",
        "wall_seconds",
        "seconds",
        "tools",
        "woke_for",
    }
    assert set(data["agents"][0]["seconds"]) == {
        "model",
        "queued",
        "tool",
        "messaging",
        "waiting",
        "other",
    }
    assert set(data["critical_path"]) == {"segments", "by_category", "by_agent"}
    assert set(data["critical_path"]["segments"][0]) == {
        "agent",
        "span",
        "span_id",
        "category",
        "start",
        "seconds",
        "share",
        "via",
    }
    assert set(data["waits"][0]) == {"waiter", "sender", "seconds"}
    assert set(data["latency"][0]) == {
        "sender",
        "recipient",
        "messages",
        "p50_seconds",
        "max_seconds",
    }
    assert set(data["events"][0]) == {
        "kind",
        "at",
        "from",
        "to",
        "label",
        "message_id",
        "wait_seconds",
        "outcome",
    }
    assert set(data["spans"][0]) == {
        "span_id",
        "agent",
        "name",
        "category",
        "start",
        "seconds",
        "on_critical_path",
        "attributes",
    }
    assert sum(s["seconds"] for s in data["critical_path"]["segments"]) == pytest.approx(4.25)


def test_the_latest_run_is_the_default(recorded: Recorded) -> None:
    code, out = profile_cmd(str(recorded.path), "--json")
    assert code == 0
    assert json.loads(out)["trace_id"] == recorded.trace_id("team")


#: One line of a sequence diagram as render_mermaid writes it.
MERMAID_LINE = re.compile(
    r"sequenceDiagram"
    r"|    participant a\d+ as [A-Za-z0-9 _.,()/:+\-=→#;]+"
    r"|    a\d+(->>|--x|-x)a\d+: [A-Za-z0-9 _.,()/:+\-=→#;]+"
    r"|    Note over a\d+: [A-Za-z0-9 _.,()/:+\-=→#;]+"
)


def test_mermaid_sequence_diagram(recorded: Recorded) -> None:
    code, out = profile_cmd(
        str(recorded.path), "--trace-id", recorded.trace_id("spawn"), "--mermaid"
    )
    assert code == 0
    lines = out.splitlines()
    assert all(MERMAID_LINE.fullmatch(line) for line in lines), lines
    assert lines[:5] == [
        "sequenceDiagram",
        "    participant a0 as lead",
        "    participant a1 as helper1",
        "    participant a2 as helper2",
        "    participant a3 as helper3",
    ]
    assert "    a3->>a0: msg-3 (waited 0.000s)" in lines
    assert lines.count("    a0-xa3: kill") == 1
    assert lines[-1] == "    Note over a0: done (end_turn)"


def test_mermaid_escapes_hostile_names() -> None:
    b = Spans()
    root = b.workflow(0, 3)
    names = ['lead"; click a0 call alert(1)', "x->>y: %%{init}%%", "new\nline #1"]
    a, c, d = (b.agent(n, root, 0, 3) for n in names)
    send = b.send(c, names[0], 1, 1.5, "m<b>1</b>")
    b.wait(a, 0, 2)
    b.receive(a, 2, send)
    b.chat(d, 0, 1)
    text = render_mermaid(build_profile(b.records))
    lines = text.splitlines()
    assert all(MERMAID_LINE.fullmatch(line) for line in lines), lines
    assert "    participant a0 as lead#34;#59; click a0 call alert(1)" in lines
    assert "    participant a1 as new#10;line #35;1" in lines
    assert "    participant a2 as x-#62;#62;y: #37;#37;#123;init#125;#37;#37;" in lines
    assert "    a2->>a0: m#60;b#62;1#60;/b#62; (waited 0.500s)" in lines


def test_text_report_fits_the_width(recorded: Recorded) -> None:
    for width in (60, 100, 140):
        code, out = profile_cmd(
            str(recorded.path), "--trace-id", recorded.trace_id("spawn"), "--width", str(width)
        )
        assert code == 0
        bars = [line for line in out.splitlines() if line.endswith("|") and " |" in line]
        assert len(bars) == 4
        assert {len(line) for line in bars} == {width}
    lines = out.splitlines()
    assert lines[0].startswith("Profile of run spawn · trace ")
    assert lines[0].endswith(" · 4.250s · completed")
    # not a terminal: ASCII bars; helper3 sleeps (T) three quarters of the run
    (helper3,) = [line for line in bars if line.startswith("  helper3")]
    assert set(helper3.split("|")[1]) <= set("MqTs.- ")
    assert "execute_tool wait_for_message  ← woken by msg-3 from helper3" in out
    assert "  by agent: helper3 3.500s (82.4%), lead 0.750s (17.6%)" in out


def test_text_report_of_hostile_names_has_no_control_characters() -> None:
    b = Spans()
    root = b.workflow(0, 1)
    b.chat(b.agent("evil\x1b[2J\rname", root, 0, 1), 0, 1)
    text = render_text(build_profile(b.records), width=80, fancy=False)
    assert "\x1b" not in text
    assert "\r" not in text
    assert "evil\\x1b[2J\\x0dname" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.jsonl"], "No such file or directory"),
        (["EMPTY"], "no run (invoke_workflow root span) in the spans"),
        (["SPANS", "--trace-id", "not-hex"], "not a trace id"),
        (
            ["SPANS", "--trace-id", "f" * 32],
            f"no run (invoke_workflow root span) in trace {'f' * 32}",
        ),
        (["SPANS", "--width", "5"], "--width must be at least 20"),
        (["SPANS", "--jaeger", "http://127.0.0.1:9"], "give either a spans FILE or --jaeger URL"),
        (["BAD"], "line 1: malformed OTLP/JSON line"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    recorded: Recorded,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    files = {
        "SPANS": str(recorded.path),
        "EMPTY": str(tmp_path / "empty.jsonl"),
        "BAD": str(tmp_path / "bad.jsonl"),
        "missing.jsonl": str(tmp_path / "missing.jsonl"),
    }
    code, out = profile_cmd(*(files.get(a, a) for a in argv))
    assert code == 2
    assert out == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("orchestrace profile: ")
    assert message in err


def test_without_a_file_it_profiles_the_file_orchestrace_run_writes(
    recorded: Recorded,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`orchestrace run` then `orchestrace profile`: no argument means ./orchestrace-spans.jsonl."""
    monkeypatch.chdir(tmp_path)
    assert profile_cmd() == (2, "")
    err = capsys.readouterr().err
    assert err.startswith("orchestrace profile: ")
    assert "orchestrace-spans.jsonl" in err
    (tmp_path / "orchestrace-spans.jsonl").write_bytes(recorded.path.read_bytes())
    assert profile_cmd("--json") == profile_cmd(str(recorded.path), "--json")
    assert profile_cmd("--json")[0] == 0


# --- from Jaeger ------------------------------------------------------------------------------
def test_profile_from_jaeger_equals_the_spans_file(recorded: Recorded) -> None:
    documents = [json.loads(line) for line in recorded.path.read_text().splitlines()]
    with FakeJaeger(documents) as jaeger:
        for scenario in ("spawn", "team"):
            trace_id = recorded.trace_id(scenario)
            for output in (["--json"], ["--mermaid"], ["--width", "100"]):
                from_file = profile_cmd(str(recorded.path), "--trace-id", trace_id, *output)
                from_jaeger = profile_cmd("--jaeger", jaeger.url, "--trace-id", trace_id, *output)
                assert from_file[0] == 0
                assert from_jaeger == from_file
        service = str(recorded.spans["team"][0].resource.attributes["service.name"])
        newest = profile_cmd("--jaeger", jaeger.url, "--last", "--service", service, "--json")
        assert newest == profile_cmd(str(recorded.path), "--json")
        assert f"/api/v3/traces/{recorded.trace_id('spawn')}" in jaeger.requests


def test_the_profile_prices_each_agent_like_the_summary() -> None:
    """Per-agent cost in the profile equals the summary's; an unknown model is unknown."""
    from telemetry.cost import default_prices
    from telemetry.profile import build_profile
    from telemetry.records import SpanRecord
    from telemetry.summary import summarize

    def chat(span_id: str, agent: str, model: str, start: int) -> SpanRecord:
        return SpanRecord(
            "ab" * 16,
            span_id,
            "0000000000000001",
            f"chat {model}",
            "CLIENT",
            start,
            start + 10,
            "UNSET",
            "",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.agent.name": agent,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": 1_000_000,
                "gen_ai.usage.output_tokens": 100_000,
                "gen_ai.usage.cache_read.input_tokens": 200_000,
                "gen_ai.usage.cache_creation.input_tokens": 100_000,
            },
            (),
            (),
            {},
        )

    root = SpanRecord(
        "ab" * 16,
        "0000000000000001",
        None,
        "invoke_workflow t",
        "INTERNAL",
        0,
        100,
        "UNSET",
        "",
        {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "t"},
        (),
        (),
        {},
    )
    spans = [
        root,
        chat("00000000000000a1", "a", "claude-opus-4-8", 1),
        chat("00000000000000b1", "b", "no-such-model", 2),
    ]
    profile = build_profile(spans)
    costs = {c.agent: c.usd for c in profile.costs}
    expected = default_prices().cost("claude-opus-4-8", 700_000, 100_000, 200_000, 100_000)
    assert expected is not None
    assert costs["a"] == pytest.approx(expected)
    assert costs["b"] is None
    assert profile.total_cost is None  # never a partial total that looks like the whole
    data = profile.to_json()["cost"]
    assert data["total_usd"] is None
    assert f"${expected:.4f}" in summarize(spans)
