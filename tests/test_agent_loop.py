"""run_agent's decisions: stop reasons, bad tool input, messages at end_turn, crashes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Recorder, Traced

from runtime.agent import AgentSpec, RunConfig, run_agent
from runtime.hub import AgentState
from runtime.scripted import Reply, ScriptedModel
from runtime.subagents import sleep_tool

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


def spec(name: str, **kw: Any) -> AgentSpec:
    return AgentSpec(
        name=name,
        role=kw.pop("role", "member"),
        system=f"You are {name}.",
        first_user_turn="go",
        **kw,
    )


async def run_one(traced: Traced, policy: Recorder, name: str = "a", **kw: Any):
    run = traced.context(
        model=ScriptedModel(latency=1, policy=policy),
        config=RunConfig(model="m", **kw.pop("config", {})),
    )
    run.hub.register(name)
    run.hub.register("other")  # someone alive, so waits are not "no senders"
    return run, await run_agent(run, spec(name, **kw))


END = Reply(text="bye", stop_reason="end_turn")


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "'seconds' is a required property"),
        ({"seconds": -1}, "seconds: -1 is less than the minimum of 0"),
        ({"seconds": 11}, "seconds: 11 is greater than the maximum of 10"),
        ({"seconds": "3"}, "seconds: '3' is not of type 'integer'"),
        ({"seconds": 1, "extra": True}, "Additional properties are not allowed ('extra'"),
    ],
)
async def test_bad_tool_input_is_an_error_result_and_the_run_continues(
    traced: Traced, arguments: dict[str, Any], problem: str
) -> None:
    policy = Recorder({"a": [Reply(tool="sleep", tool_input=arguments), END]})
    _, result = await run_one(traced, policy, tools=[sleep_tool(asyncio.sleep)])
    assert result.state is AgentState.DONE
    (block,) = policy.last_user_blocks("a")
    assert block["is_error"] is True
    assert block["content"].startswith("error: invalid input for sleep: ")
    assert problem in block["content"]
    (tool,) = traced.named("execute_tool sleep")
    assert tool.status.status_code.name == "ERROR"
    assert (tool.attributes or {})["error.type"] == "invalid_input"


async def test_unknown_tool_names_the_available_ones(traced: Traced) -> None:
    policy = Recorder({"a": [Reply(tool="teleport", tool_input={}), END]})
    _, result = await run_one(traced, policy)
    (block,) = policy.last_user_blocks("a")
    assert block["is_error"] is True
    assert "unknown tool 'teleport'; available: send_message, wait_for_message" in block["content"]
    assert result.state is AgentState.DONE


async def test_send_to_self_is_refused(traced: Traced) -> None:
    policy = Recorder(
        {
            "a": [
                Reply(tool="send_message", tool_input={"recipient_ids": ["a"], "content": "x"}),
                END,
            ]
        }
    )
    await run_one(traced, policy)
    (block,) = policy.last_user_blocks("a")
    assert block["is_error"] is True
    assert "names yourself" in block["content"]
    assert traced.named("send ") == []


async def test_duplicate_recipients_get_one_copy(traced: Traced) -> None:
    policy = Recorder(
        {
            "a": [
                Reply(
                    tool="send_message",
                    tool_input={"recipient_ids": ["other", "other"], "content": "x"},
                ),
                END,
            ]
        }
    )
    run, _ = await run_one(traced, policy)
    assert run.hub.pending("other") == 1
    assert len(traced.named("send other")) == 1


async def test_messages_arriving_at_end_turn_are_delivered_not_lost(traced: Traced) -> None:
    # Cookbook defect: on end_turn the agent returned, and messages that had arrived during its
    # last model call were silently dropped.
    policy = Recorder(
        {
            "a": [Reply(text="done", stop_reason="end_turn", think=2.0), END],
            "b": [
                Reply(
                    tool="send_message",
                    tool_input={"recipient_ids": ["a"], "content": "ping"},
                    think=0.5,
                ),
                END,
            ],
        }
    )
    run = traced.context(model=ScriptedModel(latency=1, policy=policy), config=RunConfig(model="m"))
    run.hub.register("a")
    run.hub.register("b")
    results = await asyncio.gather(run_agent(run, spec("a")), run_agent(run, spec("b")))
    assert [r.state for r in results] == [AgentState.DONE, AgentState.DONE]
    assert len(policy.seen["a"]) == 2
    (block,) = policy.last_user_blocks("a")
    assert '<agent-message from="b">\nping\n</agent-message>' in block["text"]
    (receive,) = traced.named("receive a")
    assert (receive.attributes or {})["orchestrace.delivery.via"] == "user_turn"


@pytest.mark.parametrize("stop", ["max_tokens", "refusal", "model_context_window_exceeded"])
async def test_abnormal_stop_reasons_end_the_agent_with_a_reason(traced: Traced, stop: str) -> None:
    policy = Recorder({"a": [Reply(text="partial", stop_reason=stop)]})
    _, result = await run_one(traced, policy)
    assert result.state is AgentState.DONE
    assert result.reason == f"stop_reason:{stop}"
    (agent,) = traced.named("invoke_agent a")
    assert agent.status.status_code.name == "ERROR"
    assert (agent.attributes or {})["orchestrace.agent.end_reason"] == f"stop_reason:{stop}"


async def test_pause_turn_continues(traced: Traced) -> None:
    policy = Recorder({"a": [Reply(text="thinking", stop_reason="pause_turn"), END]})
    _, result = await run_one(traced, policy)
    assert result.reason == "end_turn"
    assert len(traced.named("chat m")) == 2


async def test_max_turns_ends_the_agent(traced: Traced) -> None:
    policy = Recorder({"a": [Reply(tool="wait_for_message", tool_input={})]})
    _, result = await run_one(traced, policy, config={"max_turns": 3, "wait_timeout": 5})
    assert result.reason == "max_turns"
    assert result.text == "[a hit max_turns=3]"
    assert len(traced.named("execute_tool wait_for_message")) == 3


async def test_wait_timeout_is_configurable(traced: Traced) -> None:
    policy = Recorder({"a": [Reply(tool="wait_for_message", tool_input={}), END]})
    loop = asyncio.get_running_loop()
    start = loop.time()
    await run_one(traced, policy, config={"wait_timeout": 7})
    (block,) = policy.last_user_blocks("a")
    assert block["content"] == "woke: 7s timeout"
    assert loop.time() - start == pytest.approx(7 + 2)  # two model calls of 1 s


async def test_a_crashing_tool_is_an_error_result_not_a_crash(traced: Traced) -> None:
    from runtime.subagents import SLEEP
    from runtime.tools import Tool

    async def broken(_call: object) -> str:
        raise RuntimeError("disk on fire")

    policy = Recorder({"a": [Reply(tool="sleep", tool_input={"seconds": 1}), END]})
    _, result = await run_one(traced, policy, tools=[Tool(SLEEP, broken)])
    assert result.state is AgentState.DONE
    (block,) = policy.last_user_blocks("a")
    assert block["content"] == "error: tool sleep failed: RuntimeError: disk on fire"
    (tool,) = traced.named("execute_tool sleep")
    assert tool.events[0].name == "exception"


async def test_a_crashing_model_crashes_only_that_agent(traced: Traced) -> None:
    class Exploding(ScriptedModel):
        async def create(self, request):  # type: ignore[no-untyped-def]
            if request.agent == "a":
                raise ConnectionError("boom")
            return await super().create(request)

    policy = Recorder({"b": [END]})
    run = traced.context(model=Exploding(latency=1, policy=policy), config=RunConfig(model="m"))
    run.hub.register("a")
    run.hub.register("b")
    a, b = await asyncio.gather(run_agent(run, spec("a")), run_agent(run, spec("b")))
    assert (a.state, a.reason) == (AgentState.CRASHED, "ConnectionError")
    assert b.state is AgentState.DONE
    (chat,) = [
        s for s in traced.named("chat m") if (s.attributes or {})["gen_ai.agent.name"] == "a"
    ]
    assert chat.status.status_code.name == "ERROR"
    assert (chat.attributes or {})["error.type"] == "ConnectionError"


async def test_scripted_token_estimate_of_a_growing_history_matches_encoding_it_whole() -> None:
    """The scripted model remembers each message's size; the estimate must not change."""
    from runtime.scripted import _HistoryTokens, _tokens

    history = _HistoryTokens()
    messages: list[dict[str, Any]] = []
    assert history.count(messages) == _tokens(messages)
    for i in range(30):
        content: Any = f'turn {i} ü "quoted"' if i % 3 else [{"type": "text", "text": "x" * i}]
        messages.append({"role": "user" if i % 2 else "assistant", "content": content})
        assert history.count(messages) == _tokens(list(messages))
    # A different list holding new message objects is counted afresh, not from memory.
    other = [{"role": "user", "content": "y" * 400}]
    assert history.count(other) == _tokens(other)
