"""A slow receiver is not a dead one: at exit, orchestrace keeps waiting while the span
exporter keeps exporting (up to ORCHESTRACE_SHUTDOWN_CEILING), and gives up
ORCHESTRACE_SHUTDOWN_TIMEOUT after the last progress (a black hole still ends quickly).

The receiver is a real OTLP/HTTP endpoint in this process, fed by the real SDK exporter.
Its slowness is told to the exit through an injected clock: each request it answers moves
the clock on by the seconds it "took", so no test waits for wall-clock time, and a slow
machine cannot make one fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from telemetry.setup import Telemetry, setup_telemetry

SPANS = 30
BATCH = 5  # six requests


class FakeClock:
    """Real monotonic time plus the seconds the receiver says its requests took.

    The receiver answers a request only once the exit has read the clock after the
    request moved it: the exit sees every step, however the threads are scheduled.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self._read = True
        self._changed = threading.Condition()

    def advance(self, seconds: float) -> None:
        with self._changed:
            self.offset += seconds
            self._read = False

    def wait_until_read(self, closed: threading.Event) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._read or closed.is_set())

    def __call__(self) -> float:
        with self._changed:
            self._read = True
            self._changed.notify_all()
            return time.monotonic() + self.offset


class SlowReceiver:
    """OTLP/HTTP trace receiver: each request "takes" ``seconds`` (on the clock); after
    ``answer`` requests it stops answering (a black hole) until closed."""

    def __init__(self, clock: FakeClock, seconds: float, answer: int | None = None) -> None:
        self.clock, self.seconds, self.answer = clock, seconds, answer
        self.spans = 0
        self.requests = 0
        self.closed = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_OPTIONS(self) -> None:
                # The exit's liveness probe: a black hole answers it no more than exports.
                if receiver.answer is not None and receiver.requests > receiver.answer:
                    receiver.closed.wait()
                    return
                self.send_response(204)
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests += 1
                    number = receiver.requests
                if receiver.answer is not None and number > receiver.answer:
                    receiver.closed.wait()  # never answered while the test runs
                    return
                request = ExportTraceServiceRequest.FromString(body)
                receiver.clock.advance(receiver.seconds)
                receiver.clock.wait_until_read(receiver.closed)
                if receiver.closed.is_set():
                    return
                receiver.spans += sum(
                    len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
                )
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.closed.set()
        with self.clock._changed:
            self.clock._changed.notify_all()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _telemetry(monkeypatch: pytest.MonkeyPatch, receiver: SlowReceiver) -> Telemetry:
    for name, value in {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(BATCH),
        # nothing is exported before the exit
        "OTEL_BSP_SCHEDULE_DELAY": str(10**9),
    }.items():
        monkeypatch.setenv(name, value)
    telemetry = setup_telemetry(set_global=False)
    tracer = telemetry.tracer_provider.get_tracer("test")
    for i in range(SPANS):
        tracer.start_span(f"span {i}").end()
    return telemetry


@pytest.fixture
def receivers() -> Iterator[list[SlowReceiver]]:
    made: list[SlowReceiver] = []
    yield made
    for receiver in made:
        receiver.close()


def test_a_slow_receiver_that_keeps_answering_gets_every_span(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, receivers: list[SlowReceiver]
) -> None:
    # Each request takes 6 s of a 10 s timeout: 36 s in all, far past the timeout, but
    # never 10 s without progress (4 s of margin for the real time between requests).
    receivers.append(receiver := SlowReceiver(clock, seconds=6))
    telemetry = _telemetry(monkeypatch, receiver)
    assert telemetry.shutdown(10, ceiling=1000, clock=clock)
    assert receiver.spans == SPANS
    assert receiver.requests == SPANS // BATCH
    assert clock.offset >= 36  # it really waited longer than the timeout
    assert telemetry.export_problems() == []


def test_one_request_longer_than_the_timeout_is_waited_for_while_the_receiver_answers(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, receivers: list[SlowReceiver]
) -> None:
    """The issue's example: a receiver whose requests each take three times the timeout
    (it initialises its store) shows no progress for a whole timeout, but answers the
    exit's probe: every span still gets there."""
    receivers.append(receiver := SlowReceiver(clock, seconds=30))
    telemetry = _telemetry(monkeypatch, receiver)
    assert telemetry.shutdown(10, ceiling=1000, clock=clock)
    assert receiver.spans == SPANS
    assert clock.offset >= 30 * SPANS // BATCH
    assert telemetry.export_problems() == []


def test_the_ceiling_ends_the_wait_even_while_the_receiver_answers(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, receivers: list[SlowReceiver]
) -> None:
    receivers.append(receiver := SlowReceiver(clock, seconds=6))
    telemetry = _telemetry(monkeypatch, receiver)
    assert not telemetry.shutdown(10, ceiling=20, clock=clock)
    # 6 s a request: the ceiling (less the metrics' reserve of 1 s) passes at the fourth
    assert BATCH <= receiver.spans < SPANS
    (problem,) = telemetry.export_problems()
    assert "dropped or still queued at the shutdown deadline" in problem


def test_a_receiver_that_stops_answering_is_given_up_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, receivers: list[SlowReceiver]
) -> None:
    # Two answers, then a black hole: real time only (it "takes" nothing), a short timeout.
    receivers.append(receiver := SlowReceiver(clock, seconds=0, answer=2))
    telemetry = _telemetry(monkeypatch, receiver)
    started = time.monotonic()
    assert not telemetry.shutdown(0.5, ceiling=1000, clock=clock)
    waited = time.monotonic() - started
    assert receiver.spans == 2 * BATCH
    assert receiver.requests == 3  # the third was sent and never answered
    assert 0.3 <= waited < 60  # gave up on the timeout (0.5 s), nowhere near the ceiling
    (problem,) = telemetry.export_problems()
    assert f"{2 * BATCH} of {SPANS} spans exported" in problem


def test_ctrl_c_while_waiting_ends_the_wait_without_raising(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, receivers: list[SlowReceiver]
) -> None:
    receivers.append(receiver := SlowReceiver(clock, seconds=0, answer=0))  # a black hole
    telemetry = _telemetry(monkeypatch, receiver)
    reads = 0

    def interrupted_clock() -> float:
        nonlocal reads
        reads += 1
        if reads == 3:  # inside the wait (the first read is its start)
            raise KeyboardInterrupt
        return clock()

    assert not telemetry.shutdown(1000, ceiling=1000, clock=interrupted_clock)
    assert telemetry.interrupted
    assert reads == 3
    (problem,) = telemetry.export_problems()
    assert f"0 of {SPANS} spans exported" in problem
