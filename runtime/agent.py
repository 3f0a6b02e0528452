"""run_agent: the original cookbook's tool-use loop, with every step recorded as a span.

One function runs any agent: call the model, dispatch the tools it asks for, append the
agent's drained inbox to the last tool result, repeat. Telemetry, validation and rendering
live in their own modules; this loop only decides what happens next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from anthropic.types import Message
from opentelemetry.context import Context

from runtime.errors import MalformedResponseError, OrchestraceError, ToolError
from runtime.hub import (
    SYSTEM_SENDER,
    AgentState,
    Envelope,
    Hub,
    MessageTooLargeError,
    PostResult,
    TransportError,
    WakeReason,
)
from runtime.limits import LimitExceeded, RunLimits
from runtime.models import ModelClient, ModelRequest
from runtime.prompts import render_messages
from runtime.run_defaults import default_model
from runtime.tools import (
    AgentTool,
    Schema,
    Tool,
    ToolCall,
    ToolContext,
    ToolOutcome,
)
from telemetry.logs import bound_agent, get_logger
from telemetry.spans import AgentSpan, RunTelemetry, ToolSpan

if TYPE_CHECKING:
    from runtime.teams import Team

log = get_logger("orchestrace.agent")

# --- the messaging tools (their handlers are AgentRun._send_message and _wait_for_message)
SEND_MESSAGE: Final[Schema] = {
    "name": "send_message",
    "description": (
        "Send a message to one or more other agents. It will appear appended to their next tool "
        "result. This is the ONLY way to reach other agents — plain text in your turn goes nowhere."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "recipient_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "content": {"type": "string"},
        },
        "required": ["recipient_ids", "content"],
        "additionalProperties": False,
    },
}

WAIT_FOR_MESSAGE: Final[Schema] = {
    "name": "wait_for_message",
    "description": (
        "Block until another agent messages you. Note: messages also arrive automatically appended "
        "to the result of ANY other tool call, so only use this when you have nothing else to do."
    ),
    "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
}

#: Their names.
MESSAGING_TOOL_NAMES: Final = frozenset({SEND_MESSAGE["name"], WAIT_FOR_MESSAGE["name"]})

NO_SENDERS_RESULT: Final = (
    "woke: no one can send you a message (every other agent has ended or is waiting)"
)


class AgentAlreadyRunningError(OrchestraceError):
    """``run_agent`` was called for an agent that is already running in the same run."""


@dataclass(frozen=True)
class RunConfig:
    """Settings shared by every agent of a run; ``sleep`` is injectable for tests.

    ``stream``: model calls stream their responses (the default; see the README's
    "Streaming" for why), unless an agent says otherwise.
    """

    model: str = field(default_factory=default_model)
    max_tokens: int = 2048
    max_turns: int = 20
    wait_timeout: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    stream: bool = True


class Placement(Protocol):
    """Where agents run when the hub spans processes; a run without one hosts every agent
    in this process. ``orchestrace run --hub`` places agents on workers through it."""

    async def claim(self, team: Team) -> set[str]:
        """The names of ``team``'s members that other processes will host."""

    def register(self, name: str, role: str) -> None:
        """Register ``name`` with the hub as hosted by another process."""

    async def start(self, team: Team, parent: Context) -> dict[str, asyncio.Task[AgentResult]]:
        """Start the claimed members (children of ``parent``); a task per member that ends
        with the member's result, and whose cancellation ends the member."""

    def offers(self, template: str) -> bool:
        """True when another process hosts instances of ``template``."""

    def spawn(
        self, prefix: str, template: str, first_user_turn: str, parent: Context
    ) -> tuple[str, asyncio.Task[AgentResult]]:
        """Register a new instance of ``template`` and hand it to a process offering it."""


@dataclass
class RunContext:
    """What every agent of one run shares: the hub, the model, telemetry and settings."""

    hub: Hub
    model: ModelClient
    telemetry: RunTelemetry
    config: RunConfig = field(default_factory=RunConfig)
    limits: RunLimits = field(default_factory=RunLimits)
    #: Set (to the signal's name) when the run is being interrupted, e.g. "SIGINT".
    interrupted: str | None = None
    #: How each agent that has ended ended, by name, in the order they ended.
    results: dict[str, AgentResult] = field(default_factory=dict)
    #: Names of the agents running now (one run_agent per agent at a time).
    running: set[str] = field(default_factory=set)
    #: Where agents run when the hub spans processes (None: all of them here).
    placement: Placement | None = None

    def __post_init__(self) -> None:
        self.budget = self.hub.budget(self.limits)
        self.hub.add_listener(
            lambda _name, role, old, new: self.telemetry.agent_state_changed(role, old, new)
        )


@dataclass(frozen=True)
class AgentSpec:
    """Who an agent is and what it can do.

    ``send_message`` and ``wait_for_message`` are added when ``messaging`` is true (agents
    in a team). ``model``, ``max_turns``, ``max_tokens`` and ``stream`` override the run's
    settings.
    """

    name: str
    role: str
    system: str
    first_user_turn: str
    tools: Sequence[AgentTool] = ()
    messaging: bool = True
    model: str | None = None
    max_turns: int | None = None
    max_tokens: int | None = None
    stream: bool | None = None
    #: The agent that spawned this one (recorded as ``orchestrace.agent.caller``).
    caller: str | None = None


@dataclass(frozen=True)
class AgentResult:
    """How an agent ended: its final state, why, and its last text.

    ``state`` is ``done``, ``crashed`` or ``killed``. ``reason``: ``end_turn`` (it finished),
    ``max_turns`` (``text`` is then ``[name hit max_turns=N]``), ``limit:<cap>`` (a
    :class:`RunLimits` cap), ``stop_reason:<reason>`` (``max_tokens``, ``refusal``, ...),
    ``killed`` / ``cancelled`` (by ``kill_subagents``, or when the lead ended),
    ``interrupted:SIGINT`` (and the like), or, for ``crashed``, the exception's type name
    (``KeyError``, ``APITimeoutError``, ``malformed_response``).
    """

    name: str
    state: AgentState
    reason: str
    text: str


async def run_agent(
    run: RunContext, spec: AgentSpec, *, parent: Context | None = None
) -> AgentResult:
    """Run one agent to its end and return how it ended.

    The agent must already be registered with the hub (so messages can reach it before its
    first turn); ``parent`` is the context its ``invoke_agent`` span is a child of. Anything
    that goes wrong while it runs (a model error, a crashing tool, a run limit) ends the
    agent with a state and reason in the result instead of raising.

    Raises :class:`~runtime.hub.UnknownAgentError` if ``spec.name`` is not registered with
    ``run.hub`` (no span is opened and no model call made), :class:`AgentAlreadyRunningError`
    if the same agent is already running in this run, and ``asyncio.CancelledError``
    when the task is cancelled (killed or interrupted; the span records which).
    """
    run.hub.state(spec.name)  # UnknownAgentError before anything is recorded
    if spec.name in run.running:
        raise AgentAlreadyRunningError(f"agent {spec.name!r} is already running in this run")
    run.running.add(spec.name)
    try:
        return await _run_registered(run, spec, parent)
    finally:
        run.running.discard(spec.name)


async def _run_registered(run: RunContext, spec: AgentSpec, parent: Context | None) -> AgentResult:
    loop = _AgentLoop(run, spec)
    model = spec.model or run.config.model
    with (
        run.telemetry.agent(
            spec.name, spec.role, model=model, parent=parent, caller=spec.caller
        ) as span,
        bound_agent(spec.name),
    ):
        return await loop.run(span)


def _text_of(message: Message) -> str:
    # Only text blocks: a block type this SDK version does not know may carry text=None.
    return "".join(
        text
        for block in message.content
        if block.type == "text" and isinstance(text := getattr(block, "text", None), str)
    )


class _AgentLoop:
    def __init__(self, run: RunContext, spec: AgentSpec) -> None:
        self.ctx = run
        self.spec = spec
        self.hub = run.hub
        self.tel = run.telemetry
        messaging = (
            (Tool(SEND_MESSAGE, self._send_message), Tool(WAIT_FOR_MESSAGE, self._wait_for_message))
            if spec.messaging
            else ()
        )
        self.tools: dict[str, AgentTool] = {t.name: t for t in (*spec.tools, *messaging)}
        config = run.config
        self.model = spec.model or config.model
        self.max_turns = spec.max_turns if spec.max_turns is not None else config.max_turns
        self.max_tokens = spec.max_tokens if spec.max_tokens is not None else config.max_tokens
        self.stream = spec.stream if spec.stream is not None else config.stream
        self.turns = 0
        #: Messages rendered into the next request but not yet sent to the model. If the loop
        #: stops first (max_turns, a run limit, a kill while queued for a model slot), they
        #: were never read and go back to their senders with the inbox's unread mail.
        self.unseen: list[Envelope] = []

    async def run(self, span: AgentSpan) -> AgentResult:
        name = self.spec.name
        messages: list[dict[str, Any]] = [{"role": "user", "content": self.spec.first_user_turn}]
        text = ""
        log.debug("agent started", role=self.spec.role)
        try:
            for _ in range(self.max_turns):
                response = await self._call_model(messages)
                self.turns += 1
                text = _text_of(response)
                messages.append({"role": "assistant", "content": _to_params(response)})
                stop = response.stop_reason
                if stop == "tool_use":
                    messages.append({"role": "user", "content": await self._dispatch(response)})
                elif stop == "end_turn":
                    unread = self._deliver(via="user_turn")
                    if not unread:
                        return self._finish(span, AgentState.DONE, "end_turn", text)
                    # The original cookbook ended here and lost these messages; hand them over.
                    messages.append({"role": "user", "content": unread.lstrip()})
                elif stop == "pause_turn":
                    continue
                else:
                    return self._finish(
                        span, AgentState.DONE, f"stop_reason:{stop}", text, failed=True
                    )
            return self._finish(
                span, AgentState.DONE, "max_turns", f"[{name} hit max_turns={self.max_turns}]"
            )
        except asyncio.CancelledError:
            if self.ctx.interrupted is not None:
                reason = f"interrupted:{self.ctx.interrupted}"
                self._finish(span, AgentState.KILLED, reason, text, failed=True)
            else:
                killed = self.hub.state(name) is AgentState.KILLED
                self._finish(span, AgentState.KILLED, "killed" if killed else "cancelled", text)
            raise
        except LimitExceeded as exc:
            log.warning("agent stopped by a run limit", limit=exc.limit, detail=str(exc))
            return self._finish(span, AgentState.DONE, f"limit:{exc.limit}", text, failed=True)
        except Exception as exc:
            log.error("agent crashed", error=f"{type(exc).__name__}: {exc}")
            reason = exc.reason if isinstance(exc, MalformedResponseError) else type(exc).__name__
            return self._finish(span, AgentState.CRASHED, reason, text, error=exc)

    def _finish(
        self,
        span: AgentSpan,
        state: AgentState,
        reason: str,
        text: str,
        *,
        error: BaseException | None = None,
        failed: bool = False,
    ) -> AgentResult:
        unread = [*self.unseen, *self.hub.end(self.spec.name, state)]
        self.unseen.clear()
        final = self.hub.state(self.spec.name)  # a killer may have set KILLED first
        self._bounce(unread, final, span)
        self.hub.settle()
        span.finish(final, reason, turns=self.turns, unread=len(unread), error=error, failed=failed)
        log.debug("agent ended", state=str(final), reason=reason, unread=len(unread))
        result = self.ctx.results[self.spec.name] = AgentResult(self.spec.name, final, reason, text)
        return result

    def _bounce(self, unread: list[Envelope], state: AgentState, span: AgentSpan) -> None:
        """Tell each sender whose message this agent never read (nothing is lost silently)."""
        for envelope in unread:
            if envelope.sender == SYSTEM_SENDER:
                continue
            notice = (
                f"undeliverable: your message {envelope.message_id} to {self.spec.name} was "
                f"never read ({self.spec.name} is {state}); it began: {envelope.content[:80]!r}"
            )
            result = self.hub.post(
                Envelope(
                    self.hub.new_message_id(),
                    SYSTEM_SENDER,
                    envelope.sender,
                    notice,
                    self.hub.now_ns(),
                    span.traceparent,
                )
            )
            if result.outcome != "delivered":
                log.warning(
                    "message lost: sender and recipient have both ended",
                    message_id=envelope.message_id,
                    sender=envelope.sender,
                )

    async def _call_model(self, messages: list[dict[str, Any]]) -> Message:
        request = ModelRequest(
            agent=self.spec.name,
            model=self.model,
            max_tokens=self.max_tokens,
            system=self.spec.system,
            tools=[t.schema for t in self.tools.values()],
            messages=messages,
            role=self.spec.role,
            stream=self.stream,
        )
        budget = self.ctx.budget
        async with budget.model_slot() as queued:
            with self.tel.chat(
                self.spec.name,
                self.spec.role,
                model=self.model,
                max_tokens=self.max_tokens,
                stream=self.stream,
            ) as call:
                call.record_queue(queued)
                call.record_prompt(self.spec.system, messages)
                self.unseen.clear()  # handed to the model: from here on they count as read
                response = await self.ctx.model.create(request)
                call.record_response(response)
        budget.add_tokens(sum(call.usage.get(k, 0) for k in ("input", "output")))
        return response

    async def _dispatch(self, response: Message) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        via = "tool_result"
        for block in response.content:
            if block.type != "tool_use":
                continue
            call = ToolCall(
                block.id,
                block.name,
                block.input if isinstance(block.input, dict) else {"input": block.input},
            )
            outcome = await self._run_tool(call)
            via = "wait_for_message" if call.name == WAIT_FOR_MESSAGE["name"] else "tool_result"
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": call.id,
                "content": outcome.text if outcome.blocks is None else list(outcome.blocks),
            }
            if outcome.is_error:
                result["is_error"] = True
            results.append(result)
        inbox = self._deliver(via=via)
        if not results:
            return [
                {
                    "type": "text",
                    "text": "(stop_reason was tool_use but no tool was called)" + inbox,
                }
            ]
        last = results[-1]
        if isinstance(last["content"], list):
            if inbox:
                last["content"].append({"type": "text", "text": inbox.lstrip()})
        else:
            last["content"] += inbox  # ← the original cookbook's key line
        return results

    async def _run_tool(self, call: ToolCall) -> ToolOutcome:
        with self.tel.tool(
            self.spec.name, self.spec.role, name=call.name, call_id=call.id, arguments=call.input
        ) as span:
            try:
                tool = self.tools.get(call.name)
                if tool is None:
                    raise ToolError(
                        f"unknown tool {call.name!r}; available: {', '.join(self.tools)}",
                        kind="unknown_tool",
                    )
                outcome = await tool.invoke(call, self._tool_context(call, span))
            except ToolError as exc:
                outcome = ToolOutcome(f"error: {exc}", is_error=True)
                span.record_result(outcome.text, error_type=exc.kind)
                return outcome
            except Exception as exc:  # a bug in a tool: tell the model, keep the agent alive
                outcome = ToolOutcome(
                    f"error: tool {call.name} failed: {type(exc).__name__}: {exc}", is_error=True
                )
                span.record_exception(exc)
                span.record_result(outcome.text, error_type=type(exc).__name__)
                return outcome
            span.record_result(outcome.text)
            return outcome

    def _tool_context(self, call: ToolCall, span: ToolSpan) -> ToolContext:
        hub = self.hub
        return ToolContext(
            agent=self.spec.name,
            role=self.spec.role,
            run_id=self.tel.run_id,
            call_id=call.id,
            span=span.span,
            _send=self.send,
            _states=lambda: {n: str(s) for n, s in hub.states().items()},
            _sleep=self.ctx.config.sleep,
        )

    def _deliver(self, *, via: str) -> str:
        envelopes = self.hub.drain(self.spec.name)
        if not envelopes:
            return ""
        self.tel.receive(self.spec.name, self.spec.role, envelopes, via=via)
        self.unseen.extend(envelopes)
        return render_messages(envelopes)

    # --- the two messaging tools -----------------------------------------------------------
    async def _send_message(self, call: ToolCall) -> str:
        return await self.send(call.input["recipient_ids"], call.input["content"])

    async def send(self, recipient_ids: Sequence[str], content: str) -> str:
        """Post ``content`` to each recipient with a ``send`` span; the send_message result."""
        name = self.spec.name
        recipients: list[str] = list(dict.fromkeys(recipient_ids))
        if not recipients:
            raise ToolError("no recipient given", kind="invalid_recipient")
        too_large = self.ctx.budget.check_message(content)
        if too_large is not None:
            raise ToolError(f"message not sent: {too_large}", kind="too_large")
        if name in recipients:
            raise ToolError(
                f"recipient_ids names yourself ({name!r}); send only to other agents",
                kind="invalid_recipient",
            )
        results: list[PostResult] = []
        for rid in recipients:
            message_id = self.hub.new_message_id()
            with self.tel.send(
                name, self.spec.role, recipient=rid, message_id=message_id, content=content
            ) as send:
                envelope = Envelope(
                    message_id, name, rid, content, self.hub.now_ns(), send.traceparent
                )
                try:
                    result = await self.hub.send(envelope)
                except TransportError as exc:
                    kind = "too_large" if isinstance(exc, MessageTooLargeError) else "transport"
                    raise ToolError(f"message not sent: {exc}", kind=kind) from exc
                send.record_outcome(result.outcome)
            results.append(result)
        return describe_post(results)

    async def _wait_for_message(self, call: ToolCall) -> str:
        timeout = self.ctx.config.wait_timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reason = await self.hub.wait(self.spec.name, timeout)
        finally:
            self.tel.record_wait(self.spec.role, loop.time() - started)
        if reason is WakeReason.TIMEOUT:
            return f"woke: {timeout:g}s timeout"
        if reason is WakeReason.NO_SENDERS:
            return NO_SENDERS_RESULT
        return "woke: new messages"


def describe_post(results: Sequence[PostResult]) -> str:
    """The send_message result: who got the message and who did not, and why."""
    delivered = [r.recipient for r in results if r.outcome == "delivered"]
    text = f"delivered to {delivered}"
    groups: dict[str, list[str]] = {}
    for r in results:
        if r.outcome != "delivered":
            why = "unknown" if r.state is None else str(r.state)
            groups.setdefault(why, []).append(r.recipient)
    if groups:
        text += "; not delivered: " + ", ".join(f"{ids} ({why})" for why, ids in groups.items())
    return text


def _to_params(message: Message) -> list[dict[str, Any]]:
    return [block.model_dump(mode="json", exclude_none=True) for block in message.content]
