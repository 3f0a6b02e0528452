"""Streamed model calls: the real ``AsyncAnthropic`` streaming from a local server that
sends server-sent events as the Messages API does (message_start, content_block_start, a
ping, text_delta and input_json_delta deltas, content_block_stop, message_delta,
message_stop), and the scripted model streaming on a fake clock.

A streamed call gives the agent loop the Message it gets without streaming, plus the time
to its first token (a span event and attribute) and the histograms of time to first chunk
and time per output token. What goes wrong mid-stream — an ``overloaded_error`` event, a
dropped connection, a stall — ends the same way as the same failure without a stream
(outcome, span status, error.type), and the ``chat`` span says which attempt failed and
what was retried. Timeouts here are hang detectors, never speed bars.
"""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import Message
from fake_messages_api import (
    FakeMessagesAPI,
    StreamReply,
    text_message,
    tool_use_message,
)
from support import Traced

import orchestrace
from orchestrace import Agent, ConfigurationError, Team
from runtime.agent import AgentResult, AgentSpec, RunConfig, run_agent
from runtime.cli import build_parser, main
from runtime.hub import AgentState
from runtime.models import AnthropicModel, ModelClient, ModelRequest
from runtime.scripted import FIRST_TOKEN_SHARE, Reply, ScriptedModel
from runtime.tools import tool
from telemetry.otlp_json import iter_spans_file

MODEL = "claude-test-model"
TTFT = "gen_ai.response.time_to_first_chunk"
FIRST_TOKEN = "orchestrace.model.first_token"
ATTEMPT_FAILED = "orchestrace.model.attempt_failed"
RESEND = "http.request.resend_count"
#: Hang detector for one agent's run (a stalled stream takes two 0.5 s timeouts).
HANG = 60.0


@tool
def lookup(topic: str) -> str:
    """Look a topic up in the notes."""
    return f"notes on {topic}"


#: The two replies of the conversation, with fixed ids so both modes get the same bodies.
TOOL_TURN = tool_use_message(
    "lookup",
    {"topic": "span links", "depth": [1, 2]},
    text="Let me look that up.",
    tool_use_id="toolu_fixed_0001",
    message_id="msg_fixed_0001",
    input_tokens=40,
    output_tokens=21,
    cache_read_input_tokens=7,
)
ANSWER_TURN = text_message(
    "A span link ties a span to the one that caused it, across traces.",
    message_id="msg_fixed_0002",
    input_tokens=60,
    output_tokens=15,
)


def two_turns(body: dict[str, Any]) -> dict[str, Any]:
    """The tool call on the first turn, the answer after it."""
    turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
    return TOOL_TURN if turn == 0 else ANSWER_TURN


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


class Recording:
    """A ModelClient that keeps every Message the agent loop was given."""

    backend = "anthropic"

    def __init__(self, inner: ModelClient) -> None:
        self.inner = inner
        self.messages: list[Message] = []

    async def create(self, request: ModelRequest) -> Message:
        message = await self.inner.create(request)
        self.messages.append(message)
        return message

    async def close(self) -> None:
        await self.inner.close()


def model_for(api: FakeMessagesAPI, traced: Traced, **kw: Any) -> AnthropicModel:
    """The real client on the fake API, retrying a broken stream without a pause."""
    model = AnthropicModel(
        base_url=api.url,
        api_key="sk-test-not-a-real-key",
        tracer_provider=traced.tracer_provider,
        **{"max_retries": 2, **kw},
    )
    model.stream_retry_delay = 0.001
    return model


async def run_a(traced: Traced, model: ModelClient, *, stream: bool) -> AgentResult:
    """Agent ``a`` (with the lookup tool) to its end, then the client closed."""
    run = traced.context(model=model, config=RunConfig(model=MODEL, stream=stream, max_turns=4))
    run.hub.register("a")
    spec = AgentSpec("a", "member", "You are a.", "What is a span link?", tools=[lookup])
    try:
        return await asyncio.wait_for(run_agent(run, spec), HANG)
    finally:
        await model.close()


def attrs(item: Any) -> dict[str, Any]:
    return dict(item.attributes or {})


def events(span: Any, name: str) -> list[dict[str, Any]]:
    return [attrs(e) for e in span.events if e.name == name]


def histograms(traced: Traced) -> dict[str, list[tuple[dict[str, Any], int, float]]]:
    """Each histogram's points: (attributes, count, sum)."""
    data = traced.metrics.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], int, float]]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    if hasattr(point, "bucket_counts"):
                        found.setdefault(metric.name, []).append(
                            (dict(point.attributes or {}), point.count, point.sum)
                        )
    return found


def attempt_counts(traced: Traced) -> dict[tuple[tuple[str, Any], ...], float]:
    """``orchestrace.model.attempts``: attribute set (sorted items) → count."""
    data = traced.metrics.get_metrics_data()
    assert data is not None
    return {
        tuple(sorted((point.attributes or {}).items())): point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "orchestrace.model.attempts"
        for point in metric.data.data_points
    }


# --- the wire --------------------------------------------------------------------------------
def test_the_fake_api_streams_events_as_the_messages_api_does(api: FakeMessagesAPI) -> None:
    api.reply(TOOL_TURN)
    body = {"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user"}]}
    request = urllib.request.Request(
        f"{api.url}/v1/messages", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=HANG) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Transfer-Encoding"] == "chunked"
        raw = response.read().decode()
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\ndata: ")[1]))
        for block in raw.strip().split("\n\n")
    ]
    kinds = [name for name, _ in events]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    text = [d["text"] for d in deltas if d["type"] == "text_delta"]
    partial = [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"]
    assert len(text) > 1
    assert "".join(text) == TOOL_TURN["content"][0]["text"]
    assert partial[0] == ""  # the API opens a tool's input with an empty delta
    assert json.loads("".join(partial)) == TOOL_TURN["content"][1]["input"]
    start = events[0][1]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == (
        [],
        None,
        1,
    )
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


# --- a normal stream --------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_streamed_call_gives_the_agent_loop_the_same_message(
    api: FakeMessagesAPI, traced: Traced
) -> None:
    api.set_responder(two_turns)
    seen: dict[bool, tuple[AgentResult, list[dict[str, Any]]]] = {}
    for stream in (False, True):
        model = Recording(model_for(api, traced))
        result = await run_a(traced, model, stream=stream)
        seen[stream] = (result, [m.model_dump(mode="json") for m in model.messages])
    plain, streamed = seen[False], seen[True]
    assert streamed == plain
    assert streamed[0].text == ANSWER_TURN["content"][0]["text"]
    requests = api.message_requests
    assert [r.json.get("stream", False) for r in requests] == [False, False, True, True]
    # The agent loop built the same next request from either Message.
    assert requests[3].messages == requests[1].messages
    assert requests[3].messages[1]["content"][1]["input"] == {
        "topic": "span links",
        "depth": [1, 2],
    }

    chats = traced.named(f"chat {MODEL}")
    by_mode = {
        m: [c for c in chats if attrs(c)["gen_ai.request.stream"] is m] for m in (True, False)
    }
    assert [len(by_mode[True]), len(by_mode[False])] == [2, 2]
    for chat in by_mode[False]:
        assert TTFT not in attrs(chat)
        assert not events(chat, FIRST_TOKEN)
    for chat in by_mode[True]:
        assert chat.status.status_code.name == "UNSET"
        (first,) = events(chat, FIRST_TOKEN)
        assert first[RESEND] == 0
        assert first[TTFT] == attrs(chat)[TTFT] > 0
        assert not events(chat, ATTEMPT_FAILED)
    # The same token usage either way.
    usage = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.response.id")
    assert [[attrs(c)[k] for k in usage] for c in by_mode[True]] == [
        [attrs(c)[k] for k in usage] for c in by_mode[False]
    ]

    points = histograms(traced)
    durations = points["gen_ai.client.operation.duration"]
    (ttft,) = points["gen_ai.client.operation.time_to_first_chunk"]
    (per_token,) = points["orchestrace.model.time_per_output_token"]
    # The attributes of the operation-duration metric, and only the streamed calls counted.
    assert ttft[0] == per_token[0] == durations[0][0]
    assert ttft[0]["gen_ai.response.model"] == MODEL
    assert [ttft[1], per_token[1]] == [2, 2]
    assert ttft[2] == pytest.approx(sum(attrs(c)[TTFT] for c in by_mode[True]))


@pytest.mark.asyncio
async def test_a_stream_with_no_content_has_no_first_token(
    api: FakeMessagesAPI, traced: Traced
) -> None:
    empty = text_message("", output_tokens=1)
    empty["content"] = []
    api.reply(empty)
    result = await run_a(traced, model_for(api, traced), stream=True)
    assert (result.state, result.reason, result.text) == (AgentState.DONE, "end_turn", "")
    (chat,) = traced.named("chat ")
    assert TTFT not in attrs(chat)
    assert not events(chat, FIRST_TOKEN)
    assert "gen_ai.client.operation.time_to_first_chunk" not in histograms(traced)


# --- what goes wrong mid-stream, beside the same failure without a stream ----------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["plain-529", "overloaded-mid-stream"])
async def test_overloaded_once_is_retried_and_the_retry_recorded(
    api: FakeMessagesAPI, traced: Traced, stream: bool
) -> None:
    if stream:
        # After message_start, content_block_start, ping and a first delta: mid-answer.
        api.enqueue(StreamReply(ANSWER_TURN, cut="error", after=4))
    else:
        api.fail(529, "overloaded_error", "Overloaded")
    api.reply(ANSWER_TURN)
    result = await run_a(traced, model_for(api, traced), stream=stream)
    assert (result.state, result.reason) == (AgentState.DONE, "end_turn")
    assert result.text == ANSWER_TURN["content"][0]["text"]
    assert len(api.message_requests) == 2
    (chat,) = traced.named("chat ")
    assert chat.status.status_code.name == "UNSET"
    assert attrs(chat)[RESEND] == 1
    (failed,) = events(chat, ATTEMPT_FAILED)
    assert (failed[RESEND], failed["error.type"]) == (0, "529")
    if stream:
        # The HTTP status was the stream's 200; the error event came after it.
        assert failed["http.response.status_code"] == 200
        assert failed["orchestrace.model.failed_mid_stream"] is True
        first_tokens = events(chat, FIRST_TOKEN)
        assert [e[RESEND] for e in first_tokens] == [0, 1]  # each attempt's first token
        assert attrs(chat)[TTFT] == first_tokens[1][TTFT]  # the answer's: the retry's
    else:
        assert failed["http.response.status_code"] == 529
        assert "orchestrace.model.failed_mid_stream" not in failed
    # The call succeeded, but its failed attempt is counted (what the retry-storm alert reads).
    call = (
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "anthropic"),
        ("gen_ai.request.model", MODEL),
    )
    failed_status = "200" if stream else "529"
    assert attempt_counts(traced) == {
        tuple(
            sorted([*call, ("error.type", "529"), ("http.response.status_code", failed_status)])
        ): 1,
        tuple(sorted([*call, ("http.response.status_code", "200")])): 1,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["plain-529", "overloaded-mid-stream"])
async def test_overloaded_on_every_attempt_crashes_the_agent_alike(
    api: FakeMessagesAPI, traced: Traced, stream: bool
) -> None:
    for _ in range(3):
        if stream:
            api.enqueue(StreamReply(ANSWER_TURN, cut="error", after=4))
        else:
            api.fail(529, "overloaded_error", "Overloaded")
    api.reply(ANSWER_TURN)  # never reached: the first attempt and two retries fail
    result = await run_a(traced, model_for(api, traced), stream=stream)
    assert (result.state, result.reason) == (AgentState.CRASHED, "OverloadedError")
    assert len(api.message_requests) == 3
    assert api.pending == 1
    (chat,) = traced.named("chat ")
    chat_attrs = attrs(chat)
    assert chat.status.status_code.name == "ERROR"
    assert (chat_attrs["error.type"], chat_attrs[RESEND]) == ("529", 2)
    failed = events(chat, ATTEMPT_FAILED)
    assert [(e[RESEND], e["error.type"]) for e in failed] == [(0, "529"), (1, "529"), (2, "529")]
    assert [e.name for e in chat.events].count("exception") == 1
    (agent,) = traced.named("invoke_agent a")
    assert agent.status.status_code.name == "ERROR"
    ttft = histograms(traced).get("gen_ai.client.operation.time_to_first_chunk", [])
    if stream:
        # The last attempt's first token came before its error: recorded, as failed.
        assert chat_attrs[TTFT] == events(chat, FIRST_TOKEN)[-1][TTFT]
        assert [(p[0]["error.type"], p[1]) for p in ttft] == [("529", 1)]
    else:
        assert TTFT not in chat_attrs
        assert ttft == []
    assert "orchestrace.model.time_per_output_token" not in histograms(traced)


@pytest.mark.asyncio
async def test_a_failed_call_in_the_latest_conventions(
    api: FakeMessagesAPI, traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: a stream that never
    finished reports the finish reason ``error``; the inference metrics and the agent's
    invocation carry error.type."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    for _ in range(3):
        api.enqueue(StreamReply(ANSWER_TURN, cut="error", after=4))
    result = await run_a(traced, model_for(api, traced), stream=True)
    assert (result.state, result.reason) == (AgentState.CRASHED, "OverloadedError")
    (chat,) = traced.named("chat ")
    assert attrs(chat)["gen_ai.response.finish_reasons"] == ("error",)
    found = histograms(traced)
    assert "gen_ai.client.operation.duration" not in found
    [(call, _, _)] = found["gen_ai.client.inference.duration"]
    [(first, _, _)] = found["gen_ai.client.inference.time_to_first_chunk"]
    assert call["error.type"] == first["error.type"] == "529"
    [(agent, count, _)] = found["gen_ai.invocation.duration"]
    assert (agent["gen_ai.operation.name"], agent["error.type"], count) == (
        "invoke_agent",
        "529",  # as on its span: the HTTP status the API gives the error
        1,
    )
    assert [p[1:] for p in found["gen_ai.invoke_agent.inference_calls"]] == [(1, 1.0)]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_dropped_connection_is_retried_as_a_connection_error(
    api: FakeMessagesAPI, traced: Traced, stream: bool
) -> None:
    # Streamed: dropped after the first delta; plain: after half the JSON body.
    api.enqueue(StreamReply(ANSWER_TURN, cut="drop", after=4))
    api.reply(ANSWER_TURN)
    result = await run_a(traced, model_for(api, traced), stream=stream)
    assert (result.state, result.reason) == (AgentState.DONE, "end_turn")
    assert result.text == ANSWER_TURN["content"][0]["text"]
    assert len(api.message_requests) == 2
    (chat,) = traced.named("chat ")
    assert chat.status.status_code.name == "UNSET"
    assert attrs(chat)[RESEND] == 1
    (failed,) = events(chat, ATTEMPT_FAILED)
    assert (failed[RESEND], failed["error.type"]) == (0, "APIConnectionError")
    assert failed.get("orchestrace.model.failed_mid_stream", False) is stream


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_dropped_connection_every_time_crashes_the_agent_alike(
    api: FakeMessagesAPI, traced: Traced, stream: bool
) -> None:
    for _ in range(3):
        api.enqueue(StreamReply(ANSWER_TURN, cut="drop", after=4))
    result = await run_a(traced, model_for(api, traced), stream=stream)
    assert (result.state, result.reason) == (AgentState.CRASHED, "APIConnectionError")
    assert len(api.message_requests) == 3
    (chat,) = traced.named("chat ")
    assert chat.status.status_code.name == "ERROR"
    assert (attrs(chat)["error.type"], attrs(chat)[RESEND]) == ("APIConnectionError", 2)
    failed = events(chat, ATTEMPT_FAILED)
    assert [(e[RESEND], e["error.type"]) for e in failed] == [
        (n, "APIConnectionError") for n in range(3)
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_stall_ends_after_the_model_timeout_like_a_silent_server(
    api: FakeMessagesAPI, traced: Traced, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setenv("ORCHESTRACE_MODEL_TIMEOUT", "0.5")
    monkeypatch.setenv("ORCHESTRACE_MODEL_RETRIES", "1")
    # Streamed: nothing more after the first delta; plain: nothing after half the body.
    api.enqueue(*[StreamReply(ANSWER_TURN, cut="stall", after=4)] * 2)
    model = AnthropicModel(
        base_url=api.url, api_key="sk-test-not-a-real-key", tracer_provider=traced.tracer_provider
    )
    model.stream_retry_delay = 0.001
    result = await run_a(traced, model, stream=stream)
    assert (result.state, result.reason) == (AgentState.CRASHED, "APITimeoutError")
    assert len(api.message_requests) == 2  # the first attempt and one retry
    (chat,) = traced.named("chat ")
    assert chat.status.status_code.name == "ERROR"
    assert (attrs(chat)["error.type"], attrs(chat)[RESEND]) == ("APITimeoutError", 1)
    failed = events(chat, ATTEMPT_FAILED)
    assert [(e[RESEND], e["error.type"]) for e in failed] == [
        (0, "APITimeoutError"),
        (1, "APITimeoutError"),
    ]
    assert [e.get("orchestrace.model.failed_mid_stream", False) for e in failed] == [stream] * 2
    # Each streamed attempt got as far as its first token before it stalled.
    assert [e[RESEND] for e in events(chat, FIRST_TOKEN)] == ([0, 1] if stream else [])


@pytest.mark.asyncio
@pytest.mark.parametrize(("retries", "completed"), [(2, True), (1, False)])
async def test_retries_before_and_within_streams_share_one_budget(
    api: FakeMessagesAPI, traced: Traced, retries: int, completed: bool
) -> None:
    api.fail(529, "overloaded_error", "Overloaded")  # retried by the SDK, before a stream
    api.enqueue(StreamReply(ANSWER_TURN, cut="error", after=1))  # retried here, mid-stream
    api.reply(ANSWER_TURN)
    result = await run_a(traced, model_for(api, traced, max_retries=retries), stream=True)
    assert result.reason == ("end_turn" if completed else "OverloadedError")
    assert len(api.message_requests) == retries + 1
    (chat,) = traced.named("chat ")
    failed = events(chat, ATTEMPT_FAILED)
    assert [(e[RESEND], e.get("http.response.status_code")) for e in failed] == [(0, 529), (1, 200)]
    assert attrs(chat)[RESEND] == retries


@pytest.mark.asyncio
async def test_an_error_event_that_is_not_retried_ends_the_agent_at_once(
    api: FakeMessagesAPI, traced: Traced
) -> None:
    api.enqueue(
        StreamReply(
            ANSWER_TURN,
            cut="error",
            after=2,
            error_type="invalid_request_error",
            error_message="no",
        )
    )
    api.reply(ANSWER_TURN)
    result = await run_a(traced, model_for(api, traced), stream=True)
    assert (result.state, result.reason) == (AgentState.CRASHED, "BadRequestError")
    assert len(api.message_requests) == 1
    (chat,) = traced.named("chat ")
    assert attrs(chat)["error.type"] == "400"


@pytest.mark.asyncio
async def test_paced_events_arrive_one_by_one(api: FakeMessagesAPI, traced: Traced) -> None:
    # Every event a few milliseconds apart: the first token is marked on its arrival, not
    # when the stream ends (an ordering, not a speed bar).
    api.enqueue(StreamReply(ANSWER_TURN, interval=0.02))
    result = await run_a(traced, model_for(api, traced), stream=True)
    assert result.reason == "end_turn"
    (chat,) = traced.named("chat ")
    (first,) = [e for e in chat.events if e.name == FIRST_TOKEN]
    assert chat.start_time is not None
    assert chat.end_time is not None
    assert chat.start_time < first.timestamp < chat.end_time
    (per_token,) = histograms(traced)["orchestrace.model.time_per_output_token"]
    assert per_token[1] == 1
    assert per_token[2] > 0


# --- the scripted model, on a fake clock --------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_scripted_model_streams_with_exact_figures(traced: Traced) -> None:
    script = [
        Reply.call("lookup", topic="span links", think=1.0),
        Reply.say("Span links tie spans together.", think=2.0),
        Reply(stop_reason="end_turn"),  # never reached
    ]
    model = ScriptedModel(latency=0.5, scripts={"a": script})
    run = traced.context(model=model, config=RunConfig(model=MODEL, stream=True))
    run.hub.register("a")
    result = await run_agent(run, AgentSpec("a", "member", "You are a.", "go", tools=[lookup]))
    assert result.reason == "end_turn"
    chats = sorted(traced.named("chat "), key=lambda s: s.start_time or 0)
    assert FIRST_TOKEN_SHARE == 0.4
    assert [attrs(c)[TTFT] for c in chats] == [0.2, 0.4]  # 0.4 of 0.5 s, and of 1.0 s
    assert [events(c, FIRST_TOKEN)[0][TTFT] for c in chats] == [0.2, 0.4]
    outputs = [attrs(c)["gen_ai.usage.output_tokens"] for c in chats]
    points = histograms(traced)
    (ttft,) = points["gen_ai.client.operation.time_to_first_chunk"]
    (per_token,) = points["orchestrace.model.time_per_output_token"]
    assert (ttft[1], ttft[2]) == (2, pytest.approx(0.6, abs=1e-12))
    expected = 0.3 / (outputs[0] - 1) + 0.6 / (outputs[1] - 1)  # the rest of each latency
    assert (per_token[1], per_token[2]) == (2, pytest.approx(expected, abs=1e-9))


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_scripted_model_without_streaming_records_no_first_token(
    traced: Traced,
) -> None:
    model = ScriptedModel(latency=0.5, scripts={"a": [Reply.say("hi")]})
    run = traced.context(model=model, config=RunConfig(model=MODEL, stream=False))
    run.hub.register("a")
    await run_agent(run, AgentSpec("a", "member", "You are a.", "go"))
    (chat,) = traced.named("chat ")
    assert attrs(chat)["gen_ai.request.stream"] is False
    assert TTFT not in attrs(chat)
    assert not events(chat, FIRST_TOKEN)
    assert "gen_ai.client.operation.time_to_first_chunk" not in histograms(traced)


# --- the settings: run(stream=...), Agent(stream=...), orchestrace run --[no-]stream -----------
@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize(
    ("run_stream", "lead_stream", "member_stream", "expected"),
    [
        (True, None, None, {"lead": True, "b": True}),
        (False, None, None, {"lead": False, "b": False}),
        (True, False, None, {"lead": False, "b": True}),
        (False, None, True, {"lead": False, "b": True}),
    ],
)
async def test_an_agent_s_stream_setting_overrides_the_run_s(
    traced: Traced,
    run_stream: bool,
    lead_stream: bool | None,
    member_stream: bool | None,
    expected: dict[str, bool],
) -> None:
    team = Team(
        "pair",
        [
            Agent("lead", "Lead.", task="go", stream=lead_stream, script=[Reply.say("done")]),
            Agent("b", "Member.", stream=member_stream, script=[Reply.say("b done")]),
        ],
    )
    result = await orchestrace.run(
        team,
        offline=True,
        stream=run_stream,
        tracer_provider=traced.tracer_provider,
        meter_provider=traced.meter_provider,
    )
    assert result.completed
    streamed = {
        attrs(c)["gen_ai.agent.name"]: attrs(c)["gen_ai.request.stream"]
        for c in traced.named("chat ")
    }
    assert streamed == expected
    for chat in traced.named("chat "):
        assert (TTFT in attrs(chat)) is attrs(chat)["gen_ai.request.stream"]


def test_agent_stream_must_be_a_bool_or_none() -> None:
    with pytest.raises(ConfigurationError, match="stream must be True, False or None"):
        Agent("a", stream="yes")  # type: ignore[arg-type]


def test_the_command_streams_unless_told_not_to(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "spawn"]).stream is True
    assert parser.parse_args(["run", "spawn", "--no-stream"]).stream is False
    assert parser.parse_args(["run", "spawn", "--stream"]).stream is True
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--stream, --no-stream" in capsys.readouterr().out


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize("flag", ["--stream", "--no-stream"])
def test_orchestrace_run_records_what_it_was_told(tmp_path: Path, flag: str) -> None:
    spans = tmp_path / "spans.jsonl"
    out = io.StringIO()
    code = main(
        [
            "run",
            "team",
            "--offline",
            "--quiet",
            "--time-scale",
            "0",
            flag,
            "--spans-file",
            str(spans),
        ],
        out=out,
    )
    assert code == 0, out.getvalue()
    chats = [s for s in iter_spans_file(spans) if s.name.startswith("chat ")]
    assert chats
    streamed = flag == "--stream"
    for chat in chats:
        assert chat.attributes["gen_ai.request.stream"] is streamed
        assert (TTFT in chat.attributes) is streamed
        assert any(e.name == FIRST_TOKEN for e in chat.events) is streamed
