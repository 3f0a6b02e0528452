"""The exit's receiver probe (telemetry/liveness.py) against real servers: an HTTP server
and a gRPC server answer; a socket that accepts and never speaks, and a closed port, do not."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from telemetry.liveness import Endpoint


@pytest.fixture
def http_port() -> Iterator[int]:
    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_port() -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A black hole: the kernel completes the handshake, nothing ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_an_http_receiver_answers(http_port: int) -> None:
    # No OPTIONS handler: the server's 501 is an answer all the same.
    assert Endpoint("127.0.0.1", http_port, tls=False, grpc=False).answers()


def test_a_grpc_receiver_answers_the_http2_preface(grpc_port: int) -> None:
    assert Endpoint("127.0.0.1", grpc_port, tls=False, grpc=True).answers()


@pytest.mark.parametrize("grpc_protocol", [False, True])
def test_a_socket_that_never_speaks_does_not_answer(silent_port: int, grpc_protocol: bool) -> None:
    assert not Endpoint("127.0.0.1", silent_port, tls=False, grpc=grpc_protocol).answers(0.2)


def test_a_tls_probe_of_a_socket_that_never_speaks_does_not_answer(silent_port: int) -> None:
    assert not Endpoint("127.0.0.1", silent_port, tls=True, grpc=False).answers(0.2)


def test_a_closed_port_does_not_answer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not Endpoint("127.0.0.1", port, tls=False, grpc=False).answers()


@pytest.mark.parametrize(
    ("protocol", "env", "expected"),
    [
        ("http/protobuf", {}, Endpoint("localhost", 4318, tls=False, grpc=False)),
        ("grpc", {}, Endpoint("localhost", 4317, tls=False, grpc=True)),
        (
            "http/protobuf",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318"},
            Endpoint("collector.example", 4318, tls=True, grpc=False),
        ),
        (
            "http/protobuf",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces.example:9/v1/traces",
            },
            Endpoint("traces.example", 9, tls=False, grpc=False),
        ),
        (
            "grpc",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
            Endpoint("collector", 4317, tls=True, grpc=True),
        ),
        (
            "grpc",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            },
            Endpoint("collector", 4317, tls=False, grpc=True),
        ),
        ("grpc", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"}, None),
    ],
)
def test_the_endpoint_is_read_as_the_exporters_read_it(
    protocol: str, env: dict[str, str], expected: Endpoint | None
) -> None:
    assert Endpoint.for_traces(protocol, env) == expected
