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
from support import Traced, no_global_providers

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
    traced: Traced, base_url: str, *, stream: bool = True, **client: Any
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
    run = traced.context(
        model=ByAgent(model, others), config=RunConfig(model=MODEL, max_turns=4, stream=stream)
    )
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


def _usage_message(**usage: Any) -> MessageReply:
    return MessageReply(
        {
            "id": "msg_usage",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1, **usage},
        }
    )


def _content_message(content: list[Any]) -> MessageReply:
    return MessageReply(
        {
            "id": "msg_content",
            "type": "message",
            "role": "assistant",
            "content": content,
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    )


#: Token counts no server should send: negative (they would lower the run's token budget),
#: beyond what JSON readers hold exactly, not whole numbers.
BAD_USAGE = [
    pytest.param({"input_tokens": -1_000_000}, id="negative-input"),
    pytest.param({"output_tokens": -5}, id="negative-output"),
    pytest.param({"cache_read_input_tokens": -7}, id="negative-cache-read"),
    pytest.param({"input_tokens": 10**30}, id="huge-input"),
    pytest.param({"output_tokens": 2**63}, id="output-beyond-int64"),
    pytest.param({"cache_creation_input_tokens": 2**60}, id="huge-cache-creation"),
]
#: Only whole responses: a stream's counts go through the SDK's pydantic accumulation,
#: which coerces them (True becomes 1) or warns (2.5) before orchestrace sees them.
NOT_WHOLE_NUMBERS = [
    pytest.param({"input_tokens": 2.5}, id="fractional"),
    pytest.param({"output_tokens": True}, id="boolean"),
    pytest.param({"output_tokens": "7"}, id="a-string"),
]


@pytest.mark.parametrize(
    ("usage", "stream"),
    [
        *[pytest.param(*p.values, True, id=f"{p.id}-stream") for p in BAD_USAGE],
        *[pytest.param(*p.values, False, id=f"{p.id}-whole") for p in BAD_USAGE],
        *[pytest.param(*p.values, False, id=f"{p.id}-whole") for p in NOT_WHOLE_NUMBERS],
    ],
)
async def test_token_counts_that_cannot_be_true_are_a_malformed_response(
    traced: Traced, api: FakeMessagesAPI, usage: dict[str, Any], stream: bool
) -> None:
    api.enqueue(_usage_message(**usage))
    api.reply_text("never reached")
    a, _ = await run_a_and_b(traced, api.url, stream=stream)
    assert (a.state, a.reason) == (AgentState.CRASHED, "malformed_response")
    (chat,) = chats_of(traced, "a")
    attrs = chat.attributes or {}
    assert attrs["error.type"] == "MalformedResponseError"
    assert not any(k.startswith("gen_ai.usage.") for k in attrs)  # nothing untrue recorded
    assert len(api.message_requests) == 1


MALFORMED_CONTENT = [
    pytest.param([5], id="a-number"),
    pytest.param([None], id="null"),
    pytest.param(["text"], id="a-string"),
    pytest.param([[{"type": "text", "text": "x"}]], id="a-list"),
    pytest.param([{"text": "no type"}], id="no-type"),
    pytest.param([{"type": 7}], id="type-not-a-string"),
    pytest.param([{"type": "text", "text": 5}], id="text-not-a-string"),
    pytest.param([{"type": "tool_use", "name": "sleep"}], id="tool-use-without-id-or-input"),
    pytest.param(
        [{"type": "tool_use", "id": "toolu_1", "name": 5, "input": {}}], id="tool-name-a-number"
    ),
    pytest.param(
        [{"type": "tool_use", "id": None, "name": "sleep", "input": {"seconds": 0}}],
        id="tool-id-null",
    ),
]


@pytest.mark.parametrize("content", MALFORMED_CONTENT)
async def test_a_malformed_content_block_ends_the_agent_as_a_malformed_response(
    traced: Traced, api: FakeMessagesAPI, content: list[Any]
) -> None:
    api.enqueue(_content_message(content))
    api.reply_text("never reached")
    a, _ = await run_a_and_b(traced, api.url, stream=False)
    assert (a.state, a.reason) == (AgentState.CRASHED, "malformed_response")
    (chat,) = chats_of(traced, "a")
    assert (chat.attributes or {})["error.type"] == "MalformedResponseError"
    assert len(api.message_requests) == 1


@pytest.mark.parametrize(
    "content",
    [
        pytest.param([{"type": "tool_use", "name": "sleep"}], id="tool-use-without-id"),
        pytest.param([{"text": "no type"}], id="no-type"),
    ],
)
async def test_a_malformed_streamed_content_block_ends_the_agent_as_a_malformed_response(
    traced: Traced, api: FakeMessagesAPI, content: list[Any]
) -> None:
    api.enqueue(_content_message(content))
    api.reply_text("never reached")
    a, _ = await run_a_and_b(traced, api.url, stream=True)
    assert (a.state, a.reason) == (AgentState.CRASHED, "malformed_response")


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


def _tool_use_message(**usage: int) -> MessageReply:
    return MessageReply(
        {
            "id": "msg_tool",
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "sleep", "input": {"seconds": 0}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": usage,
        }
    )


@pytest.mark.parametrize("first_input", [20, -1_000_000], ids=["honest", "negative"])
async def test_a_negative_count_cannot_buy_more_tokens_than_the_cap(
    api: FakeMessagesAPI, tmp_path: Any, first_input: int
) -> None:
    import orchestrace
    from orchestrace import Agent, RunLimits

    for _ in range(5):
        api.enqueue(_tool_use_message(input_tokens=first_input, output_tokens=20))
    model = AnthropicModel(base_url=api.url, api_key="sk-test-not-a-real-key", max_retries=0)
    with no_global_providers():
        result = await orchestrace.run(
            Agent("solo", "x", task="go"),
            model=model,
            limits=RunLimits(max_tokens_total=30),
            spans_file=tmp_path / "spans.jsonl",
        )
    await model.close()
    # honest: 40 tokens cross the cap of 30, the next call is refused; a negative count
    # is a malformed response, so it never lowers what the run has used
    expected = "limit:max_tokens_total" if first_input > 0 else "malformed_response"
    assert result.lead.reason == expected
    assert len(api.message_requests) == 1


@pytest.mark.parametrize(
    ("input_tokens", "reason"),
    [(2**53 - 1, "end_turn"), (2**63, "malformed_response"), (10**30, "malformed_response")],
    ids=["largest-believed", "beyond-int64", "absurd"],
)
async def test_the_live_summary_and_the_spans_file_summary_agree_on_any_count(
    api: FakeMessagesAPI, tmp_path: Any, input_tokens: int, reason: str
) -> None:
    import orchestrace
    from orchestrace import Agent
    from telemetry.summary_file import summarize_file

    api.enqueue(_usage_message(input_tokens=input_tokens))
    model = AnthropicModel(base_url=api.url, api_key="sk-test-not-a-real-key", max_retries=0)
    path = tmp_path / "spans.jsonl"
    with no_global_providers():
        result = await orchestrace.run(Agent("solo", "x", task="go"), model=model, spans_file=path)
    await model.close()
    assert result.lead.reason == reason
    assert result.summary is not None
    live = result.summary.render()
    assert live == summarize_file(path)
    assert (str(input_tokens) in live) == (reason == "end_turn")
