"""Span helpers: the only place that starts spans or builds attribute sets.

The runtime calls :class:`RunTelemetry` methods at each step (workflow, agent, chat,
execute_tool, send, receive); each opens one span with the semantic-convention attributes
and records the matching metrics while the span is current, so exemplars carry its trace id.
This module knows nothing of the runtime: messages are anything shaped like
:class:`DeliveredMessage`.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)

from telemetry import semconv as sc
from telemetry.cost import PriceTable, default_prices, uncached_input
from telemetry.metrics import Instruments
from telemetry.redact import redact
from telemetry.version import __version__

#: How many characters of content are kept on spans when capture is off. Enough for the
#: live view's 60-character snippets; stripped before export by the redacting exporter.
LIVE_SNIPPET_CHARS: Final = 4096

#: What a crashing tool's exception message becomes on its span when content capture is off.
REDACTED_EXCEPTION_MESSAGE: Final = "(not recorded: content capture is off)"


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """What content goes on spans: ``max_chars`` characters per value, or none at all."""

    max_chars: int = LIVE_SNIPPET_CHARS
    #: True when content is exported (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT):
    #: only then are whole prompts and responses serialized onto ``chat`` spans.
    capture: bool = False

    def clip(self, text: str) -> str | None:
        """``text`` cut to the limit, or None when content is not recorded."""
        if self.max_chars <= 0:
            return None
        return text if len(text) <= self.max_chars else text[: self.max_chars]


class DeliveredMessage(Protocol):
    """What a receive span needs to know of one message."""

    @property
    def message_id(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def sent_at_ns(self) -> int: ...
    @property
    def traceparent(self) -> str | None: ...


def format_traceparent(ctx: SpanContext) -> str | None:
    """The W3C ``traceparent`` header for ``ctx`` (None for an invalid context)."""
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The remote span context a ``traceparent`` names, or None if it is malformed."""
    if not value:
        return None
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        ctx = SpanContext(
            trace_id=int(parts[1], 16),
            span_id=int(parts[2], 16),
            is_remote=True,
            trace_flags=TraceFlags(int(parts[3], 16) & 0xFF),
        )
    except ValueError:
        return None
    return ctx if ctx.is_valid else None


class _Active:
    """Make ``span`` current (ending it on exit if ``end``).

    ``trace.use_span`` with its exception handling turned off, without its generator:
    exceptions are recorded by the helpers themselves, once, and this runs for most spans.
    """

    __slots__ = ("_end", "_span", "_token")

    def __init__(self, span: Span, *, end: bool = False) -> None:
        self._span = span
        self._end = end

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, *_exc: object) -> None:
        otel_context.detach(self._token)
        if self._end:
            self._span.end()


def _error_type(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return str(status) if isinstance(status, int) else type(exc).__name__


def _exception_attributes(exc: BaseException, message: str) -> dict[str, str]:
    """``exception.message`` and ``exception.stacktrace`` for ``exc``, secrets removed."""
    frames = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        sc.EXCEPTION_MESSAGE: redact(message),
        sc.EXCEPTION_STACKTRACE: redact(frames),
    }


def _mark_failed(span: Span, error_type: str) -> None:
    """``error.type`` and an error status that names the category only (for failures that
    are not exceptions: a limit, an ``is_error`` tool result, whose texts may be content)."""
    span.set_attribute(sc.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def _fail(span: Span, exc: BaseException, error_type: str) -> None:
    # The SDK's record_exception would copy str(exc) and the traceback as they are: an
    # error text from below the HTTP client can quote the API key.
    span.record_exception(exc, attributes=_exception_attributes(exc, str(exc)))
    span.set_attribute(sc.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, redact(f"{type(exc).__name__}: {exc}")))


# --- model attempts (recorded by the anthropic client's middleware) -------------------------
def _clock() -> float:
    """Seconds on the event loop's clock (fake under looptime, so tests get exact figures)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def _count_nothing(_status: int | None, _error: str | None) -> None:
    return None


@dataclass
class _ChatState:
    span: Span
    attempts: int = 0
    #: When the call started, and when its (latest attempt's) stream gave its first content.
    started: float = 0.0
    first_token: float | None = None
    #: Counts one ended attempt in ``orchestrace.model.attempts`` (its HTTP status, if a
    #: response came, and its error.type, if it failed).
    count_attempt: Callable[[int | None, str | None], None] = _count_nothing
    #: The status of the latest attempt that got a response and is not counted yet: its
    #: (possibly streamed) body may still fail, so it ends with the stream or the call.
    open_status: int | None = None
    #: Attempts counted so far (a client that reports none is counted once, at the end).
    counted: int = 0

    def count(self, status: int | None, error: str | None) -> None:
        """Count one ended attempt."""
        self.open_status = None
        self.counted += 1
        self.count_attempt(status, error)


_current_chat: ContextVar[_ChatState | None] = ContextVar("orchestrace_chat", default=None)
#: The agent whose loop runs in this task: its model and tool calls are counted on it.
_current_agent: ContextVar[AgentSpan | None] = ContextVar("orchestrace_agent", default=None)


def begin_model_attempt() -> int:
    """Count one HTTP attempt of the current model call; returns its 0-based number."""
    state = _current_chat.get()
    if state is None:
        return 0
    if state.open_status is not None:  # the previous attempt's response ended well
        state.count(state.open_status, None)
    state.attempts += 1
    state.first_token = None  # a new attempt: its stream has given nothing yet
    return state.attempts - 1


def model_first_token() -> None:
    """The current model call's stream gave its first content (a content block began or
    grew): an ``orchestrace.model.first_token`` event, and the time to first chunk of the
    call (from its start) once it ends. Later calls for the same attempt are ignored."""
    state = _current_chat.get()
    if state is None or state.first_token is not None:
        return
    state.first_token = _clock()
    state.span.add_event(
        sc.EVENT_FIRST_TOKEN,
        {
            sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: state.first_token - state.started,
            sc.HTTP_REQUEST_RESEND_COUNT: max(0, state.attempts - 1),
        },
    )


def model_attempt_failed_mid_stream(*, status_code: int | None, error: str) -> None:
    """Record an attempt whose stream failed after its response began (an ``error`` event,
    a dropped connection, a stall): ``orchestrace.model.attempt_failed`` with
    ``orchestrace.model.failed_mid_stream``. ``status_code`` is the stream's own HTTP status
    (200); ``error`` the error.type the same failure has before a stream."""
    state = _current_chat.get()
    if state is None:
        return
    attributes: dict[str, Any] = {
        sc.HTTP_REQUEST_RESEND_COUNT: max(0, state.attempts - 1),
        sc.ERROR_TYPE: error,
        sc.MODEL_FAILED_MID_STREAM: True,
    }
    if status_code is not None:
        attributes[sc.HTTP_RESPONSE_STATUS_CODE] = status_code
    state.span.add_event(sc.EVENT_ATTEMPT_FAILED, attributes)
    state.count(status_code, error)


def end_model_attempt(attempt: int, *, status_code: int | None, error: str | None) -> None:
    """The response (or failure) of one HTTP attempt: a failed one (HTTP error status or
    connection error) is a span event and counted in ``orchestrace.model.attempts`` now; a
    successful one is counted when its body has been read (:func:`model_attempt_failed_mid_stream`
    or the end of the call)."""
    state = _current_chat.get()
    if state is None:
        return
    if error is None and status_code is not None and status_code < 400:
        state.open_status = status_code
        return
    attributes: dict[str, Any] = {sc.HTTP_REQUEST_RESEND_COUNT: attempt}
    if status_code is not None:
        attributes[sc.HTTP_RESPONSE_STATUS_CODE] = status_code
    error_type = error if error is not None else str(status_code)
    attributes[sc.ERROR_TYPE] = error_type
    state.span.add_event(sc.EVENT_ATTEMPT_FAILED, attributes)
    state.count(status_code, error_type)


# --- handles -----------------------------------------------------------------------------
@dataclass
class AgentSpan:
    """The open ``invoke_agent`` span; :meth:`finish` records how the agent ended."""

    span: Span
    #: Model calls and tool calls this agent made (``gen_ai.invoke_agent.*_calls``).
    inference_calls: int = 0
    tool_calls: int = 0
    #: Tokens of this agent's own answered model calls (latest conventions: set on the span).
    input_tokens: int = 0
    output_tokens: int = 0
    #: error.type of an abnormal end (``gen_ai.invocation.duration``), set by :meth:`finish`.
    error_type: str | None = None

    @property
    def traceparent(self) -> str | None:
        """The agent span's ``traceparent`` (runtime notices about this agent link here)."""
        return format_traceparent(self.span.get_span_context())

    def finish(
        self,
        state: str,
        reason: str,
        *,
        turns: int,
        unread: int = 0,
        error: BaseException | None = None,
        failed: bool = False,
    ) -> None:
        """Set the final state, the reason, and ERROR status for an abnormal end."""
        self.span.set_attribute(sc.AGENT_STATE, str(state))
        self.span.set_attribute(sc.AGENT_END_REASON, reason)
        self.span.set_attribute(sc.AGENT_TURNS, turns)
        self.span.set_attribute(sc.AGENT_UNREAD_MESSAGES, unread)
        if error is not None:
            self.error_type = _error_type(error)
            _fail(self.span, error, self.error_type)
        elif failed:
            self.error_type = reason
            _mark_failed(self.span, reason)


@dataclass
class ChatCall:
    """The open ``chat`` span; :meth:`record_response` adds the response attributes."""

    span: Span
    policy: ContentPolicy = field(default_factory=ContentPolicy)
    usage: dict[str, int] = field(default_factory=dict)
    response_model: str | None = None
    #: The latest GenAI conventions (``gen_ai.usage.cache_write.input_tokens``).
    latest: bool = False

    def record_prompt(self, system: str, messages: Sequence[Mapping[str, Any]]) -> None:
        """With content capture on: the system prompt and input messages (as JSON)."""
        if not self.policy.capture:
            return
        self.span.set_attribute(sc.GEN_AI_SYSTEM_INSTRUCTIONS, self.policy.clip(system) or "")
        self.span.set_attribute(
            sc.GEN_AI_INPUT_MESSAGES, self.policy.clip(_to_json(list(messages))) or ""
        )

    def record_queue(self, seconds: float) -> None:
        """Record time spent waiting for a concurrent-call slot before this call."""
        if seconds > 0:
            self.span.set_attribute(sc.MODEL_QUEUE_SECONDS, seconds)

    def record_response(self, message: Any) -> None:
        """Record id, model, stop reason and token usage of an ``anthropic.types.Message``."""
        usage = message.usage
        cache_read = usage.cache_read_input_tokens or 0
        cache_creation = usage.cache_creation_input_tokens or 0
        input_tokens = usage.input_tokens + cache_read + cache_creation
        self.response_model = message.model
        if self.policy.capture:
            output = [
                {
                    "role": "assistant",
                    "content": [
                        b.model_dump(mode="json", exclude_none=True) for b in message.content
                    ],
                }
            ]
            self.span.set_attribute(
                sc.GEN_AI_OUTPUT_MESSAGES, self.policy.clip(_to_json(output)) or ""
            )
        self.usage = {
            sc.TOKEN_TYPE_INPUT: input_tokens,
            sc.TOKEN_TYPE_OUTPUT: usage.output_tokens,
            "cache_read": cache_read,
            "cache_creation": cache_creation,
        }
        self.span.set_attributes(
            {
                sc.GEN_AI_RESPONSE_ID: message.id,
                sc.GEN_AI_RESPONSE_MODEL: message.model,
                sc.GEN_AI_RESPONSE_FINISH_REASONS: (str(message.stop_reason),),
                sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
                sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cache_read,
                (
                    sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS
                    if self.latest
                    else sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
                ): cache_creation,
            }
        )


@dataclass
class ToolSpan:
    """The open ``execute_tool`` span; :meth:`record_result` adds the outcome."""

    span: Span
    policy: ContentPolicy
    error_type: str | None = None

    def record_exception(self, exc: BaseException) -> None:
        """Record an unexpected exception raised inside the tool (a bug, not bad input).

        An exception's message often echoes the tool's arguments, which are content: unless
        content capture is on, the event keeps the type and the stack frames only.
        """
        if self.policy.capture:
            self.span.record_exception(exc, attributes=_exception_attributes(exc, str(exc)))
            return
        frames = "".join(traceback.format_tb(exc.__traceback__))
        self.span.record_exception(
            exc,
            attributes={
                sc.EXCEPTION_MESSAGE: REDACTED_EXCEPTION_MESSAGE,
                sc.EXCEPTION_STACKTRACE: f"Traceback (most recent call last):\n{frames}"
                f"{type(exc).__name__}: {REDACTED_EXCEPTION_MESSAGE}",
            },
        )

    def record_result(self, text: str, *, error_type: str | None = None) -> None:
        """Record the tool's result; ``error_type`` marks an ``is_error`` result."""
        clipped = self.policy.clip(text)
        if clipped is not None:
            self.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, clipped)
        self.span.set_attribute(sc.TOOL_IS_ERROR, error_type is not None)
        if error_type is not None:
            self.error_type = error_type
            # The status names the category only: error texts echo tool arguments, which
            # are content and stay out of exported spans unless capture is on.
            _mark_failed(self.span, error_type)


@dataclass
class SendSpan:
    """The open ``send`` span: its ``traceparent`` travels in the envelope."""

    span: Span
    traceparent: str | None
    outcome: str | None = None

    def record_outcome(self, outcome: str) -> None:
        """Record what the hub did with the message (delivered, unknown, ended)."""
        self.outcome = str(outcome)
        self.span.set_attribute(sc.MESSAGE_OUTCOME, self.outcome)


class RunTelemetry:
    """Spans and metrics for one run; ``run_id`` becomes ``gen_ai.conversation.id`` (the
    default layout) or ``orchestrace.run.id`` (the latest GenAI conventions)."""

    def _run_id(self) -> dict[str, str]:
        return {sc.RUN_ID if self.latest else sc.GEN_AI_CONVERSATION_ID: self.run_id}

    def __init__(
        self,
        *,
        run_id: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        content: ContentPolicy | None = None,
        prices: PriceTable | None = None,
        latest: bool | None = None,
    ) -> None:
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.run_id = run_id
        #: The latest experimental GenAI conventions instead of the default layout (see
        #: telemetry/semconv.py); None: from ``OTEL_SEMCONV_STABILITY_OPT_IN``.
        self.latest = sc.gen_ai_latest() if latest is None else latest
        self.tracer = provider.get_tracer("orchestrace", __version__)
        self.instruments = Instruments.for_provider(meter_provider)
        self.content = content if content is not None else ContentPolicy()
        #: Prices for the cost metric. The default reads ORCHESTRACE_PRICES here, before the
        #: run starts, so a malformed price file is a ValueError now, not mid-run.
        self.prices = prices if prices is not None else default_prices()

    # --- workflow and agents ---------------------------------------------------------------
    @contextmanager
    def workflow(self, scenario: str, *, backend: str) -> Iterator[Span]:
        """The run's root span, ``invoke_workflow {scenario}``."""
        span = self.tracer.start_span(
            f"{sc.OP_WORKFLOW} {scenario}",
            attributes={
                sc.GEN_AI_OPERATION_NAME: sc.OP_WORKFLOW,
                sc.GEN_AI_WORKFLOW_NAME: scenario,
                **self._run_id(),
                **({sc.GEN_AI_INVOCATION_IS_NESTED: False} if self.latest else {}),
                sc.RUN_SCENARIO: scenario,
                sc.RUN_MODEL_BACKEND: backend,
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        outcome = "completed"
        error_type: str | None = None
        started = time.perf_counter()
        try:
            with _Active(span):
                yield span
        except BaseException as exc:
            outcome = "interrupted" if not isinstance(exc, Exception) else "failed"
            error_type = type(exc).__name__
            _fail(span, exc, error_type)
            raise
        finally:
            span.set_attribute(sc.RUN_OUTCOME, outcome)
            self.instruments.runs.add(1, scenario, outcome)
            attrs: dict[str, str | bool] = {
                sc.GEN_AI_OPERATION_NAME: sc.OP_WORKFLOW,
                sc.GEN_AI_INVOCATION_IS_NESTED: False,
                sc.GEN_AI_WORKFLOW_NAME: scenario,
            }
            if error_type is not None:
                attrs[sc.ERROR_TYPE] = error_type
            self.instruments.invocation_duration.record(
                time.perf_counter() - started, attrs, context=_exemplar_context(span)
            )
            span.end()

    @contextmanager
    def agent(
        self,
        name: str,
        role: str,
        *,
        model: str,
        parent: Context | None = None,
        caller: str | None = None,
    ) -> Iterator[AgentSpan]:
        """``invoke_agent {name}``, a child of ``parent`` (the spawning span); ``caller`` is
        the agent that spawned it. Ends with ``gen_ai.invocation.duration`` and the agent's
        model- and tool-call counts."""
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_AGENT,
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_ANTHROPIC,
            sc.GEN_AI_AGENT_NAME: name,
            sc.GEN_AI_REQUEST_MODEL: model,
            **self._run_id(),
            sc.AGENT_ROLE: role,
        }
        if self.latest:
            attributes[sc.GEN_AI_INVOCATION_IS_NESTED] = True
        else:
            attributes[sc.GEN_AI_AGENT_ID] = f"{self.run_id}/{name}"
        if caller is not None:
            attributes[sc.AGENT_CALLER] = caller
        span = self.tracer.start_span(
            f"{sc.OP_AGENT} {name}",
            context=parent,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        handle = AgentSpan(span)
        token = _current_agent.set(handle)
        started = time.perf_counter()
        try:
            with _Active(span, end=True):
                try:
                    yield handle
                finally:
                    if self.latest:
                        # Its own calls only: a helper's tokens are on the helper's span.
                        span.set_attributes(
                            {
                                sc.GEN_AI_USAGE_INPUT_TOKENS: handle.input_tokens,
                                sc.GEN_AI_USAGE_OUTPUT_TOKENS: handle.output_tokens,
                            }
                        )
        finally:
            _current_agent.reset(token)
            self._record_agent_metrics(handle, role, model, time.perf_counter() - started)

    def _record_agent_metrics(
        self, handle: AgentSpan, role: str, model: str, seconds: float
    ) -> None:
        ins = self.instruments
        ctx = _exemplar_context(handle.span)
        # By role, not gen_ai.agent.name: spawned agents' names are per instance (helper17),
        # and metric labels stay bounded (the span has the name).
        by_role = {sc.AGENT_ROLE: role}
        attrs: dict[str, str | bool] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_AGENT,
            sc.GEN_AI_INVOCATION_IS_NESTED: True,
            sc.GEN_AI_REQUEST_MODEL: model,
            **by_role,
        }
        if handle.error_type is not None:
            attrs[sc.ERROR_TYPE] = handle.error_type
        ins.invocation_duration.record(seconds, attrs, context=ctx)
        ins.inference_calls.record(handle.inference_calls, by_role, context=ctx)
        ins.tool_calls.record(handle.tool_calls, by_role, context=ctx)

    def agent_state_changed(self, role: str, old: str | None, new: str | None) -> None:
        """Move one agent between the state buckets of the ``orchestrace.agents`` gauge.

        ``old`` is None for a new agent, ``new`` None for one retired at the end of a run.
        """
        self.instruments.agent_states.move(
            role, None if old is None else str(old), None if new is None else str(new)
        )

    # --- model calls -------------------------------------------------------------------------
    @contextmanager
    def chat(
        self, agent: str, role: str, *, model: str, max_tokens: int, stream: bool = False
    ) -> Iterator[ChatCall]:
        """``chat {model}`` (CLIENT) around one model call, with retries as events.

        A streamed call (``stream``) whose response gave content also gets the time to its
        first chunk (attribute and histogram) and, answered, the time per output token.
        """
        span = self.tracer.start_span(
            f"{sc.OP_CHAT} {model}",
            kind=SpanKind.CLIENT,
            attributes={
                sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
                sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_ANTHROPIC,
                sc.GEN_AI_REQUEST_MODEL: model,
                sc.GEN_AI_REQUEST_MAX_TOKENS: max_tokens,
                sc.GEN_AI_REQUEST_STREAM: stream,
                sc.GEN_AI_AGENT_NAME: agent,
                **self._run_id(),
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        call = ChatCall(span, self.content, latest=self.latest)
        owner = _current_agent.get()
        if owner is not None:
            owner.inference_calls += 1
        attempts = self.instruments.model_attempts

        def count_attempt(status: int | None, error: str | None) -> None:
            attempts.add(
                1,
                sc.OP_CHAT,
                sc.PROVIDER_ANTHROPIC,
                model,
                "" if status is None else str(status),
                error or "",
            )

        state = _ChatState(span, started=_clock(), count_attempt=count_attempt)
        token = _current_chat.set(state)
        started = time.perf_counter()
        error_type: str | None = None
        try:
            with _Active(span):
                yield call
        except BaseException as exc:
            error_type = _error_type(exc)
            _fail(span, exc, error_type)
            if self.latest and call.response_model is None:
                # The latest conventions: a finish reason expected but never received
                # (the call failed, was cancelled, or its stream broke) is reported as error.
                span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, ("error",))
            raise
        finally:
            ended = _clock()
            _current_chat.reset(token)
            if state.open_status is not None or state.counted == 0:
                # The last response's body was read (or failed as error_type); a client
                # that reports no attempts (the scripted model) made one.
                state.count(state.open_status, error_type)
            if state.attempts > 1:
                span.set_attribute(sc.HTTP_REQUEST_RESEND_COUNT, state.attempts - 1)
            self._record_chat_metrics(
                span, call, model, role, time.perf_counter() - started, error_type
            )
            if owner is not None and call.usage:
                owner.input_tokens += call.usage[sc.TOKEN_TYPE_INPUT]
                owner.output_tokens += call.usage[sc.TOKEN_TYPE_OUTPUT]
            if state.first_token is not None:
                self._record_stream_metrics(
                    span,
                    call,
                    model,
                    state.first_token - state.started,
                    ended - state.first_token,
                    error_type,
                )
            span.end()

    def _record_stream_metrics(
        self,
        span: Span,
        call: ChatCall,
        model: str,
        first: float,
        rest: float,
        error_type: str | None,
    ) -> None:
        """Time to first chunk (any call whose last attempt gave content) and time per
        output token (answered calls of two tokens or more): ``first`` is the seconds to the
        first content, ``rest`` those after it, on the event loop's clock."""
        span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, first)
        attrs: dict[str, str] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_ANTHROPIC,
            sc.GEN_AI_REQUEST_MODEL: model,
        }
        if call.response_model is not None:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = call.response_model
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
        ctx = _exemplar_context(span)
        ins = self.instruments
        ttfc = ins.inference_time_to_first_chunk if self.latest else ins.time_to_first_chunk
        ttfc.record(first, attrs, context=ctx)
        output = call.usage.get(sc.TOKEN_TYPE_OUTPUT, 0)
        if error_type is None and call.response_model is not None and output > 1:
            ins.time_per_output_token.record(rest / (output - 1), attrs, context=ctx)

    def _record_chat_metrics(
        self,
        span: Span,
        call: ChatCall,
        model: str,
        role: str,
        seconds: float,
        error_type: str | None,
    ) -> None:
        attrs: dict[str, str] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_ANTHROPIC,
            sc.GEN_AI_REQUEST_MODEL: model,
        }
        if call.response_model is not None:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = call.response_model
        ins = self.instruments
        ctx = _exemplar_context(span)
        duration = ins.inference_duration if self.latest else ins.operation_duration
        duration.record(
            seconds,
            attrs if error_type is None else {**attrs, sc.ERROR_TYPE: error_type},
            context=ctx,
        )
        if not call.usage or call.response_model is None:
            return
        if self.latest:
            self._record_token_counters(call, model, call.response_model)
            ins.inference_operation_input_tokens.record(
                call.usage[sc.TOKEN_TYPE_INPUT], attrs, context=ctx
            )
            ins.inference_operation_output_tokens.record(
                call.usage[sc.TOKEN_TYPE_OUTPUT], attrs, context=ctx
            )
        else:
            for token_type in (sc.TOKEN_TYPE_INPUT, sc.TOKEN_TYPE_OUTPUT):
                ins.token_usage.record(
                    call.usage[token_type],
                    {**attrs, sc.GEN_AI_TOKEN_TYPE: token_type},
                    context=ctx,
                )
            for kind in ("cache_read", "cache_creation"):
                if call.usage[kind]:
                    ins.cache_tokens.add(
                        call.usage[kind],
                        sc.OP_CHAT,
                        sc.PROVIDER_ANTHROPIC,
                        model,
                        call.response_model,
                        kind,
                    )
        # Priced by the model that answered (what is billed); an unknown model records no
        # cost rather than a cost of 0.
        price = self.prices.price(call.response_model)
        if price is not None:
            usage = call.usage
            ins.cost.add(
                price.cost(
                    uncached_input(
                        usage[sc.TOKEN_TYPE_INPUT], usage["cache_read"], usage["cache_creation"]
                    ),
                    usage[sc.TOKEN_TYPE_OUTPUT],
                    usage["cache_read"],
                    usage["cache_creation"],
                ),
                sc.OP_CHAT,
                sc.PROVIDER_ANTHROPIC,
                model,
                call.response_model,
            )
        ins.agent_turns.add(1, role)

    def _record_token_counters(self, call: ChatCall, model: str, response_model: str) -> None:
        """The latest conventions' token counters (input includes the cached tokens)."""
        ins = self.instruments
        labels = (sc.OP_CHAT, sc.PROVIDER_ANTHROPIC, model, response_model, sc.TOKEN_MODALITY_TEXT)
        usage = call.usage
        ins.inference_input_tokens.add(usage[sc.TOKEN_TYPE_INPUT], *labels)
        ins.inference_output_tokens.add(usage[sc.TOKEN_TYPE_OUTPUT], *labels)
        ins.inference_cache_read_tokens.add(usage["cache_read"], *labels)
        ins.inference_cache_write_tokens.add(usage["cache_creation"], *labels)

    # --- tools -------------------------------------------------------------------------------
    @contextmanager
    def tool(
        self, agent: str, role: str, *, name: str, call_id: str, arguments: Mapping[str, Any]
    ) -> Iterator[ToolSpan]:
        """``execute_tool {name}`` around one tool dispatch."""
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_TOOL,
            sc.GEN_AI_TOOL_NAME: name,
            sc.GEN_AI_TOOL_CALL_ID: call_id,
            sc.GEN_AI_TOOL_TYPE: sc.TOOL_TYPE_FUNCTION,
            sc.GEN_AI_AGENT_NAME: agent,
        }
        if self.content.max_chars > 0:
            clipped = self.content.clip(_to_json(arguments))
            attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = clipped
        span = self.tracer.start_span(
            f"{sc.OP_TOOL} {name}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        handle = ToolSpan(span, self.content)
        owner = _current_agent.get()
        if owner is not None:
            owner.tool_calls += 1
        started = time.perf_counter()
        try:
            with _Active(span):
                yield handle
        except BaseException as exc:
            if isinstance(exc, Exception):
                handle.error_type = type(exc).__name__
                _fail(span, exc, handle.error_type)
            else:  # cancelled (the agent was killed) or interrupted: not the tool's fault
                span.set_attribute(sc.TOOL_CANCELLED, True)
            raise
        finally:
            attrs = {
                sc.GEN_AI_TOOL_NAME: name,
                sc.GEN_AI_TOOL_TYPE: sc.TOOL_TYPE_FUNCTION,
                sc.AGENT_ROLE: role,
            }
            if handle.error_type is not None:
                attrs[sc.ERROR_TYPE] = handle.error_type
            self.instruments.tool_duration.record(
                time.perf_counter() - started, attrs, context=_exemplar_context(span)
            )
            span.end()

    def record_wait(self, role: str, seconds: float) -> None:
        """Record time an agent spent blocked waiting for messages."""
        self.instruments.agent_wait.record(seconds, {sc.AGENT_ROLE: role})

    # --- messaging ---------------------------------------------------------------------------
    @contextmanager
    def send(
        self, sender: str, role: str, *, recipient: str, message_id: str, content: str
    ) -> Iterator[SendSpan]:
        """``send {recipient}`` (PRODUCER) for one message to one recipient."""
        attributes: dict[str, Any] = {
            sc.MESSAGING_SYSTEM: sc.MESSAGING_SYSTEM_ORCHESTRACE,
            sc.MESSAGING_OPERATION_TYPE: sc.OP_SEND,
            sc.MESSAGING_OPERATION_NAME: sc.OP_SEND,
            sc.MESSAGING_DESTINATION_NAME: recipient,
            sc.MESSAGING_MESSAGE_ID: message_id,
            sc.GEN_AI_AGENT_NAME: sender,
        }
        clipped = self.content.clip(content)
        if clipped is not None:
            attributes[sc.MESSAGE_CONTENT] = clipped
        span = self.tracer.start_span(
            f"{sc.OP_SEND} {recipient}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        handle = SendSpan(span, format_traceparent(span.get_span_context()))
        try:
            with _Active(span):
                yield handle
            self.instruments.messages_sent.add(1, role, handle.outcome or "unknown")
        finally:
            span.end()

    def receive(
        self, agent: str, role: str, messages: Sequence[DeliveredMessage], *, via: str
    ) -> None:
        """One ``receive {agent}`` span for a delivery, linked to each message's send span."""
        now = time.time_ns()
        links: list[Link] = []
        waits: list[float] = []
        for m in messages:
            wait = max(0, now - m.sent_at_ns) / 1e9
            waits.append(wait)
            ctx = parse_traceparent(m.traceparent)
            if ctx is None:
                continue
            attrs: dict[str, Any] = {
                sc.MESSAGING_MESSAGE_ID: m.message_id,
                sc.MESSAGE_SENDER: m.sender,
                sc.MESSAGE_WAIT_SECONDS: wait,
            }
            clipped = self.content.clip(m.content)
            if clipped is not None:
                attrs[sc.MESSAGE_CONTENT] = clipped
            links.append(Link(ctx, attrs))
        span = self.tracer.start_span(
            f"{sc.OP_RECEIVE} {agent}",
            kind=SpanKind.CLIENT,
            links=links,
            attributes={
                sc.MESSAGING_SYSTEM: sc.MESSAGING_SYSTEM_ORCHESTRACE,
                sc.MESSAGING_OPERATION_TYPE: sc.OP_RECEIVE,
                sc.MESSAGING_OPERATION_NAME: sc.OP_RECEIVE,
                sc.MESSAGING_DESTINATION_NAME: agent,
                sc.MESSAGING_BATCH_MESSAGE_COUNT: len(messages),
                sc.GEN_AI_AGENT_NAME: agent,
                sc.DELIVERY_VIA: via,
            },
        )
        self.instruments.messages_received.add(len(messages), role)
        attrs_metric = {sc.AGENT_ROLE: role}
        exemplar = _exemplar_context(span)
        for wait in waits:
            self.instruments.delivery_latency.record(wait, attrs_metric, context=exemplar)
        span.end()


def _exemplar_context(span: Span) -> Context:
    """A context holding ``span``: measurements recorded with it carry its trace as exemplar.

    Handed to ``record(..., context=)`` rather than attaching the span around the call,
    which would cost a context attach and detach per measurement.
    """
    return trace.set_span_in_context(span, _EMPTY_CONTEXT)


_EMPTY_CONTEXT: Final = Context()


def current_context() -> Context:
    """The active context, to hand explicitly to a task that starts a child agent."""
    return otel_context.get_current()


def _to_json(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)
