"""Concurrency: kills at every point of a helper's life, the lead ending first, deadlocks.

All under fake loop time: a kill must take effect at once (not when the helper's sleep,
wait or model call would have finished), leave every span ended with a state that says
what happened, and leave no task behind.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from anthropic.types import ToolUseBlock
from support import Recorder, Traced, make_run

from runtime.agent import (
    NO_SENDERS_RESULT,
    AgentResult,
    AgentSpec,
    RunConfig,
    RunContext,
    run_agent,
)
from runtime.hub import AgentState
from runtime.scenarios import run_scenario
from runtime.scripted import Reply, ScriptedModel
from runtime.subagents import Subagents, sleep_tool

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]

END = Reply(text="done", stop_reason="end_turn")
WAIT = Reply(tool="wait_for_message", tool_input={})


def context(traced: Traced, policy: Recorder, **config: Any) -> RunContext:
    return make_run(
        traced, model=ScriptedModel(latency=1, policy=policy), config=RunConfig(model="m", **config)
    )


async def run_lead(run: RunContext) -> AgentResult:
    run.hub.register("lead", role="lead")
    subagents = Subagents(run)
    spec = AgentSpec(
        "lead", "lead", "You are lead.", "go", tools=[*subagents.tools(), sleep_tool(asyncio.sleep)]
    )
    try:
        return await run_agent(run, spec)
    finally:
        await subagents.shutdown()


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


SPAWN = Reply(tool="create_subagents", tool_input={"base_instruction": "work"})


@pytest.mark.parametrize(
    ("doing", "helper_script", "open_span"),
    [
        ("waiting", [WAIT, END], "execute_tool wait_for_message"),
        ("sleeping", [Reply(tool="sleep", tool_input={"seconds": 10}), END], "execute_tool sleep"),
        ("in a model call", [Reply(tool="sleep", tool_input={"seconds": 1}, think=30)], "chat m"),
    ],
)
async def test_a_kill_takes_effect_at_once_whatever_the_helper_is_doing(
    traced: Traced, doing: str, helper_script: list[Reply], open_span: str
) -> None:
    policy = Recorder(
        {
            "lead": [
                SPAWN,  # t=1: helper1 starts
                Reply(tool="sleep", tool_input={"seconds": 3}),  # t=2..5: helper1 is {doing}
                Reply(tool="kill_subagents", tool_input={"subagent_ids": ["helper1"]}),  # t=6
                END,
            ],
            "helper1": helper_script,
        }
    )
    run = context(traced, policy, wait_timeout=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run_lead(run)
    assert loop.time() - started == pytest.approx(7)  # four 1-second calls and the 3 s sleep
    assert result.reason == "end_turn"
    assert policy.results("lead")[2] == "cancelled: helper1"
    assert run.hub.state("helper1") is AgentState.KILLED
    (agent,) = traced.named("invoke_agent helper1")
    assert (
        attrs(agent)["orchestrace.agent.state"],
        attrs(agent)["orchestrace.agent.end_reason"],
    ) == (
        "killed",
        "killed",
    )
    assert agent.status.status_code.name == "UNSET"  # a kill is the lead's decision, not a fault
    # what the helper was doing ended with the kill, at t=6, and says it was cut short
    cut = [s for s in traced.named(open_span) if attrs(s).get("gen_ai.agent.name") == "helper1"]
    assert cut
    last = cut[-1]
    assert last.end_time is not None
    assert last.end_time <= agent.end_time
    if open_span.startswith("execute_tool"):
        assert attrs(last)["orchestrace.tool.cancelled"] is True
    else:
        assert attrs(last)["error.type"] == "CancelledError"
    assert len(asyncio.all_tasks()) == 1


async def test_the_lead_ending_first_kills_the_helpers_still_running(traced: Traced) -> None:
    nap = Reply(tool="sleep", tool_input={"seconds": 10})
    policy = Recorder(
        {
            "lead": [
                Reply(
                    tool="create_subagents",
                    tool_input={
                        "base_instruction": "nap",
                        "per_subagent_instructions": ["", "", ""],
                    },
                ),
                END,
            ],
            "helper1": [nap, END],
            "helper2": [WAIT, END],
            "helper3": [Reply(tool="sleep", tool_input={"seconds": 1}, think=30)],
        }
    )
    run = context(traced, policy)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run_scenario("spawn", run)
    assert loop.time() - started == pytest.approx(2)  # not 11, 61 or 31: nobody is waited for
    assert result.lead.reason == "end_turn"
    for helper in ("helper1", "helper2", "helper3"):
        assert run.hub.state(helper) is AgentState.KILLED
        (span,) = traced.named(f"invoke_agent {helper}")
        assert attrs(span)["orchestrace.agent.end_reason"] == "killed"
    (workflow,) = traced.named("invoke_workflow spawn")
    assert attrs(workflow)["orchestrace.run.outcome"] == "completed"
    assert all(s.end_time is not None for s in traced.spans)
    assert len(asyncio.all_tasks()) == 1


async def test_everyone_waiting_on_everyone_is_woken_at_once(traced: Traced) -> None:
    policy = Recorder({name: [WAIT, END] for name in ("a", "b", "c")})
    run = context(traced, policy, wait_timeout=600)
    for name in ("a", "b", "c"):
        run.hub.register(name)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        *(run_agent(run, AgentSpec(n, "member", f"You are {n}.", "go")) for n in ("a", "b", "c"))
    )
    assert loop.time() - started == pytest.approx(2)  # two model calls; nobody waited 600 s
    assert [r.reason for r in results] == ["end_turn"] * 3
    for name in ("a", "b", "c"):
        assert policy.results(name) == [NO_SENDERS_RESULT]


async def test_no_senders_is_not_declared_while_someone_could_still_send(traced: Traced) -> None:
    # b is sleeping, not waiting: it may still write to a, and does
    policy = Recorder(
        {
            "a": [WAIT, END],
            "b": [
                Reply(tool="sleep", tool_input={"seconds": 5}),
                Reply(tool="send_message", tool_input={"recipient_ids": ["a"], "content": "late"}),
                END,
            ],
        }
    )
    run = context(traced, policy, wait_timeout=600)
    run.hub.register("a")
    run.hub.register("b")
    a, _ = await asyncio.gather(
        run_agent(run, AgentSpec("a", "member", "You are a.", "go")),
        run_agent(
            run, AgentSpec("b", "member", "You are b.", "go", tools=[sleep_tool(asyncio.sleep)])
        ),
    )
    assert a.reason == "end_turn"
    (woke,) = policy.results("a")
    assert woke.startswith("woke: new messages")
    assert '<agent-message from="b">\nlate\n</agent-message>' in woke


async def test_a_wait_times_out_when_the_others_are_busy(traced: Traced) -> None:
    policy = Recorder(
        {"a": [WAIT, END], "b": [Reply(tool="sleep", tool_input={"seconds": 10}), END]}
    )
    run = context(traced, policy, wait_timeout=4)
    run.hub.register("a")
    run.hub.register("b")
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def timed(spec: AgentSpec) -> tuple[AgentResult, float]:
        result = await run_agent(run, spec)
        return result, loop.time() - started

    (a, a_took), (b, b_took) = await asyncio.gather(
        timed(AgentSpec("a", "member", "You are a.", "go")),
        timed(AgentSpec("b", "member", "You are b.", "go", tools=[sleep_tool(asyncio.sleep)])),
    )
    assert (a_took, b_took) == (pytest.approx(1 + 4 + 1), pytest.approx(1 + 10 + 1))
    assert (a.reason, b.reason) == ("end_turn", "end_turn")
    assert policy.results("a") == ["woke: 4s timeout"]
    (wait,) = traced.named("execute_tool wait_for_message")
    assert wait.status.status_code.name == "UNSET"  # a timeout is an answer, not an error


class _SpawnAndKillAtOnce(ScriptedModel):
    """The lead's first response asks for create_subagents and kill_subagents together."""

    async def create(self, request: Any) -> Any:
        if request.agent != "lead" or len(request.messages) > 1:
            return await super().create(request)
        message = await super().create(request)
        calls = [
            ("create_subagents", {"base_instruction": "work"}),
            ("kill_subagents", {"subagent_ids": ["helper1"]}),
        ]
        blocks = [
            ToolUseBlock(type="tool_use", id=f"toolu_{i}", name=name, input=args)
            for i, (name, args) in enumerate(calls)
        ]
        return message.model_copy(update={"content": blocks, "stop_reason": "tool_use"})


async def test_a_helper_killed_in_the_response_that_spawned_it_still_ends_visibly(
    traced: Traced,
) -> None:
    policy = Recorder({"lead": [SPAWN, END], "helper1": [END]})
    run = context(traced, policy)
    run.model = _SpawnAndKillAtOnce(latency=1, policy=policy)
    result = await run_lead(run)
    assert result.reason == "end_turn"
    assert policy.results("lead") == ["spawned: helper1", "cancelled: helper1"]
    # the helper's task started before the kill: it has its span, ended as killed
    (agent,) = traced.named("invoke_agent helper1")
    assert attrs(agent)["orchestrace.agent.state"] == "killed"
    assert run.hub.state("helper1") is AgentState.KILLED
    assert len(asyncio.all_tasks()) == 1
