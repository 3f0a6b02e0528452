"""The Jaeger reader survives hostile and broken answers: each is a one-line JaegerError
(exit 2 from the command), never a traceback or a hang."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runtime.cli import main
from telemetry.jaeger import JaegerError, JaegerReader

TRACE = "0af7651916cd43dd8448eb211c80319c"
Behaviour = Callable[[BaseHTTPRequestHandler], None]


def _trickle(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.end_headers()
    try:
        for _ in range(600):  # a byte at a time, for a minute at most
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass


def _body(data: bytes, length: int | None = None) -> Behaviour:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data) if length is None else length))
        h.end_headers()
        h.wfile.write(data)
        h.close_connection = True

    return answer


@pytest.fixture
def jaeger() -> Iterator[Callable[[Behaviour], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(behaviour: Behaviour) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                behaviour(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


SPAN_AS_STRING = b'{"result": {"resourceSpans": [{"scopeSpans": [{"spans": ["not a span"]}]}]}}'


@pytest.mark.parametrize(
    ("behaviour", "reader_options", "message"),
    [
        (_trickle, {"deadline": 1.0}, "did not finish answering within 1s"),
        (_body(b'{"result": {}}', length=1000), {}, "short of its Content-Length|IncompleteRead"),
        (_body(b"[" * 100_000 + b"]" * 100_000), {}, "nested too deeply"),
        (_body(SPAN_AS_STRING), {}, "not OTLP/JSON"),
        (_body(b"x" * 5000), {"max_bytes": 1000}, "more than 1000 bytes; refused"),
    ],
    ids=["trickle", "short-body", "deep-nesting", "span-is-a-string", "too-large"],
)
def test_a_broken_answer_is_a_jaeger_error(
    jaeger: Callable[[Behaviour], str],
    behaviour: Behaviour,
    reader_options: dict[str, float],
    message: str,
) -> None:
    reader = JaegerReader(jaeger(behaviour), **reader_options)  # type: ignore[arg-type]
    with pytest.raises(JaegerError, match=message):
        list(reader.spans(TRACE))


def test_the_command_reports_it_in_one_line(
    jaeger: Callable[[Behaviour], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = jaeger(_body(SPAN_AS_STRING))
    for command in ("summary", "profile"):
        code = main([command, "--jaeger", url, "--trace-id", TRACE], out=io.StringIO())
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith(f"orchestrace {command}: Jaeger at {url} answered with spans")
        assert len(err.splitlines()) == 1


@pytest.mark.parametrize("url", ["http://local host:16686", "http://host:16686/\x1b[2J"])
def test_a_url_with_a_space_or_control_character_is_refused(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="Jaeger URL must be"):
        JaegerReader(url)
    assert main(["summary", "--jaeger", url, "--last"], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert len(err.splitlines()) == 1
