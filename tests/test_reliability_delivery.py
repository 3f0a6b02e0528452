"""Addressing and delivery: every message is read exactly once or its sender is told.

Two property tests drive random interleavings under fake loop time (looptime, one fresh
loop per example, so hypothesis explores orderings deterministically):

* the hub on its own: sends, waits, reads, kills and ends by any agent in any order — every
  message posted as delivered comes out of its recipient's inbox exactly once (read, or
  handed back by ``end`` for bouncing), in order; a waiter is never left waiting when no
  one can send, and never woken for nothing;
* whole runs: a lead that spawns three helpers, each agent playing a random script of
  sends (with unknown, ended, duplicate and self recipients), waits, sleeps, kills and
  ends — every delivered message is seen by the recipient's model exactly once, or its
  sender gets an ``undeliverable`` notice, or (sender already gone) it is logged as lost.

Then the deterministic cases of the table, including the bugs this table found (now fixed).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import looptime
import pytest
from hypothesis import HealthCheck, example, given, settings, target
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import Recorder, logs_captured, make_run

from runtime.agent import NO_SENDERS_RESULT, AgentSpec, RunConfig, RunContext, run_agent
from runtime.hub import (
    SYSTEM_SENDER,
    AgentState,
    DeliveryOutcome,
    Envelope,
    Hub,
    LocalInboxes,
    WakeReason,
)
from runtime.limits import RunLimits
from runtime.scenarios import run_scenario
from runtime.scripted import Conversation, Reply, ScriptedModel
from runtime.subagents import sleep_tool

T = TypeVar("T")

PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_BLOCK = re.compile(r'<agent-message from="([^"]*)">\n(.*?)\n</agent-message>', re.S)
_NOTICE = re.compile(r"undeliverable: your message (msg-\d+) to ")


def in_fake_time(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on a fresh looptime loop: sleeps and timeouts take no real time."""
    loop = looptime.new_event_loop(start=0, _enabled=True)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


class RecordingInboxes(LocalInboxes):
    """The in-process transport, remembering every envelope it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.put_log: list[Envelope] = []

    def put(self, envelope: Envelope) -> None:
        self.put_log.append(envelope)
        super().put(envelope)


# --- property 1: the hub alone ---------------------------------------------------------------
AGENTS = ["a", "b", "c"]
WAIT_TIMEOUT = 5.0

hub_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(AGENTS), st.sampled_from([*AGENTS, "ghost"])),
        st.tuples(st.just("wait"), st.sampled_from(AGENTS)),
        st.tuples(st.just("read"), st.sampled_from(AGENTS)),
        st.tuples(st.just("kill"), st.sampled_from(AGENTS)),
        st.tuples(st.just("end"), st.sampled_from(AGENTS), st.sampled_from(["done", "crashed"])),
        st.tuples(st.just("tick"), st.sampled_from([0.0, 1.0, 3.0, 6.0])),
    ),
    max_size=40,
)


@dataclass
class HubModel:
    """What the test knows: who is waiting, what was posted, what came out of each inbox."""

    hub: Hub = field(default_factory=Hub)
    waits: dict[str, asyncio.Task[tuple[WakeReason, int, AgentState]]] = field(default_factory=dict)
    posted: list[tuple[Envelope, DeliveryOutcome]] = field(default_factory=list)
    out: dict[str, list[str]] = field(default_factory=dict)  # recipient -> ids, in order
    wake_log: list[tuple[str, WakeReason, int, AgentState, float, float]] = field(
        default_factory=list
    )

    def running(self, name: str) -> bool:
        """Live and not blocked in a wait: the only state in which an agent acts."""
        return not self.hub.state(name).ended and name not in self.waits

    async def waiter(self, name: str) -> tuple[WakeReason, int, AgentState]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        reason = await self.hub.wait(name, WAIT_TIMEOUT)
        # no await between the wake-up and these reads: they see what the agent would see
        seen = (reason, self.hub.pending(name), self.hub.state(name))
        self.wake_log.append((name, *seen, started, loop.time()))
        return seen

    async def settle(self) -> None:
        for _ in range(4):
            await asyncio.sleep(0)
        for name, task in list(self.waits.items()):
            if task.done():
                del self.waits[name]

    def take(self, name: str, envelopes: list[Envelope]) -> None:
        self.out.setdefault(name, []).extend(e.message_id for e in envelopes)

    async def finish(self, name: str, state: AgentState) -> None:
        """The agent's loop unwinding: its wait is cancelled, then ``end`` hands back mail."""
        task = self.waits.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.take(name, self.hub.end(name, state))
        self.hub.settle()  # as the agent loop does once the unread mail is bounced


async def play_hub(ops: list[tuple[Any, ...]]) -> HubModel:
    m = HubModel()
    for name in AGENTS:
        m.hub.register(name)
    for n, op in enumerate(ops):
        kind, *args = op
        if kind == "send" and m.running(args[0]):
            sender, rid = args
            known = rid in m.hub
            expected = (
                DeliveryOutcome.UNKNOWN
                if not known
                else DeliveryOutcome.ENDED
                if m.hub.state(rid).ended
                else DeliveryOutcome.DELIVERED
            )
            env = Envelope(m.hub.new_message_id(), sender, rid, f"m{n}", m.hub.now_ns())
            result = m.hub.post(env)
            assert result.outcome is expected
            m.posted.append((env, result.outcome))
        elif kind == "wait" and m.running(args[0]):
            m.waits[args[0]] = asyncio.create_task(m.waiter(args[0]))
        elif kind == "read" and m.running(args[0]):
            m.take(args[0], m.hub.drain(args[0]))
        elif kind == "kill" and not m.hub.state(args[0]).ended:
            m.hub.set_state(args[0], AgentState.KILLED)  # what kill_subagents does first
            await m.finish(args[0], AgentState.KILLED)
        elif kind == "end" and m.running(args[0]):
            await m.finish(args[0], AgentState(args[1]))
        elif kind == "tick":
            await asyncio.sleep(args[0])
        await m.settle()
        live = m.hub.live_agents()
        # nobody waits forever on nobody: if every live agent is waiting, someone can send
        assert not live or not all(n in m.waits for n in live), (live, m.waits)
        for name in live:
            want = AgentState.IDLING if name in m.waits else AgentState.ACTIVE
            assert m.hub.state(name) is want
    for name in m.hub.live_agents():
        await m.finish(name, AgentState.DONE)
    await m.settle()
    assert m.waits == {}
    return m


@PROPERTY
@given(hub_ops)
def test_hub_every_delivered_message_leaves_its_inbox_exactly_once(ops) -> None:
    m = in_fake_time(lambda: play_hub(ops))
    delivered: dict[str, list[str]] = {}
    for env, outcome in m.posted:
        if outcome is DeliveryOutcome.DELIVERED:
            delivered.setdefault(env.recipient, []).append(env.message_id)
    # exactly once, to the right agent, in the order sent (reads and end() together)
    assert {k: v for k, v in m.out.items() if v} == delivered
    for name, reason, pending, state, started, woke in m.wake_log:
        if reason is WakeReason.NO_SENDERS:
            assert pending == 0
        elif reason is WakeReason.MESSAGES and not state.ended:
            assert pending > 0, f"{name} woken with an empty inbox"
        else:
            assert reason is not WakeReason.TIMEOUT or woke - started >= WAIT_TIMEOUT


# --- property 2: whole runs ------------------------------------------------------------------
HELPERS = ["helper1", "helper2", "helper3"]
TARGETS = ["lead", *HELPERS, "ghost"]
THINK = st.sampled_from([0.5, 1.0, 2.5])
recipients = st.lists(st.sampled_from(TARGETS), min_size=1, max_size=3)

# Every script ends with end_turn after its last step; sends are listed twice so that
# scripts are mostly traffic.
_send = st.tuples(st.just("send"), recipients, THINK)
_wait = st.tuples(st.just("wait"), st.just(None), THINK)
helper_step = st.one_of(_send, _send, _wait, st.tuples(st.just("sleep"), st.integers(1, 3), THINK))
_kill = st.tuples(
    st.just("kill"), st.lists(st.sampled_from([*HELPERS, "ghost"]), min_size=1, max_size=2), THINK
)
lead_step = st.one_of(_send, _wait, _kill, _kill)
run_scripts = st.fixed_dictionaries(
    {
        "lead": st.lists(lead_step, min_size=2, max_size=6),
        **{h: st.lists(helper_step, min_size=3, max_size=6) for h in HELPERS},
    }
)


class ScriptPlayer:
    """The scripted model's policy: each agent plays its script, one step per turn."""

    def __init__(self, scripts: dict[str, list[tuple[Any, ...]]]) -> None:
        self.scripts = scripts
        self.last: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, conv: Conversation) -> Reply:
        agent = conv.request.agent
        self.last[agent] = list(conv.request.messages)
        turn = conv.turn
        if agent == "lead":
            if turn == 0:
                return Reply(
                    tool="create_subagents",
                    tool_input={
                        "base_instruction": "go",
                        "per_subagent_instructions": ["", "", ""],
                    },
                )
            turn -= 1
        script = self.scripts[agent]
        kind, arg, think = script[turn] if turn < len(script) else ("end", None, 1.0)
        if kind == "send":
            # self-addressed sends are refused outright (test_reliability_inputs covers them)
            others = [r for r in arg if r != agent] or ["ghost"]
            return Reply(
                tool="send_message",
                tool_input={"recipient_ids": others, "content": f"{agent}:{conv.turn}"},
                think=think,
            )
        if kind == "wait":
            return Reply(tool="wait_for_message", tool_input={}, think=think)
        if kind == "sleep":
            return Reply(tool="sleep", tool_input={"seconds": arg}, think=think)
        if kind == "kill":
            return Reply(tool="kill_subagents", tool_input={"subagent_ids": arg}, think=think)
        return Reply(text="done", stop_reason="end_turn", think=think)

    def seen_by(self, agent: str) -> Counter[tuple[str, str]]:
        """(sender, content) of every block in the agent's last request to its model."""
        blocks: Counter[tuple[str, str]] = Counter()
        for message in self.last.get(agent, []):
            if message["role"] != "user":
                continue
            content = message["content"]
            parts = [content] if isinstance(content, str) else content
            for part in parts:
                text = part if isinstance(part, str) else part.get("content") or part.get("text")
                blocks.update(_BLOCK.findall(str(text or "")))
        return blocks


@dataclass
class RunOutcome:
    sends: list[dict[str, Any]]
    inboxes: RecordingInboxes
    player: ScriptPlayer
    lost: set[str]
    receives: Counter[str]
    leftover_tasks: int


async def play_run(scripts: dict[str, list[tuple[Any, ...]]]) -> RunOutcome:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inboxes = RecordingInboxes()
    player = ScriptPlayer(scripts)
    run = make_run(
        provider,
        hub=Hub(inboxes=inboxes),
        model=ScriptedModel(latency=1, policy=player),
        config=RunConfig(model="m", max_turns=40, wait_timeout=3),
        run_id="prop",
    )
    with logs_captured() as logs:
        async with asyncio.timeout(10_000):  # fake seconds: a hang fails, it does not hang
            await run_scenario("spawn", run)
    leftover = len(asyncio.all_tasks()) - 1
    spans = exporter.get_finished_spans()
    sends = [dict(s.attributes or {}) for s in spans if s.name.startswith("send ")]
    receives: Counter[str] = Counter(
        str((link.attributes or {})["messaging.message.id"])
        for s in spans
        if s.name.startswith("receive ")
        for link in s.links
    )
    lost = {e["message_id"] for e in logs if e["event"].startswith("message lost")}
    return RunOutcome(sends, inboxes, player, lost, receives, leftover)


_NAP = [("sleep", 3, 1.0)] * 3


@PROPERTY
@given(run_scripts)
# the three fates, each on purpose: a helper killed holding the lead's message (notice to the
# lead), holding another helper's (notice to that helper), and the lead ending on a helper
# holding its message (lost: both ended; logged)
@example(
    {
        "lead": [("send", ["helper1"], 1.0), ("kill", ["helper1"], 1.0)],
        "helper1": _NAP,
        "helper2": _NAP,
        "helper3": _NAP,
    }
)
@example(
    {
        "lead": [("wait", None, 2.5), ("kill", ["helper1"], 1.0)],
        "helper1": _NAP,
        "helper2": [("send", ["helper1"], 0.5), *_NAP],
        "helper3": _NAP,
    }
)
@example({"lead": [("send", ["helper2"], 1.0)], "helper1": _NAP, "helper2": _NAP, "helper3": _NAP})
def test_run_every_message_is_read_once_or_reported_undeliverable(scripts) -> None:
    out = in_fake_time(lambda: play_run(scripts))
    assert out.leftover_tasks == 0
    noticed = Counter(
        m.group(1)
        for e in out.inboxes.put_log
        if e.sender == SYSTEM_SENDER and (m := _NOTICE.match(e.content))
    )
    # steer generation towards runs where messages go unread and come back (the rare ones)
    target(float(sum(noticed.values())), label="undeliverable notices")
    seen = {agent: out.player.seen_by(agent) for agent in ["lead", *HELPERS]}
    for send in out.sends:
        message_id = send["messaging.message.id"]
        sender, recipient = send["gen_ai.agent.name"], send["messaging.destination.name"]
        content = send["orchestrace.message.content"]
        read = seen.get(recipient, Counter())[(sender, content)]
        assert out.receives[message_id] <= 1
        if send["orchestrace.message.outcome"] != "delivered":
            assert (recipient == "ghost") == (send["orchestrace.message.outcome"] == "unknown")
            assert (read, noticed[message_id]) == (0, 0)
            continue
        fates = (read, noticed[message_id], int(message_id in out.lost))
        assert sum(fates) == 1, f"{message_id} {sender}->{recipient}: read/noticed/lost={fates}"


# --- the table's deterministic cases -----------------------------------------------------------

END = Reply(text="bye", stop_reason="end_turn")


def send(recipients: list[str], content: str, think: float = 1.0) -> Reply:
    return Reply(
        tool="send_message",
        tool_input={"recipient_ids": recipients, "content": content},
        think=think,
    )


def spec(name: str, **kw: Any) -> AgentSpec:
    return AgentSpec(name, "member", f"You are {name}.", "go", **kw)


def context(
    traced,
    policy,
    *,
    limits: RunLimits | None = None,
    inboxes: RecordingInboxes | None = None,
    **config: Any,
) -> RunContext:
    return make_run(
        traced,
        hub=Hub(inboxes=inboxes if inboxes is not None else RecordingInboxes()),
        model=ScriptedModel(latency=1, policy=policy),
        config=RunConfig(model="m", **config),
        limits=limits,
    )


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_unknown_and_ended_recipients_are_reported_per_recipient(traced) -> None:
    policy = Recorder(
        {"a": [send(["ghost", "k", "d", "c", "live", "live"], "hello"), END], "live": [END]}
    )
    run = context(traced, policy)
    for name in ("a", "k", "d", "c", "live"):
        run.hub.register(name)
    run.hub.set_state("k", AgentState.KILLED)
    run.hub.set_state("d", AgentState.DONE)
    run.hub.set_state("c", AgentState.CRASHED)
    result = await run_agent(run, spec("a"))
    assert result.state is AgentState.DONE  # the run goes on
    assert policy.results("a")[0] == (
        "delivered to ['live']; not delivered: ['ghost'] (unknown), ['k'] (killed), "
        "['d'] (done), ['c'] (crashed)"
    )
    outcomes = {
        (s.attributes or {})["messaging.destination.name"]: (s.attributes or {})[
            "orchestrace.message.outcome"
        ]
        for s in traced.named("send ")
    }
    assert outcomes == {
        "ghost": "unknown",
        "k": "ended",
        "d": "ended",
        "c": "ended",
        "live": "delivered",  # once, though named twice
    }
    assert run.hub.pending("live") == 1


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_message_its_recipient_never_read_comes_back_to_the_sender(traced) -> None:
    class CrashingForC(ScriptedModel):
        async def create(self, request):  # type: ignore[no-untyped-def]
            if request.agent == "c":
                await asyncio.sleep(3)  # b's message arrives meanwhile
                raise ConnectionError("c's model is down")
            return await super().create(request)

    policy = Recorder(
        {"b": [send(["c"], "please review"), Reply(tool="wait_for_message", tool_input={}), END]}
    )
    run = context(traced, policy, wait_timeout=30)
    run.model = CrashingForC(latency=1, policy=policy)
    for name in ("b", "c"):
        run.hub.register(name)
    b, c = await asyncio.gather(run_agent(run, spec("b")), run_agent(run, spec("c")))
    assert (c.state, b.state) == (AgentState.CRASHED, AgentState.DONE)
    assert policy.results("b")[0] == "delivered to ['c']"
    woke = policy.results("b")[1]
    assert woke.startswith("woke: new messages")
    assert (
        '<agent-message from="orchestrace">\nundeliverable: your message msg-1 to c was never '
        "read (c is crashed); it began: 'please review'\n</agent-message>"
    ) in woke
    (agent_c,) = traced.named("invoke_agent c")
    assert (agent_c.attributes or {})["orchestrace.agent.unread_messages"] == 1


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_message_to_a_helper_killed_before_reading_it_comes_back(traced) -> None:
    policy = Recorder(
        {
            "lead": [
                Reply(tool="create_subagents", tool_input={"base_instruction": "nap"}),
                send(["helper1"], "stop napping"),
                Reply(tool="kill_subagents", tool_input={"subagent_ids": ["helper1"]}),
                Reply(tool="get_status", tool_input={}),
                END,
            ],
            "helper1": [Reply(tool="sleep", tool_input={"seconds": 10}), END],
        }
    )
    run = context(traced, policy)
    result = await run_scenario("spawn", run)
    assert result.lead.state is AgentState.DONE
    lead = policy.results("lead")
    assert lead[1] == "delivered to ['helper1']"
    assert lead[2].startswith("cancelled: helper1")
    assert "undeliverable: your message msg-1 to helper1 was never read (helper1 is killed)" in (
        lead[2] + lead[3]
    )


# --- bugs found ----------------------------------------------------------------------------
def _fate(
    inboxes: RecordingInboxes, policy: Recorder, recipient: str, content: str, logs
) -> list[str]:
    fates = []
    if any(content in text for text in policy.results(recipient)):
        fates.append("read")
    if any(e.sender == SYSTEM_SENDER and content in e.content for e in inboxes.put_log):
        fates.append("noticed")
    if any(e["event"].startswith("message lost") for e in logs):
        fates.append("lost-logged")
    return fates


@pytest.mark.parametrize("stop", ["max_turns", "max_model_calls"])
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_messages_drained_on_the_last_turn_are_not_lost(traced, stop: str) -> None:
    policy = Recorder(
        {
            "a": [Reply(tool="wait_for_message", tool_input={}), END],
            "b": [
                send(["a"], "important", think=3),
                Reply(tool="sleep", tool_input={"seconds": 9}),
            ],
        }
    )
    inboxes = RecordingInboxes()
    if stop == "max_turns":
        run = context(traced, policy, max_turns=1, wait_timeout=30, inboxes=inboxes)
    else:
        limits = RunLimits(max_model_calls=3)
        run = context(traced, policy, wait_timeout=30, limits=limits, inboxes=inboxes)
    run.hub.register("a")
    run.hub.register("b")
    with logs_captured() as logs:
        a, _ = await asyncio.gather(
            run_agent(run, spec("a")), run_agent(run, spec("b", tools=[sleep_tool(asyncio.sleep)]))
        )
    assert a.reason == (stop if stop == "max_turns" else "limit:max_model_calls")
    assert len(traced.named("receive a")) == 1  # a drained it...
    # ...so someone must know: with max_turns=1 the sender b has ended too (nobody left to
    # tell: the loss is logged); with the model-call cap b is alive and gets the notice.
    expected = {"max_turns": ["lost-logged"], "max_model_calls": ["noticed"]}[stop]
    assert _fate(inboxes, policy, "a", "important", logs) == expected


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_no_senders_is_not_reported_while_a_bounce_wakes_someone(traced) -> None:
    class CrashingForC(ScriptedModel):
        async def create(self, request):  # type: ignore[no-untyped-def]
            if request.agent == "c":
                await asyncio.sleep(3)
                raise ConnectionError("c's model is down")
            return await super().create(request)

    wait = Reply(tool="wait_for_message", tool_input={})
    policy = Recorder(
        {"a": [send(["c"], "for c"), wait, send(["b"], "c is gone"), END], "b": [wait, END]}
    )
    run = context(traced, policy, wait_timeout=30)
    run.model = CrashingForC(latency=1, policy=policy)
    for name in "abc":
        run.hub.register(name)
    await asyncio.gather(*(run_agent(run, spec(n)) for n in "abc"))
    assert "undeliverable: your message msg-1 to c" in policy.results("a")[1]
    assert policy.results("b")[0] != NO_SENDERS_RESULT
