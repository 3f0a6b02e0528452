"""The Messages API misbehaving: timeouts, malformed and empty bodies, odd stop reasons.

Agent ``a`` talks to the real ``AsyncAnthropic`` client pointed at a local server that
misbehaves; agent ``b`` runs on the scripted model at the same time. Whatever ``a`` gets,
it ends (never hangs), its spans say why, and ``b`` finishes normally. (429 / 529 retries
and a 500 after retries are in test_anthropic_client.py.)
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from anthropic.types import Message
from fake_messages_api import FakeMessagesAPI, MessageReply, RawReply
from support import Traced

from runtime.agent import AgentResult, AgentSpec, RunConfig, run_agent
from runtime.hub import AgentState
from runtime.models import AnthropicModel, ModelRequest
from runtime.scripted import Reply, ScriptedModel

pytestmark = pytest.mark.asyncio

MODEL = "claude-test-model"


class ByAgent:
    """A ModelClient that sends agent ``a`` to one client and everyone else to another."""

    backend = "test"

    def __init__(self, for_a: AnthropicModel, others: ScriptedModel) -> None:
        self.for_a = for_a
        self.others = others

    async def create(self, request: ModelRequest) -> Message:
        client = self.for_a if request.agent == "a" else self.others
        return await client.create(request)

    async def close(self) -> None:
        await self.for_a.close()


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()
    thread.join(timeout=2)


async def run_a_and_b(
    traced: Traced, base_url: str, **client: Any
) -> tuple[AgentResult, AgentResult]:
    """Run ``a`` (real client on ``base_url``) and ``b`` (scripted, ends after one call)."""
    model = AnthropicModel(
        base_url=base_url,
        api_key="sk-test-not-a-real-key",
        tracer_provider=traced.tracer_provider,
        **{"max_retries": 2, **client},
    )
    b_says = Reply(text="b is fine", stop_reason="end_turn", think=0.01)
    others = ScriptedModel(latency=0.01, policy=lambda _conv: b_says)
    run = traced.context(model=ByAgent(model, others), config=RunConfig(model=MODEL, max_turns=4))
    run.hub.register("a")
    run.hub.register("b")
    try:
        a, b = await asyncio.gather(
            run_agent(run, AgentSpec("a", "member", "You are a.", "go")),
            run_agent(run, AgentSpec("b", "member", "You are b.", "go")),
        )
    finally:
        await run.model.close()
    assert (b.state, b.reason, b.text) == (AgentState.DONE, "end_turn", "b is fine")
    return a, b


def chats_of(traced: Traced, agent: str) -> list[Any]:
    return [
        s
        for s in traced.named(f"chat {MODEL}")
        if (s.attributes or {})["gen_ai.agent.name"] == agent
    ]


async def test_a_timeout_after_retries_crashes_that_agent_only(
    traced: Traced, black_hole: str
) -> None:
    a, _ = await run_a_and_b(traced, black_hole, timeout=0.1, max_retries=1)
    assert (a.state, a.reason) == (AgentState.CRASHED, "APITimeoutError")
    (chat,) = chats_of(traced, "a")
    attrs = chat.attributes or {}
    assert chat.status.status_code.name == "ERROR"
    assert attrs["error.type"] == "APITimeoutError"
    assert attrs["http.request.resend_count"] == 1
    failed = [e for e in chat.events if e.name == "orchestrace.model.attempt_failed"]
    assert [(e.attributes or {})["error.type"] for e in failed] == ["APITimeoutError"] * 2
    (agent,) = traced.named("invoke_agent a")
    assert agent.status.status_code.name == "ERROR"


MALFORMED = [
    pytest.param(RawReply(200, b"{not json"), id="not-json"),
    pytest.param(RawReply(200, b""), id="empty-body"),
    pytest.param(RawReply(200, [1, 2]), id="json-array"),
    pytest.param(RawReply(200, b"<html>bad gateway</html>", content_type="text/html"), id="html"),
    pytest.param(RawReply(200, {}), id="empty-object"),
    pytest.param(
        MessageReply(
            {
                "id": "msg_nousage",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "end_turn",
            }
        ),
        id="no-usage",
    ),
]


@pytest.mark.parametrize("reply", MALFORMED)
async def test_a_malformed_response_ends_that_agent_with_an_error_and_no_retry_storm(
    traced: Traced, api: FakeMessagesAPI, reply: Any
) -> None:
    api.enqueue(reply)
    api.reply_text("never reached")
    a, _ = await run_a_and_b(traced, api.url)
    assert (a.state, a.reason) == (AgentState.CRASHED, "malformed_response")
    (chat,) = chats_of(traced, "a")
    assert chat.status.status_code.name == "ERROR"
    assert (chat.attributes or {})["error.type"] == "MalformedResponseError"
    (agent,) = traced.named("invoke_agent a")
    assert agent.status.status_code.name == "ERROR"
    assert len(api.message_requests) == 1  # a 200 is not retried, and a stops at once


def _message(content: list[dict[str, Any]], stop_reason: str | None) -> MessageReply:
    return MessageReply(
        {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    )


async def test_an_empty_end_turn_ends_the_agent_normally(
    traced: Traced, api: FakeMessagesAPI
) -> None:
    api.enqueue(_message([], "end_turn"))
    a, _ = await run_a_and_b(traced, api.url)
    assert (a.state, a.reason, a.text) == (AgentState.DONE, "end_turn", "")


async def test_tool_use_without_a_tool_call_tells_the_model_and_goes_on(
    traced: Traced, api: FakeMessagesAPI
) -> None:
    api.enqueue(_message([{"type": "text", "text": "let me"}], "tool_use"))
    api.reply_text("recovered")
    a, _ = await run_a_and_b(traced, api.url)
    assert (a.reason, a.text) == ("end_turn", "recovered")
    second = api.message_requests[1].messages[-1]
    assert second == {
        "role": "user",
        "content": [{"type": "text", "text": "(stop_reason was tool_use but no tool was called)"}],
    }


@pytest.mark.parametrize(
    ("stop", "reason", "failed"),
    [
        ("max_tokens", "stop_reason:max_tokens", True),
        ("refusal", "stop_reason:refusal", True),
        ("model_context_window_exceeded", "stop_reason:model_context_window_exceeded", True),
        (None, "stop_reason:None", True),
        ("pause_turn", "end_turn", False),  # continued, then the next reply ends the turn
    ],
)
async def test_stop_reasons_over_the_wire(
    traced: Traced, api: FakeMessagesAPI, stop: str | None, reason: str, failed: bool
) -> None:
    api.enqueue(_message([{"type": "text", "text": "partial"}], stop))
    api.reply_text("finished")
    a, _ = await run_a_and_b(traced, api.url)
    assert (a.state, a.reason) == (AgentState.DONE, reason)
    (agent,) = traced.named("invoke_agent a")
    assert agent.status.status_code.name == ("ERROR" if failed else "UNSET")
    assert len(api.message_requests) == (1 if failed else 2)


async def test_an_unknown_content_block_type_does_not_crash_the_agent(
    traced: Traced, api: FakeMessagesAPI
) -> None:
    api.enqueue(
        _message([{"type": "hologram", "data": 1}, {"type": "text", "text": "hi"}], "end_turn")
    )
    a, _ = await run_a_and_b(traced, api.url)
    assert a.reason != "TypeError"
