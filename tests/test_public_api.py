"""The public API, used as an application would: ``@tool`` schemas and validation, tool
results, ToolContext, Agent and Team, run / run_sync / RunResult, override, and the manners
of a library (no stdout, logs through stdlib logging, no global telemetry of its own)."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Optional

import pydantic
import pytest
import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.util._once import Once
from support import Recorder, Traced

import orchestrace
from orchestrace import (
    Agent,
    AgentState,
    ConfigurationError,
    Conversation,
    Reply,
    RunResult,
    ScriptedModel,
    Team,
    ToolContext,
    ToolError,
    UnknownAgentError,
    override,
    run,
    run_sync,
    tool,
)
from runtime.teams import DEFAULT_MEMBER_TASK

ROOT = Path(__file__).resolve().parent.parent
END = Reply.say("fin")


async def run_in(traced: Traced, team: Team | Agent, task: str | None = "go", **kw: Any):
    """``orchestrace.run`` recording into ``traced``'s providers."""
    return await run(
        team,
        task,
        tracer_provider=traced.tracer_provider,
        meter_provider=traced.meter_provider,
        **kw,
    )


def recorded(rec: Recorder) -> ScriptedModel:
    return ScriptedModel(policy=rec, latency=1)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def of_agent(spans: list[ReadableSpan], agent: str) -> list[ReadableSpan]:
    return [s for s in spans if attrs(s).get("gen_ai.agent.name") == agent]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


class Watcher:
    """A script (a list of replies) that also keeps every Conversation it was asked about."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = replies
        self.seen: list[Conversation] = []

    def __call__(self, conv: Conversation) -> Reply:
        self.seen.append(conv)
        return self.replies[conv.turn] if conv.turn < len(self.replies) else END

    @property
    def tools(self) -> set[str]:
        return self.seen[0].tools

    def schema(self, name: str) -> dict[str, Any]:
        return next(t for t in self.seen[0].request.tools if t["name"] == name)


# --- @tool: the schema ----------------------------------------------------------------------
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Person(pydantic.BaseModel):
    name: str
    age: int | None = None


@tool
def everything(
    s: str,
    i: int,
    f: float,
    b: bool,
    lit: Literal["a", "b"],
    color: Color,
    opt: Optional[int],  # noqa: UP045 - the typing spelling is part of what is tested
    maybe: int | None,
    items: list[str],
    mapping: dict[str, int],
    point: Point,
    person: Person,
    dflt: int = 3,
) -> str:
    """Take one of everything.

    The long description,
    over two lines.

    Args:
        s: a string
        i: an integer
    """
    return "ok"


def _walk(schema: object) -> Iterator[tuple[str, object]]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk(value)


def test_the_schema_comes_from_the_signature_and_the_docstring() -> None:
    schema = everything.schema
    assert schema["name"] == "everything"
    assert (
        schema["description"] == "Take one of everything.\n\nThe long description,\nover two lines."
    )
    nullable_int = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert schema["input_schema"] == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "s": {"type": "string", "description": "a string"},
            "i": {"type": "integer", "description": "an integer"},
            "f": {"type": "number"},
            "b": {"type": "boolean"},
            "lit": {"type": "string", "enum": ["a", "b"]},
            "color": {"$ref": "#/$defs/Color"},
            "opt": nullable_int,
            "maybe": nullable_int,
            "items": {"type": "array", "items": {"type": "string"}},
            "mapping": {"type": "object", "additionalProperties": {"type": "integer"}},
            "point": {"$ref": "#/$defs/Point"},
            "person": {"$ref": "#/$defs/Person"},
            "dflt": {"type": "integer", "default": 3},
        },
        "required": [
            "s",
            "i",
            "f",
            "b",
            "lit",
            "color",
            "opt",
            "maybe",
            "items",
            "mapping",
            "point",
            "person",
        ],
        "$defs": {
            "Color": {"type": "string", "enum": ["red", "blue"]},
            "Point": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
                "required": ["x"],
            },
            "Person": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {**nullable_int, "default": None},
                },
                "required": ["name"],
            },
        },
    }
    assert [key for key, _ in _walk(schema) if key == "title"] == []


def test_a_parameter_named_title_is_kept() -> None:
    @tool
    def rename(title: str) -> str:
        """Rename the page."""
        return title

    assert rename.schema["input_schema"]["properties"] == {"title": {"type": "string"}}
    assert rename.schema["input_schema"]["required"] == ["title"]


def google(topic: str, limit: int = 3) -> str:
    """Look up a topic.

    Args:
        topic: what to look up
        limit: how many notes at most
    """
    return topic


def numpy(topic: str, limit: int = 3) -> str:
    """Look up a topic.

    Parameters
    ----------
    topic : str
        what to look up
    limit : int
        how many notes at most
    """
    return topic


def rest(topic: str, limit: int = 3) -> str:
    """Look up a topic.

    :param topic: what to look up
    :param limit: how many notes at most
    """
    return topic


@pytest.mark.parametrize("func", [google, numpy, rest], ids=["google", "numpy", "rest"])
def test_parameter_descriptions_in_each_docstring_style(func: Callable[..., str]) -> None:
    made = tool(func)
    assert made.schema["description"] == "Look up a topic."
    assert made.schema["input_schema"] == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "topic": {"type": "string", "description": "what to look up"},
            "limit": {"type": "integer", "default": 3, "description": "how many notes at most"},
        },
        "required": ["topic"],
    }


def test_a_tool_context_first_parameter_is_not_shown_to_the_model() -> None:
    @tool
    async def notify(ctx: ToolContext, text: str) -> str:
        """Tell someone."""
        return text

    assert notify.schema["input_schema"]["properties"] == {"text": {"type": "string"}}
    assert notify.schema["input_schema"]["required"] == ["text"]


def test_name_and_description_can_be_given() -> None:
    @tool(name="find_notes", description="Find the team's notes.")
    def lookup(topic: str) -> str:
        """Not this text."""
        return topic

    assert lookup.name == "find_notes"
    assert lookup.schema["name"] == "find_notes"
    assert lookup.schema["description"] == "Find the team's notes."


def test_a_decorated_function_stays_callable() -> None:
    @tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    @tool
    async def double(n: int) -> int:
        """Double a number."""
        return 2 * n

    assert add(2, 3) == 5
    assert add(a=4) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert asyncio.run(double(21)) == 42


def _star_args(*names: str) -> str:
    return ""


def _star_kwargs(topic: str, **extra: str) -> str:
    return ""


def _context_second(topic: str, ctx: ToolContext) -> str:
    return ""


def _positional_only(topic: str, /) -> str:
    return ""


def _unresolvable(topic: NoSuchType) -> str:  # type: ignore[name-defined]  # noqa: F821
    return ""


@pytest.mark.parametrize(
    ("func", "problem"),
    [
        (_star_args, "*args and **kwargs"),
        (_star_kwargs, "*args and **kwargs"),
        (_context_second, "ToolContext must be the first parameter"),
        (_positional_only, "positional-only parameter 'topic'"),
        (_unresolvable, "cannot resolve the type hints"),
    ],
)
def test_a_signature_a_model_cannot_call_is_refused_at_decoration(
    func: Callable[..., str], problem: str
) -> None:
    with pytest.raises(TypeError, match=rf"@tool {func.__name__}: .*{re.escape(problem)}"):
        tool(func)


# --- @tool: validation in a run -------------------------------------------------------------
@tool
def place(n: int, point: Point | None = None) -> str:
    """Place ``n`` at a point."""
    return f"placed {n}"


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "n: Field required"),
        ({"n": "seven"}, "n: Input should be a valid integer"),
        ({"n": 1, "m": 2}, "m: Extra inputs are not permitted"),
        ({"n": 1, "point": {"x": "far"}}, "point.x: Input should be a valid integer"),
        ({"n": 1, "point": {"x": 1, "z": 2}}, "point.z: Unexpected keyword argument"),
    ],
    ids=["missing", "wrong-type", "unknown", "nested-wrong-type", "nested-unknown"],
)
async def test_bad_input_is_an_error_result_naming_the_field(
    traced: Traced, arguments: dict[str, Any], problem: str
) -> None:
    rec = Recorder({"solo": [Reply.call("place", **arguments), Reply.call("place", n=2), END]})
    result = await run_in(traced, Agent("solo", tools=[place]), model=recorded(rec))
    bad, good = rec.tool_results("solo")
    assert bad["is_error"] is True
    assert bad["content"].startswith("error: invalid input for place: ")
    assert problem in bad["content"]
    assert good == {
        "type": "tool_result",
        "tool_use_id": good["tool_use_id"],
        "content": "placed 2",
    }
    first, second = traced.named("execute_tool place")
    assert attrs(first)["error.type"] == "invalid_input"
    assert attrs(first)["orchestrace.tool.is_error"] is True
    assert first.status.status_code.name == "ERROR"
    assert attrs(second)["orchestrace.tool.is_error"] is False
    assert "error.type" not in attrs(second)
    assert (result.text, result.completed) == ("fin", True)


@tool
def refuse(reason: str) -> str:
    """Refuse politely."""
    raise ToolError(f"not today: {reason}")


@tool
def over_quota() -> str:
    """Always over quota."""
    raise ToolError("quota used up", kind="quota")


@tool
def broken() -> str:
    """Always broken."""
    raise ValueError("disk on fire")


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_tool_error_and_a_crash_are_error_results_and_the_agent_goes_on(
    traced: Traced,
) -> None:
    rec = Recorder(
        {
            "solo": [
                Reply.call("refuse", reason="busy"),
                Reply.call("over_quota"),
                Reply.call("broken"),
                END,
            ]
        }
    )
    solo = Agent("solo", tools=[refuse, over_quota, broken])
    result = await run_in(traced, solo, model=recorded(rec))
    assert [(r["content"], r["is_error"]) for r in rec.tool_results("solo")] == [
        ("error: not today: busy", True),
        ("error: quota used up", True),
        ("error: tool broken failed: ValueError: disk on fire", True),
    ]
    assert result.completed
    (refused,) = traced.named("execute_tool refuse")
    assert refused.events == ()  # a ToolError is the tool's answer, not a bug
    assert attrs(refused)["orchestrace.tool.is_error"] is True
    (quota,) = traced.named("execute_tool over_quota")
    assert attrs(quota)["error.type"] == "quota"
    (crashed,) = traced.named("execute_tool broken")
    assert attrs(crashed)["error.type"] == "ValueError"
    assert attrs(crashed)["orchestrace.tool.is_error"] is True
    (event,) = crashed.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"


# --- sync and async tools --------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_sync_tools_run_in_a_worker_thread_inside_their_span(traced: Traced) -> None:
    seen: dict[str, Any] = {}

    @tool
    def blocking(label: str) -> str:
        """Block a thread."""
        seen["sync"] = (threading.current_thread(), trace.get_current_span())
        return f"sync {label}"

    @tool
    async def waiting(label: str) -> str:
        """Await something."""
        seen["async"] = (threading.current_thread(), trace.get_current_span())
        return f"async {label}"

    rec = Recorder(
        {"solo": [Reply.call("blocking", label="a"), Reply.call("waiting", label="b"), END]}
    )
    await run_in(traced, Agent("solo", tools=[blocking, waiting]), model=recorded(rec))
    assert [r["content"] for r in rec.tool_results("solo")] == ["sync a", "async b"]
    sync_thread, sync_span = seen["sync"]
    async_thread, async_span = seen["async"]
    assert sync_thread is not threading.main_thread()
    assert async_thread is threading.main_thread()
    (blocking_span,) = traced.named("execute_tool blocking")
    (waiting_span,) = traced.named("execute_tool waiting")
    assert sync_span.get_span_context().span_id == blocking_span.context.span_id
    assert async_span.get_span_context().span_id == waiting_span.context.span_id


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_blocking_sync_tool_does_not_hold_up_the_other_agents(traced: Traced) -> None:
    released = threading.Event()

    @tool
    def block_until_released() -> str:
        """Block this thread until another agent releases it."""
        return "released" if released.wait(timeout=60) else "never released"

    @tool
    async def release() -> str:
        """Release the blocked agent."""
        released.set()
        return "done"

    rec = Recorder(
        {
            "blocker": [Reply.call("block_until_released"), END],
            "releaser": [Reply.call("release", think=2), END],
        }
    )
    team = Team(
        "t",
        [Agent("blocker", tools=[block_until_released]), Agent("releaser", tools=[release])],
    )
    await run_in(traced, team, model=recorded(rec))
    assert [r["content"] for r in rec.tool_results("blocker")] == ["released"]


# --- what a tool returns ---------------------------------------------------------------------
RETURNED: dict[str, Any] = {
    "str": "as it is",
    "none": None,
    "int": 7,
    "float": 2.5,
    "bool": True,
    "dict": {"k": 1, "word": "über"},
    "list": [1, "two"],
    "dataclass": Point(1, 2),
    "pydantic": Person(name="Ada"),
    "enum": Color.BLUE,
    "empty-list": [],
}
SENT = {
    "str": "as it is",
    "none": "",
    "int": "7",
    "float": "2.5",
    "bool": "true",
    "dict": '{"k": 1, "word": "über"}',
    "list": '[1, "two"]',
    "dataclass": '{"x": 1, "y": 2}',
    "pydantic": '{"name": "Ada", "age": null}',
    "enum": '"blue"',
    "empty-list": "[]",
}


@tool
def give(kind: str) -> Any:
    """Return a value of a kind."""
    return RETURNED[kind]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_return_values_are_sent_as_text_or_json(traced: Traced) -> None:
    rec = Recorder({"solo": [*(Reply.call("give", kind=k) for k in RETURNED), END]})
    await run_in(traced, Agent("solo", tools=[give]), model=recorded(rec))
    results = rec.tool_results("solo")
    assert {k: r["content"] for k, r in zip(RETURNED, results, strict=True)} == SENT
    assert not any(r.get("is_error") for r in results)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_value_that_is_not_json_is_an_error_result(traced: Traced) -> None:
    @tool
    def opaque() -> object:
        """Return something that is not JSON."""
        return object()

    rec = Recorder({"solo": [Reply.call("opaque"), END]})
    result = await run_in(traced, Agent("solo", tools=[opaque]), model=recorded(rec))
    (block,) = rec.tool_results("solo")
    assert block["is_error"] is True
    assert "object, which is not JSON-serializable" in block["content"]
    assert result.completed


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_content_blocks_are_sent_as_blocks_with_arriving_messages_appended(
    traced: Traced,
) -> None:
    delivered = asyncio.Event()

    @tool
    async def page() -> list[dict[str, str]]:
        """Return the page as blocks, once the other agent's message has been sent."""
        await delivered.wait()
        return [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]

    def sender(conv: Conversation) -> Reply:
        if conv.turn == 0:
            return Reply.call("send_message", recipient_ids=["reader"], content="psst")
        delivered.set()  # the send_message result is in: the message is in reader's inbox
        return END

    rec = Recorder({"reader": [Reply.call("page"), END]})
    team = Team("t", [Agent("reader", tools=[page], script=rec), Agent("sender", script=sender)])
    await run_in(traced, team)
    (block,) = rec.tool_results("reader")
    first, second, inbox = block["content"]
    assert (first, second) == (
        {"type": "text", "text": "first"},
        {"type": "text", "text": "second"},
    )
    assert inbox["type"] == "text"
    assert '<agent-message from="sender">\npsst\n</agent-message>' in inbox["text"]
    (receive,) = traced.named("receive reader")
    assert attrs(receive)["orchestrace.delivery.via"] == "tool_result"


# --- ToolContext -----------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_tool_context_knows_the_caller_and_sends_traced_messages(traced: Traced) -> None:
    seen: list[ToolContext] = []

    @tool
    async def notify(ctx: ToolContext, text: str) -> str:
        """Tell the reader something."""
        seen.append(ctx)
        ctx.span.set_attribute("app.notify.length", len(text))
        return await ctx.send("reader", text)

    rec = Recorder(
        {
            # Reply.call("notify", text=...) would be the text said *before* the call
            "writer": [Reply(tool="notify", tool_input={"text": "hi"}), END],
            "reader": [Reply.call("wait_for_message"), END],
        }
    )
    team = Team("t", [Agent("writer", tools=[notify]), Agent("reader")])
    result = await run_in(traced, team, model=recorded(rec), run_id="run-42")
    (ctx,) = seen
    assert (ctx.agent, ctx.role, ctx.run_id) == ("writer", "lead", "run-42")
    assert result.run_id == "run-42"
    (tool_block,) = rec.tool_results("writer")
    assert ctx.call_id == tool_block["tool_use_id"]
    assert tool_block["content"] == "delivered to ['reader']"
    assert '<agent-message from="writer">\nhi\n</agent-message>' in rec.results("reader")[0]

    (tool_span,) = traced.named("execute_tool notify")
    assert attrs(tool_span)["app.notify.length"] == 2
    (send,) = traced.named("send reader")
    assert send.kind.name == "PRODUCER"
    assert parent_of(send) == tool_span.context.span_id
    (receive,) = traced.named("receive reader")
    (link,) = receive.links
    assert link.context.span_id == send.context.span_id


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_tool_context_refuses_a_message_to_oneself(traced: Traced) -> None:
    @tool
    async def talk_to_self(ctx: ToolContext) -> str:
        """Send to the caller itself."""
        return await ctx.send(ctx.agent, "echo")

    rec = Recorder({"solo": [Reply.call("talk_to_self"), END]})
    await run_in(traced, Agent("solo", tools=[talk_to_self]), model=recorded(rec))
    (block,) = rec.tool_results("solo")
    assert block["is_error"] is True
    assert "names yourself ('solo')" in block["content"]
    assert traced.named("send ") == []


# --- Agent and Team validation ---------------------------------------------------------------
@tool
def lookup(topic: str) -> str:
    """Look a topic up."""
    return topic


@tool(name="send_message")
def impostor(content: str) -> str:
    """Pretend to be the runtime's tool."""
    return content


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Agent(""), "agent name is empty"),
        (lambda: Agent(7), "agent name must be a string, got int"),
        (lambda: Agent("two words"), r"agent name 'two words' may contain only .* \(not ' '\)"),
        (lambda: Agent("bell\x07"), r"may contain only .* \(not 0x7\)"),
        (lambda: Agent("orchestrace"), "'orchestrace' is reserved for the runtime's notices"),
        (lambda: Agent("a", tools=[lookup, lookup]), "agent 'a': two tools are named 'lookup'"),
        (lambda: Agent("a", tools=[impostor]), "tool name 'send_message' is the runtime's own"),
        (lambda: Agent("a", tools=[42]), "agent 'a': not a tool: 42"),
        (lambda: Agent("a", tools=["lookup"]), "agent 'a': not a tool: 'lookup'"),
        (lambda: Agent("a", tools=lookup), "agent 'a': tools must be a list"),
        (lambda: Agent("a", max_turns=0), "agent 'a': max_turns must be a positive int"),
        (lambda: Agent("a", instructions=None), "agent 'a': instructions must be a string"),
        (lambda: Team("t", []), "team 't' has no agents"),
        (lambda: Team("bad team", [Agent("a")]), "team name 'bad team' may contain only"),
        (lambda: Team("t", [Agent("a"), Agent("a")]), r"agents named twice: \['a'\]"),
        (lambda: Team("t", [Agent("a")], lead="b"), "lead 'b' is not one of its agents \\(a\\)"),
        (lambda: Team("t", [Agent("a"), "b"]), "'b' is not an Agent"),
        (
            lambda: Team("t", [Agent("a")], templates=[Agent("w"), Agent("w")]),
            r"templates named twice: \['w'\]",
        ),
        (
            lambda: Team("t", [Agent("a"), Agent("w")], templates=[Agent("w")]),
            r"templates named like agents: \['w'\]",
        ),
    ],
)
def test_bad_definitions_are_configuration_errors(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_a_plain_function_is_wrapped_as_a_tool() -> None:
    def shout(text: str) -> str:
        """Shout the text."""
        return text.upper()

    (made,) = Agent("a", tools=[shout]).tools
    assert made.schema["name"] == "shout"  # type: ignore[attr-defined]
    assert made.schema["description"] == "Shout the text."  # type: ignore[attr-defined]


# --- Team behaviour --------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_lead_gets_the_run_task_and_members_their_own_or_the_default(
    traced: Traced,
) -> None:
    rec = Recorder({"*": [END]})
    team = Team(
        "t",
        [
            Agent("lead", task="the lead's own task"),
            Agent("tasked", task="the member's own task"),
            Agent("untasked"),
        ],
    )
    await run_in(traced, team, "the run's task", model=recorded(rec))
    first = {name: messages[0]["content"] for name, messages in rec.last.items()}
    assert first == {
        "lead": "the run's task",
        "tasked": "the member's own task",
        "untasked": DEFAULT_MEMBER_TASK,
    }


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_per_agent_model_max_tokens_and_max_turns(traced: Traced) -> None:
    @tool
    def again() -> str:
        """Go round again."""
        return "again"

    rec = Recorder(
        {"lead": [Reply.call("again"), Reply.call("again"), END], "*": [Reply.call("again")]}
    )
    team = Team(
        "t",
        [
            Agent("lead", tools=[again]),
            Agent("small", tools=[again], model="claude-small", max_tokens=99, max_turns=2),
        ],
    )
    # a model name for the run and a client to play it: the client through override()
    with override(model=recorded(rec)):
        result = await run_in(traced, team, model="claude-run", max_tokens=512)
    chats = traced.named("chat ")
    lead_chats, small_chats = of_agent(chats, "lead"), of_agent(chats, "small")
    assert len(small_chats) == 2
    assert {(s.name, attrs(s)["gen_ai.request.max_tokens"]) for s in small_chats} == {
        ("chat claude-small", 99)
    }
    assert {(s.name, attrs(s)["gen_ai.request.max_tokens"]) for s in lead_chats} == {
        ("chat claude-run", 512)
    }
    assert len(lead_chats) == 3
    assert (result.agents["small"].reason, result.agents["lead"].reason) == (
        "max_turns",
        "end_turn",
    )
    (small_agent,) = traced.named("invoke_agent small")
    assert attrs(small_agent)["gen_ai.request.model"] == "claude-small"


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_only_a_team_of_two_or_more_gets_the_messaging_tools(traced: Traced) -> None:
    alone, together, other = Watcher(END), Watcher(END), Watcher(END)
    await run_in(traced, Agent("alone", tools=[lookup], script=alone))
    await run_in(
        traced,
        Team("t", [Agent("together", tools=[lookup], script=together), Agent("o", script=other)]),
    )
    assert alone.tools == {"lookup"}
    assert together.tools == {"lookup", "send_message", "wait_for_message"}
    assert other.tools == {"send_message", "wait_for_message"}


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_templates_are_spawned_by_name_with_their_tools_and_scripts(traced: Traced) -> None:
    @tool
    def whoami(ctx: ToolContext) -> str:
        """Say who is calling."""
        return f"{ctx.agent} as {ctx.role}"

    lead = Watcher(
        Reply.call("create_subagents", template="researcher", base_instruction="dig"),
        Reply.call("create_subagents", template="writer", base_instruction="write"),
        Reply.call(
            "create_subagents",
            template="researcher",
            base_instruction="dig more",
            per_subagent_instructions=["deeper"],
        ),
        Reply.call("get_status"),
        Reply.call(
            "kill_subagents", subagent_ids=["researcher1", "writer1", "researcher2"], think=4
        ),
        Reply.call("get_status"),
        END,
    )
    researcher = Watcher(Reply.call("whoami"), Reply.call("wait_for_message"))
    writer = Watcher(Reply.call("wait_for_message"))
    team = Team(
        "t",
        [Agent("editor", script=lead)],
        templates=[
            Agent(
                "researcher", "Research things.\nMore detail.", tools=[whoami], script=researcher
            ),
            Agent("writer", "Write things.", script=writer),
        ],
    )
    result = await run_in(traced, team)

    create = lead.schema("create_subagents")
    assert create["input_schema"]["properties"]["template"] == {
        "type": "string",
        "enum": ["researcher", "writer"],
    }
    assert create["input_schema"]["required"] == ["template", "base_instruction"]
    assert "researcher: Research things.; writer: Write things." in create["description"]
    assert lead.tools == {
        "create_subagents",
        "get_status",
        "kill_subagents",
        "send_message",
        "wait_for_message",
    }
    final = lead.seen[-1].tool_results()
    assert final[:3] == ["spawned: researcher1", "spawned: writer1", "spawned: researcher2"]
    status = final[3].splitlines()
    assert [line.split(":")[0] for line in status] == ["researcher1", "writer1", "researcher2"]
    assert final[4] == "cancelled: researcher1, writer1, researcher2"
    assert final[5] == "researcher1: killed\nwriter1: killed\nresearcher2: killed"

    # each instance ran its template's script with its template's tools
    assert {c.agent for c in researcher.seen} == {"researcher1", "researcher2"}
    assert {c.agent for c in writer.seen} == {"writer1"}
    assert researcher.seen[0].tools == {"whoami", "send_message", "wait_for_message"}
    assert writer.seen[0].tools == {"send_message", "wait_for_message"}
    r2 = next(c for c in researcher.seen if c.agent == "researcher2")
    assert r2.first_user_turn() == "dig more\n\ndeeper"
    assert (
        r2.request.system == "You are researcher2, a researcher.\n\nResearch things.\nMore detail."
    )
    whoami_results = {r for c in researcher.seen for r in c.tool_results() if " as " in r}
    assert whoami_results == {"researcher1 as researcher", "researcher2 as researcher"}

    creates = traced.named("execute_tool create_subagents")
    assert len(creates) == 3
    for name, create_span, role in [
        ("researcher1", creates[0], "researcher"),
        ("writer1", creates[1], "writer"),
        ("researcher2", creates[2], "researcher"),
    ]:
        (agent_span,) = traced.named(f"invoke_agent {name}")
        assert parent_of(agent_span) == create_span.context.span_id
        assert attrs(agent_span)["orchestrace.agent.role"] == role
        assert attrs(agent_span)["orchestrace.agent.state"] == "killed"
    assert set(result.agents) == {"editor", "researcher1", "writer1", "researcher2"}
    assert {n: r.state for n, r in result.agents.items() if n != "editor"} == {
        "researcher1": AgentState.KILLED,
        "writer1": AgentState.KILLED,
        "researcher2": AgentState.KILLED,
    }
    assert result.completed


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_spawned_agents_still_running_when_the_lead_ends_are_killed(traced: Traced) -> None:
    team = Team(
        "t",
        [Agent("lead", script=[Reply.call("create_subagents", base_instruction="wait"), END])],
        templates=[Agent("helper", script=[Reply.call("wait_for_message")] * 3)],
    )
    result = await run_in(traced, team)
    assert result.agents["helper1"].state is AgentState.KILLED
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


# --- run, run_sync and RunResult -------------------------------------------------------------
def research_team(lead_script: Any = None, member_script: Any = None) -> Team:
    planner = Agent(
        "planner",
        "Ask the researcher.",
        script=lead_script
        or [
            Reply.call("send_message", recipient_ids=["researcher"], content="span links?"),
            Reply.call("wait_for_message"),
            Reply.say("Links tie spans together."),
        ],
    )
    researcher = Agent(
        "researcher",
        "Answer with lookup.",
        tools=[lookup],
        script=member_script
        or [
            Reply.call("wait_for_message"),
            Reply.call("lookup", topic="span links"),
            Reply.call("send_message", recipient_ids=["planner"], content="they link"),
            Reply.say("Answered."),
        ],
    )
    return Team("research", [planner, researcher])


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_run_returns_the_answer_every_agent_and_the_trace(traced: Traced) -> None:
    result = await run_in(traced, research_team(), "What are span links?")
    assert isinstance(result, RunResult)
    assert result.text == "Links tie spans together."
    assert result.completed
    assert (result.lead.name, result.lead.state, result.lead.reason) == (
        "planner",
        AgentState.DONE,
        "end_turn",
    )
    assert result.lead is result.agents["planner"]
    assert result.agents["researcher"].text == "Answered."
    assert result.spans_file is None  # the application's provider: no file of ours
    (root,) = traced.named("invoke_workflow research")
    assert result.trace_id == format(root.context.trace_id, "032x")
    assert {s.context.trace_id for s in traced.spans} == {root.context.trace_id}
    assert attrs(root)["gen_ai.conversation.id"] == result.run_id
    assert result.summary is not None
    rendered = result.summary.render()
    assert f"trace {result.trace_id}" in rendered
    assert "planner: 1×send_message, 1×wait_for_message" in rendered
    assert "researcher: 1×wait_for_message, 1×lookup, 1×send_message" in rendered


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_lead_that_does_not_finish_is_not_completed(traced: Traced) -> None:
    lead = Agent("lead", script=[Reply.call("lookup", topic="x")] * 5, tools=[lookup], max_turns=2)
    result = await run_in(traced, lead)
    assert (result.completed, result.lead.reason) == (False, "max_turns")


def test_run_sync_in_plain_sync_code(traced: Traced) -> None:
    model = ScriptedModel(latency=0, scripts=SCRIPTS)
    result = run_sync(research_team(), "q?", model=model, tracer_provider=traced.tracer_provider)
    assert (result.text, result.completed) == ("Links tie spans together.", True)
    assert traced.named("invoke_workflow research")


@pytest.mark.asyncio
async def test_run_sync_inside_a_running_loop_runs_in_a_worker_thread(traced: Traced) -> None:
    outer = asyncio.get_running_loop()
    where: list[tuple[threading.Thread, asyncio.AbstractEventLoop]] = []

    def lead(conv: Conversation) -> Reply:
        where.append((threading.current_thread(), asyncio.get_running_loop()))
        return Reply.say("from a worker")

    # the override (a context variable) reaches the worker thread too
    with override(model=ScriptedModel(scripts={"solo": lead}, latency=0)):
        result = run_sync(Agent("solo"), "go", tracer_provider=traced.tracer_provider)
    assert result.text == "from a worker"
    ((thread, loop),) = where
    assert thread is not threading.current_thread()
    assert thread.name.startswith("orchestrace-run")
    assert loop is not outer


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_run_awaited_in_a_task(traced: Traced) -> None:
    task = asyncio.create_task(run_in(traced, research_team(), "q?"))
    result = await task
    assert result.text == "Links tie spans together."


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_with_a_tracer_provider_nothing_is_installed_globally(traced: Traced) -> None:
    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    await run_in(traced, research_team(), "q?")
    assert trace.get_tracer_provider() is tracer_provider
    assert metrics.get_meter_provider() is meter_provider
    with pytest.raises(ConfigurationError, match="spans_file is written only when orchestrace"):
        await run_in(traced, research_team(), "q?", spans_file="spans.jsonl")


@pytest.fixture
def no_global_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process as a fresh application has it: no tracer provider set, no OTEL_* settings.

    (An earlier in-process ``orchestrace run`` may have set the global provider; OTel lets
    it be set once per process, so the once-guard is reset too, and restored after.)
    """
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_global_telemetry")
def test_without_a_provider_orchestrace_writes_the_spans_file_and_prints_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    before = trace.get_tracer_provider()
    result = run_sync(research_team(), "q?", model=ScriptedModel(latency=0, scripts=SCRIPTS))
    assert result.spans_file == Path("orchestrace-spans.jsonl")
    lines = (tmp_path / result.spans_file).read_text().splitlines()
    names = {
        span["name"]
        for line in lines
        for rs in json.loads(line)["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
        if span["traceId"] == result.trace_id
    }
    assert {"invoke_workflow research", "invoke_agent planner", "send researcher"} <= names
    assert result.summary is not None
    assert trace.get_tracer_provider() is before  # still nothing installed globally
    assert capfd.readouterr().out == ""

    custom = run_sync(
        research_team(), "q?", model=ScriptedModel(latency=0, scripts=SCRIPTS), spans_file="x.jsonl"
    )
    assert custom.spans_file == Path("x.jsonl")
    assert (tmp_path / "x.jsonl").exists()
    none = run_sync(
        research_team(), "q?", model=ScriptedModel(latency=0, scripts=SCRIPTS), spans_file=None
    )
    assert none.spans_file is None
    assert none.summary is not None


SCRIPTS: dict[str, Any] = {a.name: a.script for a in research_team().agents}


def test_offline_without_a_script_names_the_agent_and_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    team = Team("t", [Agent("scripted", script=[END]), Agent("bare")])
    with pytest.raises(ConfigurationError) as caught:
        run_sync(team, "go", spans_file=None)
    message = str(caught.value)
    assert "no script for bare;" in message
    assert "scripted" not in message.split("no script for", 1)[1]
    assert "ANTHROPIC_API_KEY is not set" in message
    assert "Agent(..., script=[Reply.call(" in message


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_override_wins_over_the_agents_scripts_and_the_model_argument(
    traced: Traced,
) -> None:
    forced = ScriptedModel(scripts={"planner": [Reply.say("overridden")], "researcher": [END]})
    ignored = ScriptedModel(scripts={"planner": [Reply.say("argument")], "researcher": [END]})
    with override(model=forced):
        result = await run_in(traced, research_team(), "q?", model=ignored)
    assert result.text == "overridden"
    assert (forced.calls, ignored.calls) == (2, 0)
    # the override ends with the block
    assert (await run_in(traced, research_team(), "q?")).text == "Links tie spans together."


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_lone_agent_runs_as_a_team_of_one(traced: Traced) -> None:
    solo = Agent("solo", "Answer.", task="its own task", script=[Reply.say("alone")])
    result = await run_in(traced, solo, None)
    assert (result.text, result.lead.name, list(result.agents)) == ("alone", "solo", ["solo"])
    assert traced.named("invoke_workflow solo")


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_no_task_anywhere_is_a_configuration_error(traced: Traced) -> None:
    with pytest.raises(ConfigurationError, match=r"no task for 'planner': pass run\(team, task"):
        await run_in(traced, research_team(), None)
    assert traced.spans == []


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_run_agent_refuses_an_unregistered_agent_before_anything_happens(
    traced: Traced,
) -> None:
    from runtime.agent import AgentSpec, run_agent

    model = ScriptedModel(scripts={"ghost": [END]})
    context = traced.context(model=model)
    spec = AgentSpec(name="ghost", role="member", system="", first_user_turn="go")
    with pytest.raises(UnknownAgentError, match="no agent named 'ghost'"):
        await run_agent(context, spec)
    assert model.calls == 0
    assert traced.spans == []


# --- a library's manners ---------------------------------------------------------------------
USER_SCRIPT = textwrap.dedent(
    """
    from orchestrace import Agent, Reply, Team, run_sync, tool

    @tool
    def lookup(topic: str) -> str:
        \"\"\"Look a topic up.\"\"\"
        return "notes on " + topic

    lead = Agent("lead", script=[Reply.call("send_message", recipient_ids=["helper"],
                                            content="look up links"),
                                 Reply.call("wait_for_message"), Reply.say("answer")])
    helper = Agent("helper", tools=[lookup], script=[
        Reply.call("wait_for_message"), Reply.call("lookup", topic="links"),
        Reply.call("send_message", recipient_ids=["lead"], content="found"), Reply.say("ok")])
    result = run_sync(Team("quiet", [lead, helper]), task="go")
    print("RESULT", result.text, result.completed, result.spans_file)
    """
)


def test_importing_and_running_writes_nothing_to_stdout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", USER_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "RESULT answer True orchestrace-spans.jsonl\n"
    assert done.stderr == ""
    assert (tmp_path / "orchestrace-spans.jsonl").stat().st_size > 0


@pytest.fixture
def structlog_unconfigured() -> Iterator[None]:
    """structlog as an application that never configured it has it (the CLI configures it
    when run in-process)."""
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.usefixtures("structlog_unconfigured")
async def test_logs_go_through_the_stdlib_logger_and_no_handler_is_added(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    caplog.set_level(logging.DEBUG, logger="orchestrace.agent")
    await run_in(traced, research_team(), "q?")
    assert root.handlers == handlers
    assert root.level == level
    assert logging.getLogger("orchestrace").handlers == []
    assert logging.getLogger("orchestrace.agent").handlers == []
    ours = [r for r in caplog.records if r.name == "orchestrace.agent"]
    messages = [r.getMessage() for r in ours]
    started = sorted(m for m in messages if m.startswith("agent started "))
    assert len(started) == 2
    assert "role='lead' agent='planner'" in started[0]
    assert "role='member' agent='researcher'" in started[1]
    ended = [m for m in messages if m.startswith("agent ended ")]
    assert len(ended) == 2
    assert all("state='done' reason='end_turn'" in m for m in ended)
    (root_span,) = traced.named("invoke_workflow research")
    assert all(f"trace_id='{root_span.context.trace_id:032x}'" in m for m in started + ended)
    assert {r.levelno for r in ours} == {logging.DEBUG}


def test_everything_in_all_is_exported() -> None:
    for name in orchestrace.__all__:
        assert getattr(orchestrace, name) is not None, name
    assert orchestrace.run is run
    assert orchestrace.__version__
