"""In-process OTLP receiver (gRPC + HTTP) for tests.

:class:`OTLPReceiver` starts, on ``127.0.0.1`` with ephemeral ports:

* a gRPC server implementing the OTLP ``TraceService`` and ``MetricsService``
  (``opentelemetry.proto.collector.{trace,metrics}.v1``);
* a stdlib :class:`~http.server.ThreadingHTTPServer` accepting ``POST /v1/traces`` and
  ``POST /v1/metrics`` as OTLP/HTTP, with either ``application/x-protobuf`` or
  ``application/json`` (OTLP/JSON, hex trace/span ids) bodies, optionally
  ``Content-Encoding: gzip`` or ``deflate``.

Every accepted export request is decoded into its protobuf message
(``ExportTraceServiceRequest`` / ``ExportMetricsServiceRequest``) and kept in memory.
Waiting helpers block on a :class:`threading.Condition`; nothing in here sleeps.

Fault injection (settable at any time, see :attr:`OTLPReceiver.mode`):

* ``"ok"``: store the payload, answer success;
* ``"error"``: store nothing, answer gRPC ``UNAVAILABLE`` / HTTP ``503`` (both retryable
  for the SDK exporters); if :attr:`OTLPReceiver.retry_after` is set, the answer carries a
  ``google.rpc.RetryInfo`` trailer (gRPC) / ``Retry-After`` header (HTTP), which the SDK
  exporters honour instead of their exponential backoff;
* ``"stall"``: accept the request and block it until :meth:`OTLPReceiver.release` (then
  it is handled as ``"ok"``) or :meth:`OTLPReceiver.close` (then it is answered
  ``UNAVAILABLE`` / ``503`` and not stored). A stalled gRPC request whose client gives up
  (deadline exceeded, cancelled, channel closed) is freed at once and not stored; OTLP/HTTP
  cannot see a client going away, so such a request stays blocked until release/close.

Endpoints: :attr:`OTLPReceiver.grpc_endpoint` is what the gRPC exporters take as
``endpoint=``; :attr:`OTLPReceiver.http_endpoint` is the *base* URL (what
``OTEL_EXPORTER_OTLP_ENDPOINT`` takes: the SDK appends ``/v1/traces``); the HTTP exporters'
``endpoint=`` argument needs the *full* signal URL: :attr:`OTLPReceiver.http_traces_url`
and :attr:`OTLPReceiver.http_metrics_url`.

Example::

    with OTLPReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.http_traces_url, timeout=0.5)
        ...
        assert receiver.wait_for_spans(3, timeout=2.0)
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal, Self, get_args

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.duration_pb2 import Duration  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import DecodeError, Message  # type: ignore[import-untyped, unused-ignore]
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = [
    "Mode",
    "OTLPReceiver",
    "ReceivedMetric",
    "ReceivedSpan",
    "Signal",
    "Transport",
    "any_value_to_python",
    "attributes_to_dict",
]

Mode = Literal["ok", "error", "stall"]
"""Fault mode of the receiver; see :attr:`OTLPReceiver.mode`."""
Transport = Literal["grpc", "http"]
"""Which OTLP transport a request came in on."""
Signal = Literal["traces", "metrics"]
"""Which OTLP signal a request carried."""

_MODES: Final[frozenset[str]] = frozenset(get_args(Mode))
_GRPC_UNAVAILABLE_CODE: Final = 14  # google.rpc.Code.UNAVAILABLE
_RETRY_INFO_KEY: Final = "google.rpc.retryinfo-bin"
_HTTP_PATHS: Final[dict[str, Signal]] = {"/v1/traces": "traces", "/v1/metrics": "metrics"}
_HEX_ID_KEYS: Final = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)

_Outcome = Literal["ok", "error", "closed", "gone"]


def any_value_to_python(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` to the matching Python value (``None`` if unset)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_to_dict(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_to_dict(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    """Convert a repeated OTLP ``KeyValue`` field (attributes) to a plain ``dict``."""
    return {kv.key: any_value_to_python(kv.value) for kv in attributes}


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One received span with the resource and instrumentation scope it came with."""

    span: Span
    """The OTLP protobuf span, as received."""
    resource: dict[str, Any]
    """Resource attributes of the enclosing ``ResourceSpans``."""
    scope_name: str
    """Name of the enclosing instrumentation scope."""
    scope_version: str = ""
    """Version of the enclosing instrumentation scope (``""`` if none)."""
    transport: Transport = "grpc"
    """Transport the span arrived on."""

    @property
    def name(self) -> str:
        """The span name."""
        return self.span.name

    @property
    def trace_id(self) -> bytes:
        """The 16-byte trace id."""
        return self.span.trace_id

    @property
    def span_id(self) -> bytes:
        """The 8-byte span id."""
        return self.span.span_id

    @property
    def parent_span_id(self) -> bytes:
        """The 8-byte parent span id, ``b""`` for a root span."""
        return self.span.parent_span_id

    @property
    def attributes(self) -> dict[str, Any]:
        """The span attributes as a plain ``dict``."""
        return attributes_to_dict(self.span.attributes)


@dataclass(frozen=True, slots=True)
class ReceivedMetric:
    """One received metric with the resource and instrumentation scope it came with."""

    metric: Metric
    """The OTLP protobuf metric, as received."""
    resource: dict[str, Any]
    """Resource attributes of the enclosing ``ResourceMetrics``."""
    scope_name: str
    """Name of the enclosing instrumentation scope."""
    transport: Transport = "grpc"
    """Transport the metric arrived on."""

    @property
    def name(self) -> str:
        """The metric name."""
        return self.metric.name


@dataclass(slots=True)
class _State:
    """Mutable receiver state; only touched while holding ``OTLPReceiver._cond``."""

    mode: Mode = "ok"
    retry_after: float | None = None
    fail_next: int = 0
    closed: bool = False
    release_generation: int = 0
    stalled: int = 0
    traces: list[tuple[Transport, ExportTraceServiceRequest]] = field(default_factory=list)
    metrics: list[tuple[Transport, ExportMetricsServiceRequest]] = field(default_factory=list)
    span_count: int = 0
    http_headers: list[dict[str, str]] = field(default_factory=list)
    requests: Counter[tuple[Transport, Signal, Mode]] = field(default_factory=Counter)


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        self._receiver._grpc_export("traces", request, context)
        return ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        self._receiver._grpc_export("metrics", request, context)
        return ExportMetricsServiceResponse()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OTLPReceiver


class _HTTPHandler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain")

    do_PUT = do_GET
    do_DELETE = do_GET

    def do_OPTIONS(self) -> None:
        """The exit's liveness probe (telemetry/liveness.py): answered, except in "stall"
        mode — a stalled receiver answers nothing until released or closed (not counted as
        a stalled request)."""
        receiver = self.server.receiver
        state = receiver._state
        with receiver._cond:
            generation = state.release_generation
            receiver._cond.wait_for(
                lambda: (
                    state.mode != "stall" or state.closed or state.release_generation != generation
                )
            )
            if state.closed:
                return
        self._reply(HTTPStatus.NO_CONTENT, b"", "text/plain")

    def do_POST(self) -> None:
        self.server.receiver._record_http_headers(
            {key.lower(): value for key, value in self.headers.items()}
        )
        signal = _HTTP_PATHS.get(self.path.split("?", 1)[0])
        if signal is None:
            self._reply(HTTPStatus.NOT_FOUND, b"", "text/plain")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.strip().isdigit():
            self._reply(HTTPStatus.LENGTH_REQUIRED, b"", "text/plain")
            return
        body = self.rfile.read(int(length_header))
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        is_json = content_type == "application/json"
        if not is_json and content_type != "application/x-protobuf":
            self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"", "text/plain")
            return
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("identity", "none", ""):
                self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"", "text/plain")
                return
            request: ExportTraceServiceRequest | ExportMetricsServiceRequest = (
                ExportTraceServiceRequest() if signal == "traces" else ExportMetricsServiceRequest()
            )
            if is_json:
                json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), request)
            else:
                request.ParseFromString(body)
        except (
            OSError,
            EOFError,
            zlib.error,
            ValueError,
            DecodeError,
            json_format.ParseError,
        ) as exc:
            self._reply_status(HTTPStatus.BAD_REQUEST, f"cannot decode request: {exc}", is_json)
            return

        outcome, retry_after = self.server.receiver._process("http", signal, request)
        if outcome == "ok":
            response: Message = (
                ExportTraceServiceResponse()
                if signal == "traces"
                else ExportMetricsServiceResponse()
            )
            if is_json:
                self._reply(
                    HTTPStatus.OK, json_format.MessageToJson(response).encode(), content_type
                )
            else:
                self._reply(HTTPStatus.OK, response.SerializeToString(), content_type)
            return
        extra = {}
        if outcome == "error" and retry_after is not None:
            extra["Retry-After"] = _format_seconds(retry_after)
        self._reply_status(HTTPStatus.SERVICE_UNAVAILABLE, f"receiver {outcome}", is_json, extra)

    def _reply_status(
        self,
        status: HTTPStatus,
        message: str,
        is_json: bool,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        body_status = Status(code=_GRPC_UNAVAILABLE_CODE, message=message)
        if is_json:
            self._reply(
                status,
                json_format.MessageToJson(body_status).encode(),
                "application/json",
                extra_headers,
            )
        else:
            self._reply(
                status, body_status.SerializeToString(), "application/x-protobuf", extra_headers
            )

    def _reply(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra_headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client went away (e.g. it timed out on a stalled request).
            pass


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON encodes trace/span ids as hex; protobuf JSON expects base64 for bytes."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _HEX_ID_KEYS and isinstance(value, str):
                out[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


class OTLPReceiver:
    """In-process OTLP collector stand-in serving gRPC and HTTP on ``127.0.0.1``.

    Use as a context manager (or call :meth:`start` / :meth:`close`). All public methods
    are thread-safe.
    """

    def __init__(self, *, host: str = "127.0.0.1", grpc_max_workers: int = 8) -> None:
        """Prepare a receiver; nothing listens until :meth:`start` / ``__enter__``."""
        self._host = host
        self._grpc_max_workers = grpc_max_workers
        self._cond = threading.Condition()
        self._state = _State()
        self._grpc_server: grpc.Server | None = None
        self._grpc_executor: futures.ThreadPoolExecutor | None = None
        self._grpc_port: int | None = None
        self._http_server: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start the gRPC and HTTP servers; returns ``self``."""
        if self._grpc_server is not None:
            raise RuntimeError("OTLPReceiver already started")
        with self._cond:
            if self._state.closed:
                raise RuntimeError("OTLPReceiver cannot be restarted after close()")
        self._grpc_executor = futures.ThreadPoolExecutor(
            max_workers=self._grpc_max_workers, thread_name_prefix="otlp-receiver-grpc"
        )
        server = grpc.server(self._grpc_executor)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call, unused-ignore]
            _TraceServicer(self), server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call, unused-ignore]
            _MetricsServicer(self), server
        )
        port = int(server.add_insecure_port(f"{self._host}:0"))
        if port == 0:
            self._grpc_executor.shutdown(wait=False)
            raise RuntimeError(f"could not bind a gRPC port on {self._host}")
        server.start()
        self._grpc_server = server
        self._grpc_port = port

        http_server = _HTTPServer((self._host, 0), _HTTPHandler)
        http_server.receiver = self
        self._http_server = http_server
        # A short poll interval keeps close() prompt: serve_forever() only notices
        # shutdown() between selector polls.
        self._http_thread = threading.Thread(
            target=http_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-receiver-http",
            daemon=True,
        )
        self._http_thread.start()
        return self

    def close(self) -> None:
        """Release stalled requests (answered UNAVAILABLE/503) and stop both servers.

        Idempotent; returns promptly (well under a second) even with stalled requests.
        """
        with self._cond:
            already = self._state.closed
            self._state.closed = True
            self._cond.notify_all()
        if already:
            return
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.2).wait()
        if self._grpc_executor is not None:
            self._grpc_executor.shutdown(wait=True, cancel_futures=True)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
        if self._http_thread is not None:
            self._http_thread.join()

    def __enter__(self) -> Self:
        """Start the receiver (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the receiver (see :meth:`close`)."""
        self.close()

    # ----------------------------------------------------------------- endpoints

    @property
    def grpc_port(self) -> int:
        """TCP port of the gRPC server."""
        if self._grpc_port is None:
            raise RuntimeError("OTLPReceiver not started")
        return self._grpc_port

    @property
    def http_port(self) -> int:
        """TCP port of the HTTP server."""
        if self._http_server is None:
            raise RuntimeError("OTLPReceiver not started")
        return int(self._http_server.server_address[1])

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the gRPC exporters' ``endpoint=`` (use ``insecure=True``)."""
        return f"http://{self._host}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Base URL ``http://127.0.0.1:PORT`` without signal path.

        This is what ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes (the SDK appends ``/v1/traces``);
        the HTTP exporters' ``endpoint=`` argument needs :attr:`http_traces_url` instead.
        """
        return f"http://{self._host}:{self.http_port}"

    @property
    def http_traces_url(self) -> str:
        """Full ``.../v1/traces`` URL: the HTTP span exporter's ``endpoint=``."""
        return f"{self.http_endpoint}/v1/traces"

    @property
    def http_metrics_url(self) -> str:
        """Full ``.../v1/metrics`` URL: the HTTP metric exporter's ``endpoint=``."""
        return f"{self.http_endpoint}/v1/metrics"

    # ----------------------------------------------------------------- fault injection

    @property
    def mode(self) -> Mode:
        """Fault mode applied to incoming requests: ``"ok"``, ``"error"`` or ``"stall"``."""
        with self._cond:
            return self._state.mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, not {value!r}")
        with self._cond:
            self._state.mode = value

    @property
    def retry_after(self) -> float | None:
        """Retry delay (seconds) advertised with error answers; ``None`` advertises none."""
        with self._cond:
            return self._state.retry_after

    @retry_after.setter
    def retry_after(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("retry_after must be >= 0")
        with self._cond:
            self._state.retry_after = value

    def fail_next(self, count: int = 1) -> None:
        """Answer the next ``count`` requests as in ``"error"`` mode, whatever :attr:`mode` is."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._cond:
            self._state.fail_next = count

    def release(self) -> None:
        """Unblock every currently stalled request; they are then handled as ``"ok"``.

        Requests arriving later still stall while :attr:`mode` is ``"stall"``.
        """
        with self._cond:
            self._state.release_generation += 1
            self._cond.notify_all()

    @property
    def stalled(self) -> int:
        """Number of requests currently blocked by ``"stall"`` mode."""
        with self._cond:
            return self._state.stalled

    # ----------------------------------------------------------------- inspection

    def request_count(
        self,
        transport: Transport | None = None,
        signal: Signal | None = None,
        mode: Mode | None = None,
    ) -> int:
        """Number of requests received, filtered by transport, signal and applied mode."""
        with self._cond:
            return self._count_locked(transport, signal, mode)

    def request_counts(self) -> Counter[tuple[Transport, Signal, Mode]]:
        """Copy of the request counter keyed by ``(transport, signal, applied mode)``."""
        with self._cond:
            return Counter(self._state.requests)

    def trace_requests(self) -> list[ExportTraceServiceRequest]:
        """Stored trace export requests, in arrival order."""
        with self._cond:
            return [request for _, request in self._state.traces]

    def metrics_requests(self) -> list[ExportMetricsServiceRequest]:
        """Stored metrics export requests, in arrival order."""
        with self._cond:
            return [request for _, request in self._state.metrics]

    def spans(self) -> list[ReceivedSpan]:
        """All stored spans, flattened, in arrival order."""
        with self._cond:
            traces = list(self._state.traces)
        out: list[ReceivedSpan] = []
        for transport, request in traces:
            for resource_spans in request.resource_spans:
                resource = attributes_to_dict(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append(
                            ReceivedSpan(
                                span=span,
                                resource=resource,
                                scope_name=scope_spans.scope.name,
                                scope_version=scope_spans.scope.version,
                                transport=transport,
                            )
                        )
        return out

    def span(self, name: str) -> ReceivedSpan:
        """The single stored span called ``name``; raises ``LookupError`` unless exactly one."""
        matches = [span for span in self.spans() if span.name == name]
        if len(matches) != 1:
            raise LookupError(f"expected exactly one span named {name!r}, found {len(matches)}")
        return matches[0]

    def metrics(self) -> list[ReceivedMetric]:
        """All stored metrics, flattened, in arrival order."""
        with self._cond:
            stored = list(self._state.metrics)
        out: list[ReceivedMetric] = []
        for transport, request in stored:
            for resource_metrics in request.resource_metrics:
                resource = attributes_to_dict(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        out.append(
                            ReceivedMetric(
                                metric=metric,
                                resource=resource,
                                scope_name=scope_metrics.scope.name,
                                transport=transport,
                            )
                        )
        return out

    def metric_names(self) -> list[str]:
        """Distinct names of stored metrics, in order of first arrival."""
        return list(dict.fromkeys(metric.name for metric in self.metrics()))

    def http_headers(self) -> list[dict[str, str]]:
        """Headers (lower-cased names) of every HTTP POST received, valid or not, in order."""
        with self._cond:
            return [dict(headers) for headers in self._state.http_headers]

    def clear(self) -> None:
        """Forget stored payloads and request counts (mode and stalls are left alone)."""
        with self._cond:
            self._state.http_headers.clear()
            self._state.traces.clear()
            self._state.metrics.clear()
            self._state.span_count = 0
            self._state.requests.clear()

    # ----------------------------------------------------------------- waiting

    def wait_for_spans(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` spans are stored; ``False`` if ``timeout`` elapses first."""
        return self._wait(lambda: self._state.span_count >= n, timeout)

    def wait_for_metric(self, name: str, timeout: float = 5.0) -> bool:
        """Block until a metric called ``name`` is stored; ``False`` on timeout."""

        def arrived() -> bool:
            return any(
                metric.name == name
                for _, request in self._state.metrics
                for resource_metrics in request.resource_metrics
                for scope_metrics in resource_metrics.scope_metrics
                for metric in scope_metrics.metrics
            )

        return self._wait(arrived, timeout)

    def wait_for_requests(
        self,
        n: int,
        timeout: float = 5.0,
        *,
        transport: Transport | None = None,
        signal: Signal | None = None,
        mode: Mode | None = None,
    ) -> bool:
        """Block until at least ``n`` matching requests arrived (see :meth:`request_count`)."""
        return self._wait(lambda: self._count_locked(transport, signal, mode) >= n, timeout)

    def wait_for_stalled(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` requests are currently stalled; ``False`` on timeout."""
        return self._wait(lambda: self._state.stalled >= n, timeout)

    def wait_until_unstalled(self, timeout: float = 5.0) -> bool:
        """Block until no request is stalled any more; ``False`` on timeout."""
        return self._wait(lambda: self._state.stalled == 0, timeout)

    # ----------------------------------------------------------------- internals

    def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def _count_locked(
        self, transport: Transport | None, signal: Signal | None, mode: Mode | None
    ) -> int:
        return sum(
            count
            for (t, s, m), count in self._state.requests.items()
            if (transport is None or t == transport)
            and (signal is None or s == signal)
            and (mode is None or m == mode)
        )

    def _record_http_headers(self, headers: dict[str, str]) -> None:
        with self._cond:
            self._state.http_headers.append(headers)

    def _process(
        self,
        transport: Transport,
        signal: Signal,
        request: ExportTraceServiceRequest | ExportMetricsServiceRequest,
        client_gone: threading.Event | None = None,
    ) -> tuple[_Outcome, float | None]:
        """Apply the fault mode to one decoded request; store it if the outcome is ``ok``."""
        state = self._state
        with self._cond:
            if state.closed:
                return "closed", None
            applied: Mode
            if state.fail_next > 0:
                state.fail_next -= 1
                applied = "error"
            else:
                applied = state.mode
            state.requests[(transport, signal, applied)] += 1
            self._cond.notify_all()
            if applied == "error":
                return "error", state.retry_after
            if applied == "stall":
                unblocked_by = self._stall_locked(client_gone)
                if unblocked_by != "release":
                    return unblocked_by, None
            if isinstance(request, ExportTraceServiceRequest):
                state.traces.append((transport, request))
                state.span_count += sum(
                    len(scope_spans.spans)
                    for resource_spans in request.resource_spans
                    for scope_spans in resource_spans.scope_spans
                )
            else:
                state.metrics.append((transport, request))
            self._cond.notify_all()
            return "ok", None

    def _stall_locked(
        self, client_gone: threading.Event | None
    ) -> Literal["release", "closed", "gone"]:
        """Block (lock held, released while waiting) until release(), close() or client exit."""
        state = self._state
        generation = state.release_generation
        state.stalled += 1
        self._cond.notify_all()
        try:
            self._cond.wait_for(
                lambda: (
                    state.closed
                    or state.release_generation != generation
                    or (client_gone is not None and client_gone.is_set())
                )
            )
        finally:
            state.stalled -= 1
            self._cond.notify_all()
        if state.closed:
            return "closed"
        if state.release_generation != generation:
            return "release"
        return "gone"

    def _grpc_export(
        self,
        signal: Signal,
        request: ExportTraceServiceRequest | ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> None:
        """Shared body of the gRPC ``Export`` methods; sets an error status on ``context``."""
        client_gone = threading.Event()

        def on_rpc_done() -> None:
            with self._cond:
                client_gone.set()
                self._cond.notify_all()

        if not context.add_callback(on_rpc_done):
            return  # RPC already terminated
        outcome, retry_after = self._process("grpc", signal, request, client_gone)
        if outcome == "ok":
            return
        if outcome == "error" and retry_after is not None:
            seconds = int(retry_after)
            delay = Duration(seconds=seconds, nanos=round((retry_after - seconds) * 1e9))
            context.set_trailing_metadata(
                ((_RETRY_INFO_KEY, RetryInfo(retry_delay=delay).SerializeToString()),)
            )
        context.set_code(grpc.StatusCode.UNAVAILABLE)
        context.set_details(f"OTLPReceiver: {outcome}")
