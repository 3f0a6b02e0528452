"""The offline scripted model: your team's conversations without an API key.

:class:`ScriptedModel` answers each request with a real ``anthropic.types.Message``. What it
says comes from a script per agent: a list of :class:`Reply` (one per turn) or a function
of the :class:`Conversation` so far (what tools the agent has, which messages it received,
what its tools returned), so messages really flow through the hub and tools really run.
Token usage is estimated from the request size, with the system prompt and tools counted
as a cached prefix.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from anthropic.types import Message, TextBlock, ToolUseBlock, Usage

from runtime.models import ModelRequest
from telemetry import spans

_FROM = re.compile(r'<agent-message from="([^"]*)">\n(.*?)\n</agent-message>', re.S)
_PEERS = re.compile(r"peers: \[([^\]]*)\]")
_PERSONA = re.compile(r"You are an? (.+?) named (\w+)")
_SECONDS = re.compile(r"sleep (?:for )?(\d+) second", re.I)
_SPAWNED = re.compile(r"spawned: (.+)")

KNOWN_STOP_REASONS: Final = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}
)

#: A streamed reply's first token comes after this share of its latency; the rest of the
#: reply comes in up to ``STREAM_CHUNKS`` more chunks spread evenly over the remainder.
FIRST_TOKEN_SHARE: Final = 0.4
STREAM_CHUNKS: Final = 3

SPAWN_BASE_INSTRUCTION: Final = (
    "You are a helper agent. Follow your specific instruction, report back to the lead with "
    "send_message, then wait for further instructions."
)


@dataclass(frozen=True)
class Reply:
    """What the scripted model says next: text, at most one tool call, and a stop reason.

    Build replies with :meth:`call` and :meth:`say`::

        script = [
            Reply.call("lookup", topic="tracing"),
            Reply.call("send_message", recipient_ids=["planner"], content="found 3 notes"),
            Reply.say("Done."),
        ]

    To test how your code handles an answer that did not finish, give another stop reason:
    ``Reply("Half an ans", stop_reason="max_tokens")`` (or ``"refusal"``) ends the agent
    with reason ``stop_reason:max_tokens``, and a lead's run is then not ``completed``.
    """

    text: str = ""
    tool: str | None = None
    tool_input: dict[str, Any] | None = None
    stop_reason: str = "tool_use"
    #: Relative thinking time; 1.0 is the model's base latency.
    think: float = 1.0

    @classmethod
    def call(
        cls,
        tool: str,
        tool_input: Mapping[str, Any] | None = None,
        /,
        *,
        text: str = "",
        think: float = 1.0,
        **more_input: Any,
    ) -> Reply:
        """Call ``tool`` with its input as keywords, or as a dict for input keys named
        ``text`` or ``think`` (which are this method's own: the text said before the call,
        and the relative thinking time): ``Reply.call("count", {"text": "a b c"})``."""
        return cls(
            text=text, tool=tool, tool_input={**(tool_input or {}), **more_input}, think=think
        )

    @classmethod
    def say(cls, text: str, *, think: float = 1.0) -> Reply:
        """End the turn with ``text`` (for a lead: the run's final answer)."""
        return cls(text=text, stop_reason="end_turn", think=think)


class Conversation:
    """What a script function sees: the conversation so far of the agent being answered.

    Example, a lead that waits until two reports are in::

        def lead(conv: Conversation) -> Reply:
            if conv.turn == 0:
                return Reply.call("send_message", recipient_ids=["a", "b"], content="report")
            if len(conv.received()) < 2:
                return Reply.call("wait_for_message")
            return Reply.say("; ".join(text for _sender, text in conv.received()))

    ``agent`` and ``role`` say who asks (``role``: ``lead``, ``member`` or, for a spawned
    agent, its template's name); ``turn`` counts the agent's earlier model replies (0 on
    its first call); ``tools`` is the set of tool names it may call; ``request`` is the
    whole :class:`ModelRequest` (system prompt, messages, tools).
    """

    def __init__(self, request: ModelRequest) -> None:
        self.request = request
        self.tools = {t["name"] for t in request.tools}
        self.turn = sum(1 for m in request.messages if m["role"] == "assistant")

    @property
    def agent(self) -> str:
        """The name of the agent making the request."""
        return self.request.agent

    @property
    def role(self) -> str:
        """Its role: ``lead``, ``member`` or the template it was spawned from."""
        return self.request.role

    def _user_texts(self) -> Iterator[str]:
        """Text of every user turn after the instructions (tool results, deliveries)."""
        for m in self.request.messages[1:]:
            if m["role"] != "user":
                continue
            content = m["content"]
            if isinstance(content, str):
                yield content
                continue
            for block in content:
                if block.get("type") == "tool_result":
                    yield str(block.get("content", ""))
                elif block.get("type") == "text":
                    yield str(block.get("text", ""))

    def received(self) -> list[tuple[str, str]]:
        """Every (sender, content) delivered so far, oldest first."""
        return [(s, c) for text in self._user_texts() for s, c in _FROM.findall(text)]

    def tool_results(self) -> list[str]:
        """Every tool result text so far, oldest first (messages delivered with a result
        are part of its text; :meth:`received` has them one by one)."""
        return list(self._user_texts())

    def first_user_turn(self) -> str:
        """The agent's first user turn: its task (a lead's is the run's task)."""
        first = self.request.messages[0]["content"]
        return first if isinstance(first, str) else ""

    def sent_tools(self) -> list[str]:
        """Names of the tools this agent has called so far."""
        names: list[str] = []
        for m in self.request.messages:
            if m["role"] == "assistant" and isinstance(m["content"], list):
                names += [b["name"] for b in m["content"] if b.get("type") == "tool_use"]
        return names


def _team_peers(conv: Conversation) -> list[str]:
    match = _PEERS.search(conv.request.system)
    return re.findall(r"'([^']+)'", match.group(1)) if match else []


def team_lead(conv: Conversation) -> Reply:
    """Introduce yourself, wait until everyone has, send a wrap-up, finish."""
    peers = _team_peers(conv)
    sent = conv.sent_tools()
    if not sent:
        return Reply(
            tool="send_message",
            tool_input={
                "recipient_ids": peers,
                "content": "Hi team, I'm lead, the coordinator for our group. Looking forward to "
                "working with you both!",
            },
            think=1.6,
        )
    introduced = {s for s, _ in conv.received()}
    if not set(peers) <= introduced:
        return Reply(tool="wait_for_message", tool_input={})
    if sent.count("send_message") < 2:
        return Reply(
            tool="send_message",
            tool_input={
                "recipient_ids": peers,
                "content": "Thanks, everyone! Great to have Ada on backend and Bo on design — "
                "we're all set.",
            },
        )
    return Reply(
        text="Everyone has introduced themselves, and I've shared the summary.\n"
        "**Team summary:** We're a three-person team with me (lead) coordinating, Ada handling "
        "backend engineering (APIs, databases, architecture), and Bo driving design — a "
        "well-rounded crew ready to build great things together.",
        stop_reason="end_turn",
    )


def team_member(conv: Conversation) -> Reply:
    """Introduce yourself with your persona, wait until the lead wraps up, say thanks."""
    peers = _team_peers(conv)
    persona = _PERSONA.search(conv.first_user_turn())
    job, name = persona.groups() if persona else ("team member", conv.request.agent)
    if not conv.sent_tools():
        intros = {
            "Ada": "Hi all, I'm Ada, a backend engineer on the team. I focus on APIs, databases "
            "and architecture.",
            "Bo": "Hi everyone! I'm Bo, the designer on the team. Looking forward to working "
            "with you all.",
        }
        return Reply(
            tool="send_message",
            tool_input={
                "recipient_ids": peers,
                "content": intros.get(name, f"Hi all, I'm {name}, the {job} on the team."),
            },
        )
    wrapped_up = any(s == "lead" and c.startswith("Thanks") for s, c in conv.received())
    if not wrapped_up and not any(r.startswith("woke: no one") for r in conv.tool_results()):
        return Reply(tool="wait_for_message", tool_input={})
    return Reply(text=f"Great to meet you all — {name} signing off.", stop_reason="end_turn")


def spawn_lead(conv: Conversation) -> Reply:
    """Spawn three sleepers, check on them, collect three reports, dismiss them, sum up."""
    sent = conv.sent_tools()
    if not sent:
        return Reply(
            text="I'll spawn three helpers with different sleep durations.",
            tool="create_subagents",
            tool_input={
                "base_instruction": SPAWN_BASE_INSTRUCTION,
                "per_subagent_instructions": [
                    f"Sleep for {n} second{'s' if n > 1 else ''}, then report 'done, slept {n}s'."
                    for n in (1, 2, 3)
                ],
            },
        )
    if "get_status" not in sent:
        return Reply(tool="get_status", tool_input={})
    helpers: list[str] = []
    for result in conv.tool_results():
        match = _SPAWNED.match(result)
        if match:
            helpers = [h.strip() for h in match.group(1).split(",")]
    reports = {s for s, c in conv.received() if c.startswith("done")}
    if "kill_subagents" not in sent and not set(helpers) <= reports:
        if any(r.startswith("woke: no one") for r in conv.tool_results()):
            return Reply(text="No helper is left to report.", stop_reason="end_turn")
        return Reply(tool="wait_for_message", tool_input={})
    if "kill_subagents" not in sent:
        return Reply(tool="kill_subagents", tool_input={"subagent_ids": helpers})
    return Reply(
        text=f"Summary: All {len(helpers)} helpers were spawned and confirmed active, each "
        'reported back successfully ("done, slept 1s/2s/3s"), and all three were then '
        "dismissed.",
        stop_reason="end_turn",
    )


def spawn_helper(conv: Conversation) -> Reply:
    """Sleep as instructed, report to the lead, wait for instructions."""
    sent = conv.sent_tools()
    match = _SECONDS.search(conv.first_user_turn())
    seconds = int(match.group(1)) if match else 1
    if "sleep" not in sent:
        return Reply(tool="sleep", tool_input={"seconds": seconds})
    if "send_message" not in sent:
        return Reply(
            tool="send_message",
            tool_input={"recipient_ids": ["lead"], "content": f"done, slept {seconds}s"},
        )
    if "wait_for_message" not in sent:
        return Reply(tool="wait_for_message", tool_input={})
    return Reply(text="Understood.", stop_reason="end_turn")


Policy = Callable[[Conversation], Reply]

#: What an agent says offline: one :class:`Reply` per turn, or a function of the conversation.
Script: TypeAlias = Sequence[Reply] | Policy

#: What a list script says once it has run out: end the turn, say nothing more.
SCRIPT_ENDED: Final = Reply(stop_reason="end_turn")


def as_policy(script: Script) -> Policy:
    """A script as a policy: a list plays its replies in turn order, then ends the turn."""
    if callable(script):
        return script
    replies = tuple(script)
    for reply in replies:
        if not isinstance(reply, Reply):
            raise TypeError(f"a script is a list of Reply values, got {type(reply).__name__}")

    def policy(conv: Conversation) -> Reply:
        return replies[conv.turn] if conv.turn < len(replies) else SCRIPT_ENDED

    return policy


def choose_policy(conv: Conversation) -> Policy:
    """Pick the script by the agent's tools and name."""
    if "create_subagents" in conv.tools:
        return spawn_lead
    if "sleep" in conv.tools:
        return spawn_helper
    return team_lead if conv.request.agent == "lead" else team_member


def _json_len(value: object) -> int:
    return len(json.dumps(value, default=str))


def _tokens(value: object) -> int:
    """A rough token count: a quarter of the value's JSON length."""
    return max(1, _json_len(value) // 4)


class _HistoryTokens:
    """``_tokens(messages)`` for a growing conversation without re-encoding its history.

    A conversation only grows: each call re-sends every earlier message unchanged. The JSON
    length of each message is remembered (keyed by the message object, which is kept so
    its id cannot be reused), and the length of the list is rebuilt from them exactly as
    ``json.dumps`` lays a list out: ``[`` + items joined by ``", "`` + ``]``. Without this
    the scripted model spent O(turns) per call re-encoding history, which dominated
    long benchmark runs and is no cost of the runtime.
    """

    def __init__(self) -> None:
        self._lengths: dict[int, tuple[object, int]] = {}

    def count(self, messages: Sequence[object]) -> int:
        total = 2 + 2 * max(0, len(messages) - 1)
        for m in messages:
            seen = self._lengths.get(id(m))
            if seen is None or seen[0] is not m:
                seen = self._lengths[id(m)] = (m, _json_len(m))
            total += seen[1]
        return max(1, total // 4)


class ScriptedModel:
    """A :class:`orchestrace.ModelClient` that needs no network or API key.

    Example::

        model = ScriptedModel(scripts={
            "planner": [Reply.call("send_message", recipient_ids=["researcher"],
                                   content="Find notes on tracing."),
                        Reply.call("wait_for_message"),
                        Reply.say("Tracing: one trace per run.")],
            "researcher": lambda conv: ...,   # a function of the Conversation
        })

    ``scripts`` maps an agent's name — or, for spawned agents, their template's name — to
    its :data:`Script`. ``policy`` answers for every agent instead (or for agents without a
    script). With neither, the original cookbook's two runs are played. ``latency`` is the
    base seconds per call, slept through the injectable ``sleep``. A streamed request
    (``request.stream``) takes the same time, in chunks: its first token after
    :data:`FIRST_TOKEN_SHARE` of it, the rest spread over the remainder, so an offline run
    records a time to first token and a time per output token too.

    Raises ``KeyError`` from :meth:`create` for an agent with no script and no policy.
    """

    backend: Final = "scripted"

    def __init__(
        self,
        *,
        latency: float = 0.25,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        policy: Policy | None = None,
        scripts: Mapping[str, Script] | None = None,
    ) -> None:
        self.latency = latency
        self._sleep = sleep
        self._policy = policy
        self._scripts = {name: as_policy(s) for name, s in (scripts or {}).items()}
        self._ids = itertools.count(1)
        self._history = _HistoryTokens()
        self.calls = 0

    async def create(self, request: ModelRequest) -> Message:
        """Answer ``request`` after the simulated latency (in chunks, if it streams)."""
        reply, message = self.respond(request)
        if request.stream:
            await self._stream(message, self.latency * reply.think)
        elif self.latency:
            await self._sleep(self.latency * reply.think)
        return message

    async def _stream(self, message: Message, seconds: float) -> None:
        """Pace ``message`` as a stream taking ``seconds``: the first token, then the rest.

        A reply with no content has no first token: it takes its time and says nothing.
        """
        if not message.content:
            if self.latency:
                await self._sleep(seconds)
            return
        first = seconds * FIRST_TOKEN_SHARE
        if self.latency:
            await self._sleep(first)
        spans.model_first_token()
        if not self.latency:
            return
        chunks = max(1, min(STREAM_CHUNKS, message.usage.output_tokens - 1))
        rest = seconds - first
        for _ in range(chunks):
            await self._sleep(rest / chunks)

    async def close(self) -> None:
        """Nothing to release."""

    def respond(self, request: ModelRequest) -> tuple[Reply, Message]:
        """The scripted answer to ``request``, at once (also used to drive a fake API)."""
        conv = Conversation(request)
        reply = self._policy_for(conv)(conv)
        if not isinstance(reply, Reply):
            raise TypeError(
                f"the script of agent {conv.agent!r} returned {type(reply).__name__} "
                f"{reply!r:.40}, not a Reply: return Reply.call(tool, **input) or "
                "Reply.say(text)"
            )
        self.calls += 1
        return reply, self._message(request, conv, reply)

    def unscripted(self, agents: Iterable[tuple[str, str]]) -> list[str]:
        """The names among ``agents`` (name, role) this model has no script for.

        Empty when a ``policy`` answers for everyone, or with neither ``scripts`` nor
        ``policy`` (the original cookbook's runs answer any agent). A role is a lead's
        ``lead``, a member's ``member``, a spawned agent's template name.
        """
        if self._policy is not None or not self._scripts:
            return []
        return [n for n, role in agents if n not in self._scripts and role not in self._scripts]

    def _policy_for(self, conv: Conversation) -> Policy:
        scripted = self._scripts.get(conv.agent) or self._scripts.get(conv.role)
        if scripted is not None:
            return scripted
        if self._policy is not None:
            return self._policy
        if self._scripts:
            raise KeyError(
                f"the scripted model has no script for agent {conv.agent!r} (it has scripts "
                f"for: {', '.join(self._scripts)})"
            )
        return choose_policy(conv)

    def _message(self, request: ModelRequest, conv: Conversation, reply: Reply) -> Message:
        n = next(self._ids)
        content: list[TextBlock | ToolUseBlock] = []
        if reply.text:
            content.append(TextBlock(type="text", text=reply.text))
        if reply.tool is not None:
            content.append(
                ToolUseBlock(
                    type="tool_use",
                    id=f"toolu_scripted_{n:04d}",
                    name=reply.tool,
                    input=reply.tool_input or {},
                )
            )
        prefix = _tokens([request.system, list(request.tools)])
        rest = self._history.count(request.messages)
        first = conv.turn == 0
        # Unknown stop reasons (tests script them) bypass the SDK model's validation.
        build = Message if reply.stop_reason in KNOWN_STOP_REASONS else Message.model_construct
        return build(
            id=f"msg_scripted_{n:04d}",
            type="message",
            role="assistant",
            model=request.model,
            content=list(content),
            stop_reason=reply.stop_reason,  # type: ignore[arg-type]
            stop_sequence=None,
            usage=Usage(
                input_tokens=rest,
                output_tokens=_tokens([b.model_dump() for b in content]),
                cache_creation_input_tokens=prefix if first else 0,
                cache_read_input_tokens=0 if first else prefix,
            ),
        )


def scripted_replies(replies: Sequence[Reply]) -> Policy:
    """A policy that plays ``replies`` in order, one per turn of each agent (for tests)."""

    def policy(conv: Conversation) -> Reply:
        return replies[min(conv.turn, len(replies) - 1)]

    return policy
