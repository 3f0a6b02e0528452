"""Bad tool input: every case is an ``is_error`` tool result the model can act on.

Each case runs the real loop: the scripted model calls one tool with bad arguments, gets an
error result that says what was wrong, and is called again (the run continues). The
``execute_tool`` span is ERROR with a low-cardinality ``error.type``; nothing else happens
(no message is posted, no helper is spawned or killed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from anthropic.types import Message, ToolUseBlock, Usage
from support import Recorder, Traced, make_run

from runtime.agent import AgentResult, AgentSpec, RunConfig, RunContext, run_agent
from runtime.hub import AgentState
from runtime.limits import RunLimits
from runtime.models import ModelRequest
from runtime.scripted import Reply, ScriptedModel
from runtime.subagents import Subagents, sleep_tool

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]

END = Reply(text="understood", stop_reason="end_turn")


def lead_context(traced: Traced, policy: Recorder, limits: RunLimits | None = None) -> RunContext:
    run = make_run(
        traced,
        model=ScriptedModel(latency=1, policy=policy),
        config=RunConfig(model="m", wait_timeout=5),
        limits=limits,
    )
    run.hub.register("lead", role="lead")
    run.hub.register("other")  # alive, so a wait is not "no senders"
    return run


async def run_lead(run: RunContext) -> tuple[AgentResult, Subagents]:
    subagents = Subagents(run)
    spec = AgentSpec(
        "lead",
        "lead",
        "You are lead.",
        "go",
        tools=[*subagents.tools(), sleep_tool(asyncio.sleep)],
    )
    try:
        return await run_agent(run, spec), subagents
    finally:
        await subagents.shutdown()


def case(tool: str, arguments: Any, problem: str, kind: str = "invalid_input") -> Any:
    """One row: the call, what the error result must say, and the span's error.type."""
    return pytest.param(tool, arguments, problem, kind, id=f"{tool}:{problem[:40]}")


ALL_TOOLS = "create_subagents, get_status, kill_subagents, sleep, send_message, wait_for_message"
ELEVEN = [str(i) for i in range(11)]
BAD_INPUT = [
    case("send_message", {}, "'recipient_ids' is a required property"),
    case("send_message", {"recipient_ids": ["other"]}, "'content' is a required property"),
    case(
        "send_message",
        {"recipient_ids": "other", "content": "x"},
        "recipient_ids: 'other' is not of type 'array'",
    ),
    case(
        "send_message",
        {"recipient_ids": [], "content": "x"},
        "recipient_ids: [] should be non-empty",
    ),
    case(
        "send_message",
        {"recipient_ids": [7], "content": "x"},
        "recipient_ids.0: 7 is not of type 'string'",
    ),
    case(
        "send_message",
        {"recipient_ids": ["other"], "content": 5},
        "content: 5 is not of type 'string'",
    ),
    case(
        "send_message",
        {"recipient_ids": ["other"], "content": "x", "urgent": True},
        "Additional properties are not allowed ('urgent' was unexpected)",
    ),
    case(
        "send_message",
        {"recipient_ids": ["other", "lead"], "content": "x"},
        "recipient_ids names yourself ('lead'); send only to other agents",
        "invalid_recipient",
    ),
    case(
        "wait_for_message",
        {"timeout": 5},
        "Additional properties are not allowed ('timeout' was unexpected)",
    ),
    case("sleep", {}, "'seconds' is a required property"),
    case("sleep", {"seconds": -1}, "seconds: -1 is less than the minimum of 0"),
    case("sleep", {"seconds": 11}, "seconds: 11 is greater than the maximum of 10"),
    case("sleep", {"seconds": "3"}, "seconds: '3' is not of type 'integer'"),
    case("sleep", {"seconds": 2.5}, "seconds: 2.5 is not of type 'integer'"),
    case("sleep", {"seconds": True}, "seconds: True is not of type 'integer'"),
    case("create_subagents", {}, "'base_instruction' is a required property"),
    case(
        "create_subagents",
        {"base_instruction": "go", "per_subagent_instructions": ELEVEN},
        f"per_subagent_instructions: {ELEVEN} is too long",
    ),
    case(
        "create_subagents",
        {"base_instruction": "go", "per_subagent_instructions": "a"},
        "per_subagent_instructions: 'a' is not of type 'array'",
    ),
    case(
        "get_status",
        {"verbose": True},
        "Additional properties are not allowed ('verbose' was unexpected)",
    ),
    case("kill_subagents", {"subagent_ids": []}, "subagent_ids: [] should be non-empty"),
    case(
        "kill_subagents",
        {"subagent_ids": "helper1"},
        "subagent_ids: 'helper1' is not of type 'array'",
    ),
    case(
        "kill_subagents",
        {"subagent_ids": ["helper9"]},
        "no matching active helpers: helper9 (unknown)",
        "invalid_subagent",
    ),
    case(
        "teleport",
        {"to": "mars"},
        f"unknown tool 'teleport'; available: {ALL_TOOLS}",
        "unknown_tool",
    ),
]


@pytest.mark.parametrize(("tool", "arguments", "problem", "kind"), BAD_INPUT)
async def test_bad_input_is_an_error_result_and_the_run_continues(
    traced: Traced, tool: str, arguments: Any, problem: str, kind: str
) -> None:
    policy = Recorder({"lead": [Reply(tool=tool, tool_input=arguments), END]})
    run = lead_context(traced, policy)
    result, subagents = await run_lead(run)
    # the model was told, and was called again: the run goes on
    assert (result.state, result.reason, result.text) == (AgentState.DONE, "end_turn", "understood")
    (block,) = policy.tool_results("lead")
    assert block["is_error"] is True
    assert block["content"].startswith("error: ")
    assert problem in block["content"]
    (span,) = traced.named(f"execute_tool {tool}")
    attrs = span.attributes or {}
    assert span.status.status_code.name == "ERROR"
    assert (attrs["error.type"], attrs["orchestrace.tool.is_error"]) == (kind, True)
    # and the bad call had no effect
    assert traced.named("send ") == []
    assert subagents.tasks == {}
    assert run.hub.pending("other") == 0


async def test_a_tool_input_that_is_not_an_object_is_an_error_result(traced: Traced) -> None:
    class NotAnObject(ScriptedModel):
        """The API may hand back any JSON as a tool's input; here a list."""

        def respond(self, request: ModelRequest) -> tuple[Reply, Message]:
            reply, message = super().respond(request)
            if reply.tool is None:
                return reply, message
            block = ToolUseBlock.model_construct(
                type="tool_use", id="toolu_list", name="sleep", input=[1, 2]
            )
            usage = Usage(input_tokens=1, output_tokens=1)
            bad = Message.model_construct(**{**dict(message), "content": [block], "usage": usage})
            return reply, bad

    policy = Recorder({"lead": [Reply(tool="sleep", tool_input={}), END]})
    run = lead_context(traced, policy)
    run.model = NotAnObject(latency=1, policy=policy)
    with pytest.warns(UserWarning, match="serialized value may not be as expected"):
        result, _ = await run_lead(run)
    assert result.reason == "end_turn"
    (block,) = policy.tool_results("lead")
    assert block["is_error"] is True
    assert block["content"].startswith("error: invalid input for sleep: ")


async def test_killing_an_ended_helper_is_an_error_result(traced: Traced) -> None:
    policy = Recorder(
        {
            "lead": [
                Reply(tool="create_subagents", tool_input={"base_instruction": "finish at once"}),
                Reply(tool="sleep", tool_input={"seconds": 5}),
                Reply(tool="kill_subagents", tool_input={"subagent_ids": ["helper1", "helper1"]}),
                END,
            ],
            "helper1": [END],
        }
    )
    run = lead_context(traced, policy)
    result, _ = await run_lead(run)
    assert result.reason == "end_turn"
    kill = policy.tool_results("lead")[2]
    assert kill["is_error"] is True
    assert kill["content"] == "error: no matching active helpers: helper1 (already done)"
    assert run.hub.state("helper1") is AgentState.DONE  # not rewritten to killed


async def test_a_kill_naming_live_and_unknown_helpers_kills_the_live_ones(
    traced: Traced,
) -> None:
    policy = Recorder(
        {
            "lead": [
                Reply(tool="create_subagents", tool_input={"base_instruction": "nap"}),
                Reply(tool="kill_subagents", tool_input={"subagent_ids": ["helper9", "helper1"]}),
                END,
            ],
            "helper1": [Reply(tool="sleep", tool_input={"seconds": 10}), END],
        }
    )
    run = lead_context(traced, policy)
    await run_lead(run)
    kill = policy.tool_results("lead")[1]
    assert "is_error" not in kill
    assert kill["content"] == "cancelled: helper1; not cancelled: helper9 (unknown)"
    assert run.hub.state("helper1") is AgentState.KILLED


@pytest.mark.parametrize(("size", "sent"), [(10, True), (11, False)])
async def test_oversized_content_is_refused_and_the_error_names_the_limit(
    traced: Traced, size: int, sent: bool
) -> None:
    message = Reply(
        tool="send_message", tool_input={"recipient_ids": ["other"], "content": "x" * size}
    )
    policy = Recorder({"lead": [message, END]})
    run = lead_context(traced, policy, RunLimits(max_message_chars=10))
    result, _ = await run_lead(run)
    assert result.reason == "end_turn"
    (block,) = policy.tool_results("lead")
    assert run.hub.pending("other") == int(sent)
    if sent:
        assert block["content"] == "delivered to ['other']"
        return
    assert block["is_error"] is True
    assert block["content"] == "error: message not sent: content is 11 characters; the limit is 10"
    (span,) = traced.named("execute_tool send_message")
    assert (span.attributes or {})["error.type"] == "too_large"
    assert traced.named("send ") == []


async def test_a_tool_with_an_invalid_schema_is_refused_every_time() -> None:
    """Schemas are checked once and then shared, but a bad one is never remembered as good."""
    from jsonschema.exceptions import SchemaError

    from runtime.tools import Tool

    async def handler(_call: object) -> str:
        return "ok"

    bad = {"name": "bad", "description": "x", "input_schema": {"type": 5}}
    for _ in range(2):
        with pytest.raises(SchemaError):
            Tool(bad, handler)
    good = Tool({**bad, "input_schema": {"type": "object"}}, handler)
    good.validate({})
    with pytest.raises(Exception, match="invalid input for bad"):
        good.validate([])
