"""Tests that `FakeMessagesAPI` works with the real `anthropic.AsyncAnthropic` client."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock
from fake_messages_api import ErrorReply, FakeMessagesAPI, text_message, tool_use_message

MODEL = "claude-test-model"  # not a real model, so the SDK never warns it is deprecated


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    """A running fake, closed after the test."""
    with FakeMessagesAPI() as fake:
        yield fake


@asynccontextmanager
async def client_for(
    api: FakeMessagesAPI, max_retries: int = 2
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """A real SDK client pointed at the fake, with the SDK's own OTel spans off."""
    client = anthropic.AsyncAnthropic(
        base_url=api.url,
        api_key="sk-ant-test",
        max_retries=max_retries,
        open_telemetry={"traces": False},
    )
    async with client:
        yield client


async def create(client: anthropic.AsyncAnthropic, **overrides: Any) -> Message:
    """`messages.create` with a small default request."""
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "hello"}],
    }
    params.update(overrides)
    message: Message = await client.messages.create(**params)
    return message


@pytest.mark.asyncio
async def test_tool_use_reply_is_parsed_into_message(api: FakeMessagesAPI) -> None:
    body = api.reply_tool_use(
        "search",
        {"query": "otel genai"},
        text="Let me look.",
        input_tokens=42,
        output_tokens=7,
        cache_read_input_tokens=3,
    )
    tools = [{"name": "search", "description": "web search", "input_schema": {"type": "object"}}]
    async with client_for(api) as client:
        msg = await create(client, system="you are a researcher", tools=tools)

    assert isinstance(msg, Message)
    assert msg.id == body["id"]
    assert msg.model == MODEL  # echoed from the request
    assert msg.stop_reason == "tool_use"
    assert isinstance(msg.content[0], TextBlock)
    assert msg.content[0].text == "Let me look."
    block = msg.content[1]
    assert isinstance(block, ToolUseBlock)
    assert (block.name, block.input, block.id) == (
        "search",
        {"query": "otel genai"},
        body["content"][-1]["id"],
    )
    assert msg.usage.input_tokens == 42
    assert msg.usage.output_tokens == 7
    assert msg.usage.cache_read_input_tokens == 3
    assert msg.usage.cache_creation_input_tokens == 0
    assert msg._request_id == "req_fake000000"

    (request,) = api.requests
    assert (request.method, request.path, request.attempt, request.retry_count) == (
        "POST",
        "/v1/messages",
        1,
        0,
    )
    # anthropic 2.12 sends the api key as `authorization: Bearer ...`; older SDKs used `x-api-key`
    auth = (request.headers.get("x-api-key"), request.headers.get("authorization"))
    assert auth in (("sk-ant-test", None), (None, "Bearer sk-ant-test"))
    assert request.headers["x-stainless-retry-count"] == "0"
    assert "anthropic-version" in request.headers
    assert request.model == MODEL
    assert request.system == "you are a researcher"
    assert request.tools == tools
    assert request.messages == [{"role": "user", "content": "hello"}]
    assert request.json["max_tokens"] == 256
    assert api.pending == 0


@pytest.mark.asyncio
async def test_rate_limit_then_success(api: FakeMessagesAPI) -> None:
    api.fail(429, "rate_limit_error", "slow down")
    api.reply_text("ok")
    async with client_for(api) as client:
        msg = await create(client)

    assert isinstance(msg.content[0], TextBlock)
    assert msg.content[0].text == "ok"
    first, second = api.requests
    assert first.headers["x-stainless-retry-count"] == "0"
    assert first.attempt == 1
    assert second.headers["x-stainless-retry-count"] == "1"
    assert second.attempt == 2
    assert first.json == second.json


@pytest.mark.asyncio
async def test_overloaded_twice_then_success(api: FakeMessagesAPI) -> None:
    api.fail(529, "overloaded_error", "Overloaded", times=2)
    api.reply_text("finally")
    async with client_for(api) as client:
        msg = await create(client)

    assert isinstance(msg.content[0], TextBlock)
    assert msg.content[0].text == "finally"
    assert [r.retry_count for r in api.requests] == [0, 1, 2]
    assert [r.attempt for r in api.requests] == [1, 2, 3]


@pytest.mark.asyncio
async def test_internal_errors_exhaust_retries(api: FakeMessagesAPI) -> None:
    api.fail(500, "api_error", "boom", times=3)
    async with client_for(api, max_retries=2) as client:
        with pytest.raises(anthropic.InternalServerError) as excinfo:
            await create(client)

    err = excinfo.value
    assert err.status_code == 500
    assert err.type == "api_error"
    assert err.api_message == "boom"
    assert err.request_id == "req_fake000002"
    assert len(api.requests) == 3
    assert [r.headers["x-stainless-retry-count"] for r in api.requests] == ["0", "1", "2"]


@pytest.mark.asyncio
async def test_overloaded_error_class_and_x_should_retry_false(api: FakeMessagesAPI) -> None:
    api.fail(529, "overloaded_error", "Overloaded", headers={"x-should-retry": "false"})
    async with client_for(api) as client:
        with pytest.raises(anthropic.OverloadedError):
            await create(client)
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_non_retried_client_error(api: FakeMessagesAPI) -> None:
    api.fail(400, "invalid_request_error", "bad tools")
    async with client_for(api) as client:
        with pytest.raises(anthropic.BadRequestError) as excinfo:
            await create(client)
    assert excinfo.value.api_message == "bad tools"
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_empty_queue_fails_fast_with_explanation(api: FakeMessagesAPI) -> None:
    async with client_for(api) as client:
        with pytest.raises(anthropic.InternalServerError) as excinfo:
            await create(client)
    assert "no scripted reply" in (excinfo.value.api_message or "")
    assert len(api.requests) == 1  # x-should-retry: false, so no retries


@pytest.mark.asyncio
async def test_responder_policy_keyed_on_system_prompt(api: FakeMessagesAPI) -> None:
    def policy(request: dict[str, Any]) -> dict[str, Any] | ErrorReply:
        system = request.get("system")
        if system == "planner":
            return tool_use_message("delegate", {"to": "worker"})
        if system == "worker":
            return text_message(f"done: {request['messages'][-1]['content']}")
        return ErrorReply(400, "invalid_request_error", f"unknown agent {system!r}")

    api.set_responder(policy)
    api.fail(429)  # the queue wins over the responder
    async with client_for(api) as client:
        plan, work = await asyncio.gather(
            create(client, system="planner"),
            create(client, system="worker", messages=[{"role": "user", "content": "task 1"}]),
        )
        with pytest.raises(anthropic.BadRequestError):
            await create(client, system="stranger")

    assert isinstance(plan.content[0], ToolUseBlock)
    assert plan.content[0].name == "delegate"
    assert isinstance(work.content[0], TextBlock)
    assert work.content[0].text == "done: task 1"
    assert len(api.requests) == 4
    assert sorted(r.index for r in api.requests) == [0, 1, 2, 3]


@pytest.mark.asyncio
async def test_concurrent_requests_are_all_recorded(api: FakeMessagesAPI) -> None:
    api.set_responder(lambda request: text_message(request["messages"][0]["content"]))
    async with client_for(api) as client:
        results = await asyncio.gather(
            *(create(client, messages=[{"role": "user", "content": f"m{i}"}]) for i in range(20))
        )
    texts = [m.content[0].text for m in results if isinstance(m.content[0], TextBlock)]
    assert texts == [f"m{i}" for i in range(20)]
    assert len(api.message_requests) == 20
    assert sorted(r.index for r in api.requests) == list(range(20))


@pytest.mark.asyncio
async def test_streaming_reply(api: FakeMessagesAPI) -> None:
    api.fail(529, "overloaded_error", "Overloaded")
    body = api.reply_tool_use(
        "search", {"q": "x", "n": [1, 2]}, text="thinking out loud", output_tokens=9
    )
    async with (
        client_for(api) as client,
        client.messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        final = await stream.get_final_message()

    assert final.id == body["id"]
    assert isinstance(final.content[0], TextBlock)
    assert final.content[0].text == "thinking out loud"
    assert isinstance(final.content[1], ToolUseBlock)
    assert final.content[1].input == {
        "q": "x",
        "n": [1, 2],
    }
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 9
    assert final.usage.input_tokens == 10
    assert [r.json["stream"] for r in api.requests] == [True, True]


def test_validation_rejects_without_consuming_reply(api: FakeMessagesAPI) -> None:
    api.reply_text("kept")
    request = urllib.request.Request(
        f"{api.url}/v1/messages", data=json.dumps({"model": MODEL}).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=5)
    with excinfo.value as err:
        assert err.code == 400
        assert json.loads(err.read())["error"]["message"] == "max_tokens: Field required"
    assert api.pending == 1


def _post(api: FakeMessagesAPI) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = {"model": MODEL, "max_tokens": 1, "messages": []}
    request = urllib.request.Request(
        f"{api.url}/v1/messages?beta=true", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                json.loads(response.read()),
            )
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(err.read())


def test_response_headers_and_error_body() -> None:
    with FakeMessagesAPI() as api:
        api.fail(429, "rate_limit_error", "slow")
        api.fail(503, headers={"Retry-After": "7"})
        api.fail(400, "invalid_request_error", "bad")
        api.reply_text("hi", model="claude-explicit")

        status, headers, body = _post(api)
        assert status == 429
        assert headers["retry-after-ms"] == "1"
        assert headers["request-id"] == "req_fake000000"
        assert body == {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "slow"},
            "request_id": "req_fake000000",
        }

        # an explicit retry-after is not shadowed by retry-after-ms
        status, headers, body = _post(api)
        assert status == 503
        assert headers["retry-after"] == "7"
        assert "retry-after-ms" not in headers
        assert body["error"]["type"] == "api_error"

        status, headers, _ = _post(api)
        assert status == 400
        assert "retry-after-ms" not in headers

        status, headers, body = _post(api)
        assert status == 200
        assert headers["request-id"] == "req_fake000003"
        assert body["model"] == "claude-explicit"
        assert body["content"] == [{"type": "text", "text": "hi"}]
        assert set(body["usage"]) == {
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        }

        assert [r.query for r in api.requests] == ["beta=true"] * 4
        assert api.requests[0].retry_count is None
        assert api.requests[0].attempt == 1


def test_close_stops_serving_promptly() -> None:
    api = FakeMessagesAPI()
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=1):  # an idle keep-alive connection
        api.close()
        api.close()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=1).close()
