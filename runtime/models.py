"""The model seam: a ModelClient protocol and the anthropic-backed implementation."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import anthropic
import httpx2
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message, Usage
from opentelemetry.trace import TracerProvider

from runtime.errors import ConfigurationError, MalformedResponseError
from runtime.run_defaults import DEFAULT_MODEL, MODEL_ENV, default_model
from telemetry import compat, settings, spans

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV",
    "AnthropicModel",
    "ModelClient",
    "ModelRequest",
    "checked_message",
    "default_model",
]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One Messages API call, plus the name of the agent making it.

    ``model``, ``max_tokens``, ``system``, ``tools`` and ``messages`` are the Messages API's
    parameters, as :class:`AnthropicModel` sends them; ``messages[0]`` is the agent's first
    user turn (its task).
    """

    agent: str
    model: str
    max_tokens: int
    system: str
    tools: Sequence[dict[str, Any]]
    messages: Sequence[dict[str, Any]]
    #: The agent's role: ``lead``, ``member``, or the template a spawned agent came from.
    role: str = ""
    #: Stream the response (server-sent events) instead of waiting for it whole: the same
    #: Message either way, plus the time to its first token on the ``chat`` span.
    stream: bool = False


class ModelClient(Protocol):
    """Anything that turns a :class:`ModelRequest` into an ``anthropic.types.Message``.

    Pass one as ``run(model=...)`` or ``override(model=...)``: another gateway, a recorded
    conversation, a fake for a test. Example, a model that echoes the task::

        class Echo:
            backend = "echo"

            async def create(self, request: ModelRequest) -> Message:
                return Message(
                    id="msg_1", type="message", role="assistant", model=request.model,
                    content=[TextBlock(type="text", text=request.messages[0]["content"])],
                    stop_reason="end_turn", stop_sequence=None,
                    usage=Usage(input_tokens=10, output_tokens=5),
                )

            async def close(self) -> None:
                pass

        orchestrace.run_sync(Agent("a", "Echo."), "hello", model=Echo()).text  # 'hello'
    """

    @property
    def backend(self) -> str:
        """A short name for logs and spans: ``anthropic`` or ``scripted``."""

    async def create(self, request: ModelRequest) -> Message:
        """Run one model call; raise ``anthropic.APIError`` subclasses on failure.

        With ``request.stream``, a client that streams calls
        :func:`telemetry.spans.model_first_token` when the first content arrives; one that
        cannot stream answers as it would without.
        """

    async def close(self) -> None:
        """Release connections (called once the run is over)."""


class _AttemptRecorder(anthropic.Middleware):
    """Records every HTTP attempt after the first on the current ``chat`` span.

    The SDK retries 429, 529, 5xx and connection errors itself; this middleware runs inside
    its retry loop, so each retry becomes a span event and the final resend count an
    attribute — retries are visible in Jaeger even though the call finally succeeded. A
    stream that fails after its 200 is recorded by :class:`AnthropicModel`, which retries it.
    """

    async def handle_async(
        self, request: anthropic.APIRequest, call_next: anthropic.AsyncCallNext
    ) -> anthropic.AsyncAPIResponse[Any]:
        attempt = spans.begin_model_attempt()
        try:
            response = await call_next(request)
        except Exception as exc:
            spans.end_model_attempt(attempt, status_code=None, error=type(exc).__name__)
            raise
        spans.end_model_attempt(attempt, status_code=response.status_code, error=None)
        return response


#: Seconds one HTTP attempt may take before it is abandoned (the SDK's own default is
#: 600); ``ORCHESTRACE_MODEL_TIMEOUT`` overrides it.
DEFAULT_MODEL_TIMEOUT: Final = settings.MODEL_TIMEOUT.default
MODEL_TIMEOUT_ENV: Final = settings.MODEL_TIMEOUT.name
#: Retries after a failed attempt (429, 529, 5xx, connection errors, timeouts);
#: ``ORCHESTRACE_MODEL_RETRIES`` overrides it.
DEFAULT_MODEL_RETRIES: Final = int(settings.MODEL_RETRIES.default)
MODEL_RETRIES_ENV: Final = settings.MODEL_RETRIES.name

#: The HTTP status the Messages API gives each error type
#: (https://docs.anthropic.com/en/api/errors). An ``error`` event in a stream arrives after
#: the stream's 200, and the SDK raises it as a bare APIStatusError with status 200; it is
#: raised instead as the SDK's error for this status, so it is retried, recorded and
#: reported (error.type, the agent's end reason) like the same error before a stream.
STREAM_ERROR_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_STATUS_ERRORS: Final[dict[int, type[anthropic.APIStatusError]]] = {
    400: anthropic.BadRequestError,
    401: anthropic.AuthenticationError,
    402: anthropic.PaymentRequiredError,
    403: anthropic.PermissionDeniedError,
    404: anthropic.NotFoundError,
    413: anthropic.RequestTooLargeError,
    429: anthropic.RateLimitError,
    500: anthropic.InternalServerError,
    504: anthropic.GatewayTimeoutError,
    529: anthropic.OverloadedError,
}
#: Content events: the first of them is the response's first token.
_CONTENT_EVENTS: Final = frozenset({"content_block_start", "content_block_delta"})


def _setting(setting: settings.Setting[float]) -> float:
    """A model setting from the environment; ConfigurationError naming the variable for a
    bad value (a one-line error, exit 2, on the command line)."""
    try:
        return setting.get()
    except settings.SettingError as exc:
        raise ConfigurationError(str(exc)) from exc


class AnthropicModel:
    """A :class:`ModelClient` on the real ``anthropic.AsyncAnthropic`` client.

    Every attempt is bounded: ``timeout`` seconds (default ``ORCHESTRACE_MODEL_TIMEOUT``,
    else 300) and ``max_retries`` retries (default ``ORCHESTRACE_MODEL_RETRIES``, else 2),
    so a server that accepts a request and never answers ends the agent with
    ``APITimeoutError`` in bounded time. Raises :class:`ConfigurationError` for a malformed
    setting.

    The SDK's own OpenTelemetry spans are disabled (``open_telemetry={"traces": False}``):
    orchestrace's ``chat`` span is the one CLIENT span per call, and the SDK's retries are
    recorded on it by :class:`_AttemptRecorder`. ``sdk_traces=True`` turns the SDK's spans
    back on (they would duplicate ours; tests use it to show the difference).

    A request with ``stream`` uses the SDK's streaming API (``messages.stream``) and returns
    the Message it assembles (``get_final_message()``). The timeout then bounds each wait
    for the next bytes, not the whole answer: a long answer is not cut off while it keeps
    coming, a stalled stream still ends. The SDK retries what fails before the stream; a
    stream that fails after its 200 (an ``error`` event such as ``overloaded_error``, a
    dropped connection, a stall) is retried here, from the same retry budget, after
    ``stream_retry_delay`` seconds (doubling, at most 8, as the SDK's own backoff).
    """

    backend: Final = "anthropic"

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        sdk_traces: bool = False,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if client is None:
            if timeout is None:
                timeout = _setting(settings.MODEL_TIMEOUT)
            if max_retries is None:
                max_retries = int(_setting(settings.MODEL_RETRIES))
            options: dict[str, Any] = {"timeout": timeout}
            otel: dict[str, Any] = {"traces": sdk_traces}
            if tracer_provider is not None:
                otel["tracer_provider"] = tracer_provider
            client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=max_retries,
                open_telemetry=otel,  # type: ignore[arg-type]
                middleware=[_AttemptRecorder()],
                **options,
            )
        self._client = client
        #: Seconds before the first retry of a stream that failed mid-way.
        self.stream_retry_delay = 0.5

    async def create(self, request: ModelRequest) -> Message:
        """Call ``messages.create``, or ``messages.stream`` for ``request.stream`` (the SDK
        retries transient errors itself).

        A 200 whose body is not a Messages API response (not JSON, HTML from a proxy, fields
        missing) raises :class:`MalformedResponseError` instead of surfacing later as an
        ``AttributeError`` deep in the agent loop.
        """
        if request.stream:
            return await self._stream(request)
        try:
            response: object = await self._client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                system=request.system,
                tools=list(request.tools),  # type: ignore[arg-type]
                messages=list(request.messages),  # type: ignore[arg-type]
            )
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # the SDK's parsing
            raise MalformedResponseError(f"unparseable response body: {exc}") from exc
        return checked_message(response)

    async def _stream(self, request: ModelRequest) -> Message:
        """One streamed call: the SDK's Message, with streams that fail mid-way retried."""
        client = self._client
        retries = client.max_retries  # left for this call, before and within streams
        delay = self.stream_retry_delay
        while True:
            async with client.messages.stream(
                model=request.model,
                max_tokens=request.max_tokens,
                system=request.system,
                tools=list(request.tools),  # type: ignore[arg-type]
                messages=list(request.messages),  # type: ignore[arg-type]
            ) as stream:  # what fails before the stream, the SDK has retried: it propagates
                retries -= _retries_taken(stream.response)
                try:
                    return checked_message(await _read_stream(stream))
                except MalformedResponseError:
                    raise
                except (ValueError, TypeError, AttributeError, KeyError, AssertionError) as exc:
                    raise MalformedResponseError(f"unparseable event stream: {exc}") from exc
                except (anthropic.APIError, httpx2.TransportError) as exc:
                    error = _mid_stream_error(exc, stream.response)
                    spans.model_attempt_failed_mid_stream(
                        status_code=stream.response.status_code, error=_error_name(error)
                    )
                    if retries <= 0 or not _retried(error):
                        if error is exc:
                            raise
                        raise error from exc
            retries -= 1
            await asyncio.sleep(delay * (1 - 0.25 * random.random()))  # the SDK's jitter
            delay = min(delay * 2, 8.0)
            client = self._client.with_options(max_retries=retries)

    async def close(self) -> None:
        """Close the underlying HTTP client."""
        await self._client.close()

    async def __aenter__(self) -> AnthropicModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _read_stream(stream: AsyncMessageStream[Any]) -> Message:
    """Read ``stream`` to its end, marking its first content; its assembled Message.

    Not an event stream at all is a malformed response; a stream that ends without
    ``message_stop`` (a connection closed cleanly mid-way) is a connection error.
    """
    started = first = stopped = False
    async for event in stream:
        kind = event.type
        if kind in _CONTENT_EVENTS:
            if not first:
                first = True
                spans.model_first_token()
        elif kind == "message_start":
            started = True
        elif kind == "message_stop":
            stopped = True
    if not started:
        raise MalformedResponseError("the response is not an event stream (no message_start)")
    if not stopped:
        raise anthropic.APIConnectionError(
            message="the stream ended before message_stop", request=stream.response.request
        )
    return await stream.get_final_message()


def _retries_taken(response: httpx2.Response) -> int:
    """How many retries the SDK took before ``response`` (its retry-count header)."""
    try:
        return max(0, int(response.request.headers.get("x-stainless-retry-count", "0")))
    except ValueError:
        return 0


def _mid_stream_error(exc: Exception, response: httpx2.Response) -> Exception:
    """``exc`` from the middle of a stream as the SDK raises the same failure before one:
    an ``error`` event as its status's error, a read timeout as APITimeoutError, any other
    transport failure (a dropped connection) as APIConnectionError."""
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code < 400:
        status = STREAM_ERROR_STATUS.get(str(exc.type), 500)
        cls = _STATUS_ERRORS.get(status, anthropic.InternalServerError)
        error = cls(exc.message, response=exc.response, body=exc.body)
        # The status the API gives this error type; error.response is still the stream's 200.
        cast(Any, error).status_code = status
        return error
    if isinstance(exc, httpx2.TimeoutException):
        return anthropic.APITimeoutError(request=response.request)
    if isinstance(exc, httpx2.TransportError):
        return anthropic.APIConnectionError(
            message=f"the stream broke off: {type(exc).__name__}", request=response.request
        )
    return exc


def _error_name(exc: Exception) -> str:
    """error.type as the chat span records it: the HTTP status, else the exception's type."""
    status = getattr(exc, "status_code", None)
    return str(status) if isinstance(status, int) else type(exc).__name__


def _retried(exc: Exception) -> bool:
    """Whether the SDK would retry this failure: connection errors and timeouts, 408, 409,
    429 and 5xx."""
    if isinstance(exc, anthropic.APIConnectionError):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


#: The largest token count believed: what every JSON reader holds exactly (a double's
#: integers), far beyond any real response. Larger, negative, fractional or boolean counts
#: are a malformed response: they would lower the run's token budget (negative) or be
#: shown live but dropped from the spans file (beyond int64).
MAX_TOKEN_COUNT: Final = 2**53 - 1
_COUNTS: Final = (
    ("input_tokens", True),
    ("output_tokens", True),
    ("cache_read_input_tokens", False),
    ("cache_creation_input_tokens", False),
)
#: Content block fields the agent loop and the telemetry read, by block type.
_BLOCK_FIELDS: Final = {"text": ("text",), "tool_use": ("id", "name")}


def checked_message(response: object) -> Message:
    """``response`` if it has what the agent loop relies on, else MalformedResponseError.

    The SDK builds responses without validation, so a ``{}`` body becomes a ``Message``
    with no attributes at all, a content block may be a number, and a token count may be
    negative; this is the one place that finds out.
    """
    if not isinstance(response, Message):
        raise MalformedResponseError(f"expected a message, got {type(response).__name__}")
    fields = compat.given_fields(response)
    missing = [f for f in ("id", "model", "content", "usage") if fields.get(f) is None]
    if missing:
        raise MalformedResponseError(f"response lacks {', '.join(missing)}")
    if not isinstance(response.content, list):
        raise MalformedResponseError("response content is not a list")
    for index, block in enumerate(response.content):
        _check_block(index, block)
    usage = compat.given_fields(response.usage) if isinstance(response.usage, Usage) else {}
    if not all(k in usage for k, required in _COUNTS if required):
        raise MalformedResponseError("response usage lacks input_tokens / output_tokens")
    for key, required in _COUNTS:
        value = usage.get(key)
        if value is None and not required:
            continue
        if type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT:
            raise MalformedResponseError(
                f"response usage {key}={str(value)[:40]} is not a token count "
                f"(a whole number from 0 to {MAX_TOKEN_COUNT})"
            )
    return response


def _check_block(index: int, block: object) -> None:
    """MalformedResponseError unless ``block`` is a content block with a string type and,
    for the types the loop reads, the string fields it reads (``input`` for tool use)."""
    fields = compat.given_fields(block)
    kind = fields.get("type")
    if not isinstance(kind, str):
        raise MalformedResponseError(
            f"response content[{index}] is not a content block with a type"
        )
    wanted = _BLOCK_FIELDS.get(kind, ())
    bad = [f for f in wanted if not isinstance(fields.get(f), str)]
    if kind == "tool_use" and "input" not in fields:
        bad.append("input")
    if bad:
        raise MalformedResponseError(
            f"response content[{index}] ({kind}) lacks a valid {', '.join(bad)}"
        )
