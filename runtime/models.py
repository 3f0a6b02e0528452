"""The model seam: a ModelClient protocol and the anthropic-backed implementation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anthropic
from anthropic.types import Message, Usage
from opentelemetry.trace import TracerProvider

from runtime.defaults import DEFAULT_MODEL, MODEL_ENV, default_model
from runtime.errors import ConfigurationError, MalformedResponseError
from telemetry import spans

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
    """One Messages API call, plus the name of the agent making it."""

    agent: str
    model: str
    max_tokens: int
    system: str
    tools: Sequence[dict[str, Any]]
    messages: Sequence[dict[str, Any]]
    #: The agent's role: ``lead``, ``member``, or the template a spawned agent came from.
    role: str = ""


class ModelClient(Protocol):
    """Anything that turns a :class:`ModelRequest` into an ``anthropic.types.Message``."""

    @property
    def backend(self) -> str:
        """A short name for logs and spans: ``anthropic`` or ``scripted``."""

    async def create(self, request: ModelRequest) -> Message:
        """Run one model call; raise ``anthropic.APIError`` subclasses on failure."""

    async def close(self) -> None:
        """Release connections (called once the run is over)."""


class _AttemptRecorder(anthropic.Middleware):
    """Records every HTTP attempt after the first on the current ``chat`` span.

    The SDK retries 429, 529, 5xx and connection errors itself; this middleware runs inside
    its retry loop, so each retry becomes a span event and the final resend count an
    attribute — retries are visible in Jaeger even though the call finally succeeded.
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
DEFAULT_MODEL_TIMEOUT: Final = 300.0
MODEL_TIMEOUT_ENV: Final = "ORCHESTRACE_MODEL_TIMEOUT"
#: Retries after a failed attempt (429, 529, 5xx, connection errors, timeouts);
#: ``ORCHESTRACE_MODEL_RETRIES`` overrides it.
DEFAULT_MODEL_RETRIES: Final = 2
MODEL_RETRIES_ENV: Final = "ORCHESTRACE_MODEL_RETRIES"


def _env_number(name: str, default: float, *, integer: bool = False) -> float:
    """A non-negative, finite number from the environment; ConfigurationError naming the
    variable for anything else (a one-line error, exit 2, on the command line)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if not raw.strip().isascii() or not (0 <= value < float("inf")):
        kind = "a whole number >= 0" if integer else "a number of seconds > 0"
        raise ConfigurationError(f"{name}={raw!r}: expected {kind}")
    if not integer and value == 0:
        raise ConfigurationError(f"{name}={raw!r}: expected a number of seconds > 0")
    return value


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
                timeout = _env_number(MODEL_TIMEOUT_ENV, DEFAULT_MODEL_TIMEOUT)
            if max_retries is None:
                max_retries = int(
                    _env_number(MODEL_RETRIES_ENV, DEFAULT_MODEL_RETRIES, integer=True)
                )
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

    async def create(self, request: ModelRequest) -> Message:
        """Call ``messages.create`` (the SDK retries transient errors itself).

        A 200 whose body is not a Messages API response (not JSON, HTML from a proxy, fields
        missing) raises :class:`MalformedResponseError` instead of surfacing later as an
        ``AttributeError`` deep in the agent loop.
        """
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

    async def close(self) -> None:
        """Close the underlying HTTP client."""
        await self._client.close()

    async def __aenter__(self) -> AnthropicModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def checked_message(response: object) -> Message:
    """``response`` if it has what the agent loop relies on, else MalformedResponseError.

    The SDK builds responses without validation, so a ``{}`` body becomes a ``Message``
    with no attributes at all; this is the one place that finds out.
    """
    if not isinstance(response, Message):
        raise MalformedResponseError(f"expected a message, got {type(response).__name__}")
    fields = response.__dict__
    missing = [f for f in ("id", "model", "content", "usage") if f not in fields]
    if missing:
        raise MalformedResponseError(f"response lacks {', '.join(missing)}")
    if not isinstance(response.content, list):
        raise MalformedResponseError("response content is not a list")
    usage = response.usage.__dict__ if isinstance(response.usage, Usage) else {}
    if not all(isinstance(usage.get(k), int) for k in ("input_tokens", "output_tokens")):
        raise MalformedResponseError("response usage lacks input_tokens / output_tokens")
    return response
