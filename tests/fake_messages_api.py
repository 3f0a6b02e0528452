"""An in-process fake of the Anthropic Messages API for tests.

`FakeMessagesAPI` is a stdlib HTTP server (``ThreadingHTTPServer`` on
``127.0.0.1``, an ephemeral port, a daemon thread) that speaks enough of the
Messages API for the real ``anthropic.AsyncAnthropic`` / ``anthropic.Anthropic``
clients to be pointed at it::

    with FakeMessagesAPI() as api:
        api.fail(429, "rate_limit_error", "slow down")
        api.reply_tool_use("search", {"q": "otel"})
        client = anthropic.AsyncAnthropic(base_url=api.url, api_key="test", max_retries=2)
        message = await client.messages.create(...)
        assert len(api.requests) == 2

Replies are scripted: a FIFO queue of replies (messages, API errors, raw
responses) is consumed one per ``POST /v1/messages``; when it is empty an
optional *responder* callable decides the reply from the request body; when
there is neither, the server answers ``500 api_error`` with
``x-should-retry: false`` so a forgotten script fails fast instead of retrying.

Retry timing: the SDK honours ``retry-after-ms`` (milliseconds, any positive
float) before ``retry-after`` (seconds or an HTTP date) and only when the value
is ``> 0``; otherwise it falls back to exponential backoff starting at 0.5 s.
So every reply whose status the SDK retries (408, 409, 429, >= 500) carries
``retry-after-ms: 1`` unless the reply sets ``retry-after`` or
``retry-after-ms`` itself, which keeps retries at ~1 ms.

Requests whose body has ``"stream": true`` get a message reply as a
server-sent event stream, as the API sends one: ``message_start``, a ``ping``,
each content block as ``content_block_start``, a few ``content_block_delta``
(``text_delta``, ``input_json_delta``) and ``content_block_stop``, then
``message_delta`` and ``message_stop``, one HTTP chunk per event
(``Transfer-Encoding: chunked``), so ``client.messages.stream(...)`` works too.
A `StreamReply` paces the events and can end the stream early the ways a real
one can: an ``error`` event after the 200 (``overloaded_error``), a dropped
connection, or a stall. Errors before the stream are plain JSON.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias, cast

__all__ = [
    "DEFAULT_MODEL",
    "ErrorReply",
    "FakeMessagesAPI",
    "MessageReply",
    "RawReply",
    "RecordedRequest",
    "Reply",
    "Responder",
    "StreamReply",
    "error_body",
    "message",
    "text_block",
    "text_message",
    "tool_use_block",
    "tool_use_message",
]

JSONObject: TypeAlias = dict[str, Any]

DEFAULT_MODEL: Final = "claude-fake-model"
"""Model name used in replies when neither the reply nor the request names one."""

MESSAGES_PATH: Final = "/v1/messages"

# Statuses `anthropic._base_client.BaseClient._should_retry` retries (absent `x-should-retry`).
_RETRIED_STATUSES: Final = frozenset({408, 409, 429})

_ERROR_TYPE_BY_STATUS: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _is_retried_status(status: int) -> bool:
    return status in _RETRIED_STATUSES or status >= 500


# --------------------------------------------------------------------------- bodies


def _new_id(prefix: str) -> str:
    return f"{prefix}_fake{uuid.uuid4().hex[:20]}"


def text_block(text: str) -> JSONObject:
    """A ``text`` content block."""
    return {"type": "text", "text": text}


def tool_use_block(
    name: str, input: Mapping[str, Any], *, tool_use_id: str | None = None
) -> JSONObject:
    """A ``tool_use`` content block; ``tool_use_id`` defaults to a fresh ``toolu_...`` id."""
    return {
        "type": "tool_use",
        "id": tool_use_id or _new_id("toolu"),
        "name": name,
        "input": dict(input),
    }


def message(
    content: Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    stop_reason: str | None = "end_turn",
    stop_sequence: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 10,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    message_id: str | None = None,
) -> JSONObject:
    """A Messages API response body (``type: "message"``).

    ``model=None`` leaves ``"model": null``; the server then fills in the model
    the request asked for (as the real API echoes it).
    """
    return {
        "id": message_id or _new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [dict(block) for block in content],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
        },
    }


def text_message(
    text: str,
    *,
    model: str | None = None,
    stop_reason: str | None = "end_turn",
    stop_sequence: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 10,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    message_id: str | None = None,
) -> JSONObject:
    """A response body with a single text block."""
    return message(
        [text_block(text)],
        model=model,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        message_id=message_id,
    )


def tool_use_message(
    name: str,
    input: Mapping[str, Any],
    *,
    tool_use_id: str | None = None,
    text: str | None = None,
    model: str | None = None,
    stop_reason: str | None = "tool_use",
    input_tokens: int = 10,
    output_tokens: int = 10,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    message_id: str | None = None,
) -> JSONObject:
    """A response body asking for one tool call, optionally preceded by a text block."""
    blocks: list[JSONObject] = [] if text is None else [text_block(text)]
    blocks.append(tool_use_block(name, input, tool_use_id=tool_use_id))
    return message(
        blocks,
        model=model,
        stop_reason=stop_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        message_id=message_id,
    )


def error_body(error_type: str, message: str, *, request_id: str | None = None) -> JSONObject:
    """An Anthropic error body: ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    body: JSONObject = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class MessageReply:
    """A successful reply: ``body`` is a Messages API response body (see `message`)."""

    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorReply:
    """An API error reply: ``status`` with an Anthropic error body of ``error_type``/``message``."""

    status: int
    error_type: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RawReply:
    """Any response: ``body`` is sent as JSON if it is not bytes (e.g. to send malformed data)."""

    status: int
    body: bytes | Mapping[str, Any] | Sequence[Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass(frozen=True)
class StreamReply:
    """A message streamed as server-sent events, paced, and maybe cut short.

    ``body`` is a Messages API response body (see `message`); its events are sent
    ``interval`` seconds apart. With ``cut``, the stream stops after ``after``
    events (``message_start`` is event 1, the ``ping`` after the first
    ``content_block_start`` event 3):

    * ``"error"``: an ``error`` event (``error_type``, ``error_message``), then the
      body ends, as the API reports an error after its 200 (e.g. overloaded);
    * ``"drop"``: the connection is shut down in the middle of the body;
    * ``"stall"``: nothing more is sent, and the connection is held open until the
      client gives up (its read timeout) or the server closes.

    A request without ``"stream": true`` gets ``body`` as JSON; cut, the same failure
    without a stream: half the body, then the connection dropped or stalled (an ``error``
    cut has no such equivalent: queue an `ErrorReply` for that).
    """

    body: Mapping[str, Any]
    interval: float = 0.0
    cut: Literal["error", "drop", "stall"] | None = None
    after: int = 0
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    headers: Mapping[str, str] = field(default_factory=dict)


Reply: TypeAlias = MessageReply | ErrorReply | RawReply | StreamReply
"""One scripted reply."""

Responder: TypeAlias = Callable[[JSONObject], "Reply | Mapping[str, Any] | None"]
"""Decides a reply from a request's JSON body when the queue is empty.

It may return a `Reply`, a bare message body (a mapping, sent as a
`MessageReply`), or ``None`` for "no reply" (the server answers 500).
"""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the server received."""

    index: int
    """Arrival order over the server's lifetime, from 0."""
    method: str
    path: str
    """The path without the query string, e.g. ``/v1/messages``."""
    query: str
    headers: Mapping[str, str]
    """Header names lowercased; repeated headers joined with ``", "``."""
    body: Any
    """The parsed JSON body, or ``None`` when there was none or it was not JSON."""
    raw_body: bytes
    retry_count: int | None
    """The SDK's ``x-stainless-retry-count`` header, if sent and numeric."""
    attempt: int
    """``retry_count + 1`` (1 for a first attempt or when the header is absent)."""

    @property
    def json(self) -> JSONObject:
        """The body as a JSON object; raises `TypeError` if it is not one."""
        if not isinstance(self.body, dict):
            raise TypeError(f"request #{self.index} body is not a JSON object: {self.body!r}")
        return cast(JSONObject, self.body)

    @property
    def model(self) -> Any:
        """``model`` of the request body (``None`` if absent)."""
        return self.json.get("model")

    @property
    def system(self) -> Any:
        """``system`` of the request body (``None`` if absent)."""
        return self.json.get("system")

    @property
    def messages(self) -> Any:
        """``messages`` of the request body (``None`` if absent)."""
        return self.json.get("messages")

    @property
    def tools(self) -> Any:
        """``tools`` of the request body (``None`` if absent)."""
        return self.json.get("tools")


@dataclass(frozen=True)
class _Streamed:
    """How to send an event stream: its events, the pause between them, how it ends."""

    events: Sequence[bytes]
    interval: float = 0.0
    #: None: every event, then the end of the body; else the stream stops after ``after``.
    cut: Literal["error", "drop", "stall"] | None = None
    after: int = 0
    error_event: bytes = b""
    #: A plain (not chunked) body of this Content-Length, of which ``events`` are sent.
    length: int | None = None


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    headers: Mapping[str, str]
    content_type: str
    stream: _Streamed | None = None


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops SYNs under a burst of connects: 1 s retransmits

    def __init__(self, api: FakeMessagesAPI) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections reset by the client or by `close` are not test failures; stay quiet."""

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
            self.connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeMessagesAPI/1.0"
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # adds ~40 ms to every response.
    disable_nagle_algorithm = True

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        with self._server.connections_lock:
            self._server.connections.add(self.connection)

    def finish(self) -> None:
        with self._server.connections_lock:
            self._server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        raw = self._read_body()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        path, _, query = self.path.partition("?")
        try:
            response = self._server.api._dispatch(self.command, path, query, headers, raw)
        except Exception as exc:  # a bug in the fake: answer instead of dropping the connection
            message = f"FakeMessagesAPI internal error: {type(exc).__name__}: {exc}"
            response = _Response(
                500,
                json.dumps(error_body("api_error", message)).encode(),
                {"x-should-retry": "false"},
                "application/json",
            )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
        elif response.stream.length is not None:
            self.send_header("Content-Length", str(response.stream.length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        for name, value in response.headers.items():
            if name.lower() not in ("content-type", "content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.end_headers()
        if response.stream is not None:
            self._send_stream(response.stream)
            return
        self.wfile.write(response.body)
        self.wfile.flush()

    def _send_chunk(self, data: bytes, *, chunked: bool = True) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        self.wfile.flush()

    def _send_stream(self, plan: _Streamed) -> None:
        """Send the events one chunk each, ``interval`` apart, ending as ``plan`` says."""
        closing = self._server.api._closing
        count = len(plan.events) if plan.cut is None else min(plan.after, len(plan.events))
        for n, event in enumerate(plan.events[:count]):
            if n and plan.interval and closing.wait(plan.interval):
                return
            self._send_chunk(event, chunked=plan.length is None)
        if plan.cut == "drop":
            # Mid-body: no terminating chunk, and no clean close either.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if plan.cut == "stall":
            self.close_connection = True
            closing.wait()  # until the client hangs up (a write would fail) or close()
            return
        if plan.cut == "error":
            if plan.interval and closing.wait(plan.interval):
                return
            self._send_chunk(plan.error_event)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


# --------------------------------------------------------------------------- SSE


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _pieces(text: str, size: int) -> list[str]:
    """``text`` in pieces of about ``size`` characters, as the API sends deltas."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _stream_events(body: Mapping[str, Any]) -> list[bytes]:
    """The server-sent events the API sends for the message ``body``, in order."""
    events: list[bytes] = []
    usage = dict(body.get("usage") or {})
    start_message = {**body, "content": [], "stop_reason": None, "stop_sequence": None}
    start_message["usage"] = {**usage, "output_tokens": min(1, int(usage.get("output_tokens", 0)))}
    events.append(_sse("message_start", {"type": "message_start", "message": start_message}))
    for index, block in enumerate(body.get("content") or []):
        kind = block.get("type")
        start: JSONObject
        deltas: list[JSONObject] = []
        if kind == "text":
            start = {**block, "text": ""}
            deltas += [
                {"type": "text_delta", "text": piece}
                for piece in _pieces(block.get("text", ""), 12)
            ]
        elif kind in ("tool_use", "server_tool_use"):
            start = {**block, "input": {}}
            partial = json.dumps(block.get("input", {}))
            deltas.append({"type": "input_json_delta", "partial_json": ""})
            deltas += [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in _pieces(partial, 16)
            ]
        elif kind == "thinking":
            start = {**block, "thinking": "", "signature": ""}
            deltas.append({"type": "thinking_delta", "thinking": block.get("thinking", "")})
            deltas.append({"type": "signature_delta", "signature": block.get("signature", "")})
        else:
            start = dict(block)
        events.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        if index == 0:
            events.append(_sse("ping", {"type": "ping"}))
        events += [
            _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    if not body.get("content"):
        events.append(_sse("ping", {"type": "ping"}))
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": body.get("stop_reason"),
                    "stop_sequence": body.get("stop_sequence"),
                },
                "usage": usage,
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


# --------------------------------------------------------------------------- the fake


class FakeMessagesAPI:
    """A scripted, recording fake of the Anthropic Messages API on ``127.0.0.1``.

    The server starts on construction and stops on `close` (or leaving the
    ``with`` block). All methods are thread-safe.
    """

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        validate: bool = True,
        retry_after_ms: str | None = "1",
    ) -> None:
        """Start the server.

        Args:
            responder: called with the request body when the reply queue is empty.
            validate: answer ``400 invalid_request_error`` (without consuming a
                reply) when a ``POST /v1/messages`` body is not a JSON object with
                ``model``, ``max_tokens`` and ``messages``.
            retry_after_ms: ``retry-after-ms`` value added to replies with a status
                the SDK retries (unless they set ``retry-after``/``retry-after-ms``);
                ``None`` adds nothing, leaving the SDK's 0.5 s+ backoff.
        """
        self._lock = threading.RLock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._responder = responder
        self._validate = validate
        self._retry_after_ms = retry_after_ms
        self._counter = itertools.count()
        self._closed = False
        #: Set by `close`: streams that pause or stall stop waiting.
        self._closing = threading.Event()
        self._server = _Server(self)
        host, port = self._server.server_address[:2]
        self._url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"FakeMessagesAPI:{port}",
            daemon=True,
        )
        self._thread.start()

    # -- lifecycle

    @property
    def url(self) -> str:
        """Base URL for the client, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        return self._url

    def close(self) -> None:
        """Stop serving, drop open keep-alive connections and join the server thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeMessagesAPI:
        """Return the (already running) server."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """`close` the server."""
        self.close()

    # -- scripting

    def enqueue(self, *replies: Reply) -> None:
        """Append replies to the FIFO queue."""
        with self._lock:
            self._queue.extend(replies)

    def reply(
        self, message_body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Queue a successful reply with this exact response body.

        A ``null`` or missing ``model`` is filled in from the request.
        """
        self.enqueue(MessageReply(dict(message_body), dict(headers or {})))

    def reply_text(
        self,
        text: str,
        *,
        model: str | None = None,
        stop_reason: str | None = "end_turn",
        stop_sequence: str | None = None,
        input_tokens: int = 10,
        output_tokens: int = 10,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        message_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSONObject:
        """Queue a reply with one text block; returns the queued body."""
        body = text_message(
            text,
            model=model,
            stop_reason=stop_reason,
            stop_sequence=stop_sequence,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_creation_input_tokens=cache_creation_input_tokens,
            cache_read_input_tokens=cache_read_input_tokens,
            message_id=message_id,
        )
        self.reply(body, headers=headers)
        return body

    def reply_tool_use(
        self,
        name: str,
        input: Mapping[str, Any],
        *,
        tool_use_id: str | None = None,
        text: str | None = None,
        model: str | None = None,
        stop_reason: str | None = "tool_use",
        input_tokens: int = 10,
        output_tokens: int = 10,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        message_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSONObject:
        """Queue a reply with a ``tool_use`` block (after an optional text block).

        Returns the queued body.

        The generated tool-use id is ``body["content"][-1]["id"]``.
        """
        body = tool_use_message(
            name,
            input,
            tool_use_id=tool_use_id,
            text=text,
            model=model,
            stop_reason=stop_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_creation_input_tokens=cache_creation_input_tokens,
            cache_read_input_tokens=cache_read_input_tokens,
            message_id=message_id,
        )
        self.reply(body, headers=headers)
        return body

    def fail(
        self,
        status: int,
        error_type: str | None = None,
        message: str = "scripted failure from FakeMessagesAPI",
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Queue ``times`` identical error replies.

        ``error_type`` defaults from the status (429 ``rate_limit_error``, 529
        ``overloaded_error``, 500 ``api_error``, ...). Retried statuses get
        ``retry-after-ms`` unless ``headers`` sets a retry header; pass
        ``{"x-should-retry": "false"}`` to stop the SDK from retrying.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        kind = error_type or _ERROR_TYPE_BY_STATUS.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        self.enqueue(
            *[ErrorReply(status, kind, message, dict(headers or {})) for _ in range(times)]
        )

    def set_responder(self, responder: Responder | None) -> None:
        """Set (or with ``None`` clear) the callable used when the queue is empty.

        It is called with the server's lock held, so calls never overlap; it may
        call this object's methods (the lock is re-entrant).
        """
        with self._lock:
            self._responder = responder

    def clear(self) -> None:
        """Drop queued replies and recorded requests (the responder stays)."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()

    # -- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """The recorded ``POST /v1/messages`` requests."""
        return [r for r in self.requests if r.method == "POST" and r.path == MESSAGES_PATH]

    @property
    def pending(self) -> int:
        """How many queued replies are not consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- serving (called on handler threads)

    def _dispatch(
        self, method: str, path: str, query: str, headers: Mapping[str, str], raw: bytes
    ) -> _Response:
        body: Any = None
        json_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                json_error = str(exc)
        retry_count: int | None = None
        with contextlib.suppress(ValueError):
            retry_count = int(headers.get("x-stainless-retry-count", ""))
        with self._lock:
            index = next(self._counter)
            request_id = f"req_fake{index:06d}"
            self._requests.append(
                RecordedRequest(
                    index=index,
                    method=method,
                    path=path,
                    query=query,
                    headers=dict(headers),
                    body=body,
                    raw_body=raw,
                    retry_count=retry_count,
                    attempt=(retry_count or 0) + 1,
                )
            )
            reply = self._choose_reply(method, path, body, json_error, index)
        return self._render(reply, body, request_id)

    def _choose_reply(
        self, method: str, path: str, body: Any, json_error: str | None, index: int
    ) -> Reply:
        no_retry = {"x-should-retry": "false"}
        if path.rstrip("/") != MESSAGES_PATH:
            return ErrorReply(
                404, "not_found_error", f"FakeMessagesAPI: no route for {method} {path}", no_retry
            )
        if method != "POST":
            return ErrorReply(
                405, "invalid_request_error", f"FakeMessagesAPI: {method} not allowed", no_retry
            )
        if self._validate:
            problem = _validation_problem(body, json_error)
            if problem is not None:
                return ErrorReply(400, "invalid_request_error", problem, no_retry)
        if self._queue:
            return self._queue.popleft()
        if self._responder is not None:
            try:
                produced = self._responder(body if isinstance(body, dict) else {})
            except Exception as exc:
                return ErrorReply(
                    500,
                    "api_error",
                    f"FakeMessagesAPI: responder raised {type(exc).__name__}: {exc}",
                    no_retry,
                )
            if isinstance(produced, MessageReply | ErrorReply | RawReply | StreamReply):
                return produced
            if produced is not None:
                return MessageReply(dict(produced))
        return ErrorReply(
            500,
            "api_error",
            f"FakeMessagesAPI: no scripted reply queued and no responder reply (request #{index})",
            no_retry,
        )

    def _render(self, reply: Reply, request_body: Any, request_id: str) -> _Response:
        headers: dict[str, str] = {"request-id": request_id}
        content_type = "application/json"
        stream: _Streamed | None = None
        streaming = isinstance(request_body, dict) and request_body.get("stream") is True
        if isinstance(reply, MessageReply | StreamReply):
            status = 200
            out = dict(reply.body)
            if out.get("model") is None:
                requested = request_body.get("model") if isinstance(request_body, dict) else None
                out["model"] = requested if isinstance(requested, str) else DEFAULT_MODEL
            payload = b""
            if streaming:
                content_type = "text/event-stream; charset=utf-8"
                headers["cache-control"] = "no-cache"
                stream = _Streamed(_stream_events(out))
                if isinstance(reply, StreamReply):
                    error = error_body(reply.error_type, reply.error_message)
                    stream = _Streamed(
                        stream.events,
                        reply.interval,
                        reply.cut,
                        reply.after,
                        _sse("error", error),
                    )
            elif isinstance(reply, StreamReply) and reply.cut in ("drop", "stall"):
                # The same failure without a stream: half the JSON body, then the cut.
                whole = json.dumps(out).encode()
                stream = _Streamed([whole[: len(whole) // 2]], 0.0, reply.cut, 1, length=len(whole))
            elif isinstance(reply, StreamReply) and reply.cut is not None:
                status, out = (
                    500,
                    error_body(
                        "api_error",
                        "FakeMessagesAPI: a cut stream to a request without stream: true",
                    ),
                )
                headers["x-should-retry"] = "false"
                payload = json.dumps(out).encode()
            else:
                payload = json.dumps(out).encode()
        elif isinstance(reply, ErrorReply):
            status = reply.status
            payload = json.dumps(
                error_body(reply.error_type, reply.message, request_id=request_id)
            ).encode()
        else:
            status = reply.status
            content_type = reply.content_type
            payload = (
                reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            )
        extra = {name.lower(): value for name, value in reply.headers.items()}
        if (
            _is_retried_status(status)
            and self._retry_after_ms is not None
            and "retry-after" not in extra
            and "retry-after-ms" not in extra
        ):
            headers["retry-after-ms"] = self._retry_after_ms
        headers.update(extra)
        return _Response(status, payload, headers, content_type, stream)


def _validation_problem(body: Any, json_error: str | None) -> str | None:
    if json_error is not None:
        return f"Invalid JSON body: {json_error}"
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    for key, kind in (("model", str), ("max_tokens", int), ("messages", list)):
        if key not in body:
            return f"{key}: Field required"
        if not isinstance(body[key], kind):
            return f"{key}: Input should be a valid {kind.__name__}"
    return None
