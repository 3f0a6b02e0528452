"""The real AsyncAnthropic client against a local Messages API server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fake_messages_api import ErrorReply, FakeMessagesAPI
from support import Traced

from runtime.agent import AgentSpec, RunConfig, run_agent
from runtime.hub import AgentState
from runtime.models import AnthropicModel, ModelRequest
from runtime.scenarios import run_scenario
from runtime.scripted import Reply, ScriptedModel

pytestmark = pytest.mark.asyncio

MODEL = "claude-test-model"


async def instant(_seconds: float) -> None:
    await asyncio.sleep(0)


def scripted_responder(script: ScriptedModel):  # type: ignore[no-untyped-def]
    """Answer each HTTP request with the scripted model's reply for that agent."""

    def respond(body: dict[str, Any]) -> dict[str, Any] | ErrorReply:
        match = re.match(r"You are (\w+)", body.get("system", ""))
        request = ModelRequest(
            agent=match.group(1) if match else "?",
            model=body["model"],
            max_tokens=body["max_tokens"],
            system=body.get("system", ""),
            tools=body.get("tools", []),
            messages=body["messages"],
        )
        _, message = script.respond(request)
        return message.model_dump(mode="json")

    return respond


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


def model_for(api: FakeMessagesAPI, traced: Traced, **kw: Any) -> AnthropicModel:
    """A real client on the fake API; use it as ``async with`` so its connections close."""
    return AnthropicModel(
        base_url=api.url,
        api_key="sk-test-not-a-real-key",
        max_retries=2,
        tracer_provider=traced.tracer_provider,
        **kw,
    )


async def test_spawn_scenario_over_the_messages_api(api: FakeMessagesAPI, traced: Traced) -> None:
    api.set_responder(scripted_responder(ScriptedModel(latency=0)))
    async with model_for(api, traced) as model:
        run = traced.context(model=model, config=RunConfig(model=MODEL, sleep=instant))
        result = await run_scenario("spawn", run)
    assert result.lead.state is AgentState.DONE
    assert result.lead.text.startswith("Summary: All 3 helpers")
    chats = traced.named(f"chat {MODEL}")
    assert len(chats) == len(api.message_requests)
    # every request carried the agent's tools and the tool results of the previous turn
    first = api.message_requests[0]
    assert {t["name"] for t in first.tools} >= {"create_subagents", "send_message"}
    assert first.headers["x-stainless-retry-count"] == "0"
    # one CLIENT span per call: the SDK's own tracing is off
    assert all(
        s.kind.name != "CLIENT" or s.name.startswith(("chat ", "receive ")) for s in traced.spans
    )
    assert not [s for s in traced.spans if s.name.startswith("anthropic.")]
    ok = chats[0].attributes or {}
    assert ok["gen_ai.response.id"].startswith("msg_scripted_")
    assert ok["gen_ai.usage.input_tokens"] > 0


async def test_sdk_tracing_would_duplicate_the_model_span(
    api: FakeMessagesAPI, traced: Traced
) -> None:
    # The control for the test above: with the SDK's spans on, each call gets a second
    # CLIENT span. orchestrace turns them off.
    api.reply_text("hi")
    async with model_for(api, traced, sdk_traces=True) as model:
        run = traced.context(model=model, config=RunConfig(model=MODEL))
        run.hub.register("a")
        await run_agent(run, AgentSpec("a", "member", "You are a.", "go"))
    clients = [s.name for s in traced.spans if s.kind.name == "CLIENT"]
    assert clients.count(f"chat {MODEL}") == 1
    assert len(clients) == 2


@pytest.mark.parametrize(("status", "times"), [(429, 1), (529, 2)])
async def test_rate_limits_and_overload_are_retried_and_recorded(
    api: FakeMessagesAPI, traced: Traced, status: int, times: int
) -> None:
    api.fail(status, times=times)
    api.reply_text("all good")
    async with model_for(api, traced) as model:
        run = traced.context(model=model, config=RunConfig(model=MODEL))
        run.hub.register("a")
        result = await run_agent(run, AgentSpec("a", "member", "You are a.", "go"))
    assert (result.state, result.text) == (AgentState.DONE, "all good")
    assert [r.retry_count for r in api.message_requests] == list(range(times + 1))
    (chat,) = traced.named(f"chat {MODEL}")
    assert chat.status.status_code.name == "UNSET"
    assert (chat.attributes or {})["http.request.resend_count"] == times
    failed = [e for e in chat.events if e.name == "orchestrace.model.attempt_failed"]
    assert [(e.attributes or {})["http.response.status_code"] for e in failed] == [status] * times


async def test_a_500_after_retries_crashes_that_agent_and_the_run_completes(
    api: FakeMessagesAPI, traced: Traced
) -> None:
    def respond(body: dict[str, Any]) -> Any:
        if body["system"].startswith("You are a."):
            return ErrorReply(500, "api_error", "internal failure")
        return {
            "id": "msg_b",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "b is fine"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }

    api.set_responder(respond)
    async with model_for(api, traced) as model:
        run = traced.context(model=model, config=RunConfig(model=MODEL))
        run.hub.register("a")
        run.hub.register("b")
        a, b = await asyncio.gather(
            run_agent(run, AgentSpec("a", "member", "You are a.", "go")),
            run_agent(run, AgentSpec("b", "member", "You are b.", "go")),
        )
    assert (a.state, a.reason) == (AgentState.CRASHED, "InternalServerError")
    assert (b.state, b.text) == (AgentState.DONE, "b is fine")
    a_requests = [r for r in api.message_requests if r.system.startswith("You are a.")]
    assert len(a_requests) == 3  # the first attempt and max_retries=2 retries
    (chat,) = [
        s for s in traced.named(f"chat {MODEL}") if (s.attributes or {})["gen_ai.agent.name"] == "a"
    ]
    assert chat.status.status_code.name == "ERROR"
    assert (chat.attributes or {})["error.type"] == "500"
    assert [e.name for e in chat.events].count("exception") == 1
    (agent,) = traced.named("invoke_agent a")
    assert (agent.attributes or {})["orchestrace.agent.state"] == "crashed"
    assert agent.status.status_code.name == "ERROR"


async def test_scripted_replies_survive_the_wire(api: FakeMessagesAPI, traced: Traced) -> None:
    """The scripted model's messages are valid Messages API bodies for the real client."""
    script = ScriptedModel(
        latency=0,
        policy=lambda conv: (
            Reply(tool="wait_for_message", tool_input={})
            if conv.turn == 0
            else Reply(text="ok", stop_reason="end_turn")
        ),
    )
    api.set_responder(scripted_responder(script))
    async with model_for(api, traced) as model:
        run = traced.context(model=model, config=RunConfig(model=MODEL, wait_timeout=0.01))
        run.hub.register("a")
        run.hub.register("b")
        result = await run_agent(run, AgentSpec("a", "member", "You are a.", "go"))
    assert result.text == "ok"
    tool_result = api.message_requests[1].messages[-1]["content"][0]
    assert tool_result["type"] == "tool_result"
    assert tool_result["content"] == "woke: 0.01s timeout"
