"""Limits that protect a paid API: agents, model calls, tokens and calls in flight per run.

Each cap is hit on purpose under fake time; the tests check that the cap holds exactly,
that hitting it is reported to whoever can act on it (the model, for a spawn; the span and
the log, for a call), and that ``0`` on the command line means unlimited.
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
from support import Recorder, Traced, logs_captured, make_run

from runtime.agent import AgentResult, AgentSpec, RunConfig, RunContext, run_agent
from runtime.cli import main
from runtime.hub import AgentState
from runtime.limits import RunLimits
from runtime.models import ModelRequest
from runtime.scripted import Reply, ScriptedModel
from runtime.subagents import Subagents, sleep_tool

END = Reply(text="done", stop_reason="end_turn")
NAP = Reply(tool="sleep", tool_input={"seconds": 1})


def context(traced: Traced, model: ScriptedModel, limits: RunLimits) -> RunContext:
    return make_run(traced, model=model, config=RunConfig(model="m", max_turns=50), limits=limits)


def spec(name: str) -> AgentSpec:
    return AgentSpec(name, "member", f"You are {name}.", "go", tools=[sleep_tool(asyncio.sleep)])


async def run_all(run: RunContext, names: list[str]) -> list[AgentResult]:
    for name in names:
        run.hub.register(name)
    return list(await asyncio.gather(*(run_agent(run, spec(n)) for n in names)))


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_spawn_over_the_agent_cap_is_refused_with_what_is_left(traced: Traced) -> None:
    def create(n: int) -> Reply:
        return Reply(
            tool="create_subagents",
            tool_input={"base_instruction": "idle", "per_subagent_instructions": ["x"] * n},
        )

    policy = Recorder({"lead": [create(4), create(3), create(1), END], "*": [END]})
    run = context(traced, ScriptedModel(latency=1, policy=policy), RunLimits(max_agents=4))
    run.hub.register("lead", role="lead")
    subagents = Subagents(run)
    lead = AgentSpec("lead", "lead", "You are lead.", "go", tools=subagents.tools())
    try:
        result = await run_agent(run, lead)
    finally:
        await subagents.shutdown()
    assert result.reason == "end_turn"
    first, second, third = policy.tool_results("lead")
    assert first["is_error"] is True
    assert first["content"] == (
        "error: agent limit reached: the run has 1 of at most 4 agents, so at most 3 more can "
        "be spawned (asked for 4)"
    )
    assert second["content"] == "spawned: helper1, helper2, helper3"
    assert third["is_error"] is True
    assert "at most 0 more can be spawned (asked for 1)" in third["content"]
    assert len(list(run.hub)) == 4  # the cap held
    refused = [
        s
        for s in traced.named("execute_tool create_subagents")
        if (s.attributes or {}).get("error.type") == "limit"
    ]
    assert len(refused) == 2


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_spawn_storm_never_passes_the_cap(traced: Traced) -> None:
    storm = Reply(
        tool="create_subagents",
        tool_input={"base_instruction": "storm", "per_subagent_instructions": ["x"] * 10},
    )
    policy = Recorder({"lead": [storm] * 12 + [END], "*": [NAP, END]})
    run = context(traced, ScriptedModel(latency=1, policy=policy), RunLimits(max_agents=25))
    run.hub.register("lead", role="lead")
    subagents = Subagents(run)
    lead = AgentSpec("lead", "lead", "You are lead.", "go", tools=subagents.tools())
    try:
        await run_agent(run, lead)
    finally:
        await subagents.shutdown()
    assert len(list(run.hub)) == 21  # lead + two spawns of 10; the third would make 31
    assert len(traced.named("invoke_agent helper")) == 20
    results = policy.tool_results("lead")
    assert sum(r.get("is_error", False) for r in results) == 10


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_model_call_cap_stops_every_agent_at_exactly_the_cap(traced: Traced) -> None:
    policy = Recorder({"*": [NAP]})  # would nap forever
    run = context(traced, ScriptedModel(latency=1, policy=policy), RunLimits(max_model_calls=7))
    with logs_captured() as logs:
        results = await run_all(run, ["a", "b"])
    assert len(traced.named("chat m")) == 7
    assert {(r.state, r.reason) for r in results} == {(AgentState.DONE, "limit:max_model_calls")}
    for span in traced.named("invoke_agent "):
        assert span.status.status_code.name == "ERROR"
        assert (span.attributes or {})["error.type"] == "limit:max_model_calls"
    stopped = [e for e in logs if e["event"] == "agent stopped by a run limit"]
    assert [e["detail"] for e in stopped] == ["the run has made its limit of 7 model calls"] * 2


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_token_cap_refuses_the_call_after_the_one_that_crossed_it(
    traced: Traced,
) -> None:
    policy = Recorder({"*": [NAP]})
    cap = 2000
    run = context(traced, ScriptedModel(latency=1, policy=policy), RunLimits(max_tokens_total=cap))
    (result,) = await run_all(run, ["a"])
    assert result.reason == "limit:max_tokens_total"
    used = [
        (s.attributes or {})["gen_ai.usage.input_tokens"]
        + (s.attributes or {})["gen_ai.usage.output_tokens"]
        for s in traced.named("chat m")
    ]
    assert sum(used[:-1]) < cap <= sum(used)  # nothing is cut off mid-call
    (agent,) = traced.named("invoke_agent a")
    assert (agent.attributes or {})["error.type"] == "limit:max_tokens_total"


class InFlight(ScriptedModel):
    """Counts model calls in flight at once."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.now = 0
        self.most = 0

    async def create(self, request: ModelRequest):  # type: ignore[no-untyped-def]
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await super().create(request)
        finally:
            self.now -= 1


@pytest.mark.parametrize(("cap", "most"), [(2, 2), (None, 5)])
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_concurrent_model_calls_are_capped_and_queueing_is_on_the_span(
    traced: Traced, cap: int | None, most: int
) -> None:
    model = InFlight(latency=1, policy=Recorder({"*": [NAP, END]}))
    run = context(traced, model, RunLimits(max_concurrent_calls=cap))
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await run_all(run, [f"a{i}" for i in range(5)])
    assert {r.reason for r in results} == {"end_turn"}
    assert model.most == most
    queued = [
        (s.attributes or {}).get("orchestrace.model.queue_seconds", 0.0)
        for s in traced.named("chat m")
    ]
    if cap is None:
        assert queued == [0.0] * 10
        assert loop.time() - started == pytest.approx(3)  # call, 1 s nap, call
    else:
        assert sum(q > 0 for q in queued) >= 3  # three of the first five waited
        assert max(queued) == pytest.approx(2)  # the fifth waited for two rounds
        assert loop.time() - started == pytest.approx(5)  # ten 1-second calls, two at a time


def test_zero_on_the_command_line_means_unlimited() -> None:
    # with a cap of 0 agents or calls, not one helper could be spawned nor one call made
    zeros = ["--max-agents", "--max-model-calls", "--max-total-tokens"]
    zeros += ["--max-concurrent-calls", "--max-message-chars"]
    out = io.StringIO()
    assert main([*_fast_run(), *(a for cap in zeros for a in (cap, "0"))], out=out) == 0
    assert "[lead final answer]\nSummary: All 3 helpers" in out.getvalue()


def test_the_cli_reports_a_model_call_cap_in_the_summary() -> None:
    out = io.StringIO()
    assert main([*_fast_run(), "--max-model-calls", "3"], out=out) == 1  # not a success
    text = out.getvalue()
    assert "run incomplete: the lead ended done (limit:max_model_calls)" in text
    # The summary's header agrees with the exit line (it does not say "completed").
    header = next(line for line in text.splitlines() if line.startswith("Run spawn · "))
    assert header.endswith(" · incomplete: the lead ended done (limit:max_model_calls)")
    row = re.search(r"^lead\s+lead\s+done\s+(\S+)", text, re.M)
    assert row is not None
    assert row.group(1) == "limit:max_model_calls"


def _fast_run() -> list[str]:
    return ["run", "spawn", "--time-scale", "0", "--latency", "0", "--spans-file", "", "--quiet"]
