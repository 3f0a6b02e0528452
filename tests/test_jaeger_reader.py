"""`orchestrace summary --jaeger`: the v3 API's copy of a run summarises like the spans file.

A recorded run (two, for --last) is served by a local stdlib HTTP server speaking Jaeger's
v3 API: ``GET /api/v3/traces/{id}`` answers ``{"result": {"resourceSpans": [...]}}`` with the
trace's spans regrouped into one resource and in another order, the way Jaeger hands them
back; a search answers the traces of a service in a time window; misses are 404 "No traces
found".
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from support import make_run

from runtime.agent import RunConfig
from runtime.cli import main
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.jaeger import (
    JaegerError,
    JaegerReader,
    TraceNotFoundError,
    normalize_trace_id,
    rfc3339_nano,
)
from telemetry.setup import setup_telemetry


async def _instant(_seconds: float) -> None:
    await asyncio.sleep(0)


@dataclass
class Recorded:
    """Runs recorded to a spans file: the file, and the trace ids in run order."""

    path: Path
    trace_ids: list[str]
    documents: list[dict[str, Any]] = field(default_factory=list)


def record_runs(path: Path, scenarios: list[str], monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """Run ``scenarios`` one after another on the scripted model, spans to ``path``."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orchestrace")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    telemetry = setup_telemetry(spans_file=path, set_global=False)
    trace_ids: list[str] = []
    try:
        for scenario in scenarios:
            run = make_run(
                telemetry,
                model=ScriptedModel(latency=0, sleep=_instant),
                config=RunConfig(model="claude-opus-4-8", sleep=_instant),
                run_id=uuid.uuid4().hex,
            )
            asyncio.run(run_scenario(scenario, run, on_start=trace_ids.append))
    finally:
        assert telemetry.shutdown(timeout=10)
    documents = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return Recorded(path, trace_ids, documents)


# --- a Jaeger v3 API stand-in -----------------------------------------------------------------
def _parse_rfc3339_nano(value: str) -> datetime:
    """Go's RFC3339Nano (up to 9 fractional digits, Z or an offset)."""
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", value
    )
    if match is None:
        raise ValueError(f"not RFC3339Nano: {value!r}")
    base, fraction, zone = match.groups()
    micros = (fraction or "0").ljust(9, "0")[:6]
    return datetime.fromisoformat(f"{base}.{micros}{'+00:00' if zone == 'Z' else zone}")


class FakeJaeger:
    """Serves the spans of ``documents`` through Jaeger's v3 HTTP API."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.spans: list[tuple[dict[str, Any], dict[str, Any]]] = [
            (rs.get("resource", {}), span)
            for doc in documents
            for rs in doc["resourceSpans"]
            for ss in rs["scopeSpans"]
            for span in ss["spans"]
        ]
        self.requests: list[str] = []
        #: Answer as a stream of one ``{"result": ...}`` chunk per span, newline-separated.
        self.chunked = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                status, body = fake.answer(self.path)
                payload = fake.encode(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        if parts.path.startswith("/api/v3/traces/"):
            wanted = {parts.path.rsplit("/", 1)[1]}
        elif parts.path == "/api/v3/traces":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            for required in ("query.serviceName", "query.startTimeMin", "query.startTimeMax"):
                if required not in query:
                    return 400, {"error": {"httpCode": 400, "message": f"{required} missing"}}
            wanted = self.search(
                query["query.serviceName"],
                _parse_rfc3339_nano(query["query.startTimeMin"]),
                _parse_rfc3339_nano(query["query.startTimeMax"]),
            )
        else:
            return 404, {"error": {"httpCode": 404, "message": "404 page not found"}}
        found = [(r, s) for r, s in self.spans if s["traceId"] in wanted]
        if not found:
            return 404, {"error": {"httpCode": 404, "message": "No traces found"}}
        # Jaeger regroups a trace's spans by resource (one per process), in its own order.
        groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for resource, span in reversed(found):
            key = json.dumps(resource, sort_keys=True)
            groups.setdefault(key, (resource, []))[1].append(span)
        return 200, {
            "result": {
                "resourceSpans": [
                    {
                        "resource": resource,
                        "scopeSpans": [{"scope": {"name": "orchestrace"}, "spans": spans}],
                    }
                    for resource, spans in groups.values()
                ]
            }
        }

    def encode(self, body: dict[str, Any]) -> bytes:
        if not (self.chunked and "result" in body):
            return json.dumps(body).encode()
        chunks = [
            {"result": {"resourceSpans": [{**rs, "scopeSpans": [{**ss, "spans": [span]}]}]}}
            for rs in body["result"]["resourceSpans"]
            for ss in rs["scopeSpans"]
            for span in ss["spans"]
        ]
        return "\n".join(json.dumps(chunk) for chunk in chunks).encode()

    def search(self, service: str, start_min: datetime, start_max: datetime) -> set[str]:
        lo = int(start_min.timestamp() * 1e9)
        hi = int(start_max.timestamp() * 1e9)
        found = set()
        for resource, span in self.spans:
            names = [
                a["value"].get("stringValue")
                for a in resource.get("attributes", [])
                if a["key"] == "service.name"
            ]
            if names == [service] and lo <= int(span["startTimeUnixNano"]) <= hi:
                found.add(span["traceId"])
        return found

    def __enter__(self) -> FakeJaeger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    return record_runs(tmp_path / "spans.jsonl", ["spawn", "team"], monkeypatch)


@pytest.fixture
def jaeger(recorded: Recorded) -> Iterator[FakeJaeger]:
    with FakeJaeger(recorded.documents) as fake:
        yield fake


def summary(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["summary", *argv], out=out)
    return code, out.getvalue()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the summary from Jaeger equals the summary from the file ---------------------------------
def test_summary_from_jaeger_equals_file_summary(recorded: Recorded, jaeger: FakeJaeger) -> None:
    assert len(recorded.trace_ids) == 2
    for trace_id in recorded.trace_ids:
        code, from_file = summary(str(recorded.path), "--trace-id", trace_id)
        assert code == 0
        code, from_jaeger = summary("--jaeger", jaeger.url, "--trace-id", trace_id)
        assert code == 0
        assert from_jaeger == from_file
        assert f"trace {trace_id}" in from_jaeger
    assert f"/api/v3/traces/{recorded.trace_ids[0]}" in jaeger.requests


def test_a_streamed_answer_summarises_the_same(recorded: Recorded, jaeger: FakeJaeger) -> None:
    # One {"result": ...} chunk per span, as a streaming gateway sends them.
    jaeger.chunked = True
    trace_id = recorded.trace_ids[0]
    assert summary("--jaeger", jaeger.url, "--trace-id", trace_id) == summary(
        str(recorded.path), "--trace-id", trace_id
    )


def test_last_picks_the_newest_run_of_the_service(recorded: Recorded, jaeger: FakeJaeger) -> None:
    code, from_file = summary(str(recorded.path))  # the file's latest run
    assert code == 0
    assert from_file.startswith(f"Run team · trace {recorded.trace_ids[1]}")
    code, from_jaeger = summary("--jaeger", jaeger.url, "--last")
    assert code == 0
    assert from_jaeger == from_file
    # --last is the default with --jaeger too.
    assert summary("--jaeger", jaeger.url + "/") == (0, from_file)


def test_last_searches_the_v3_api_with_rfc3339nano_times(
    recorded: Recorded, jaeger: FakeJaeger
) -> None:
    reader = JaegerReader(jaeger.url)
    assert reader.newest_run("orchestrace") == recorded.trace_ids[1]
    search = next(r for r in jaeger.requests if r.startswith("/api/v3/traces?"))
    query = {k: v[0] for k, v in parse_qs(urlsplit(search).query).items()}
    assert query["query.serviceName"] == "orchestrace"
    nano = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
    assert re.fullmatch(nano, query["query.startTimeMin"])
    assert re.fullmatch(nano, query["query.startTimeMax"])
    window = _parse_rfc3339_nano(query["query.startTimeMax"]) - _parse_rfc3339_nano(
        query["query.startTimeMin"]
    )
    assert window == timedelta(minutes=15)  # the narrowest window first


def test_last_widens_the_window_until_it_finds_a_run(
    recorded: Recorded, jaeger: FakeJaeger
) -> None:
    reader = JaegerReader(jaeger.url)
    two_days_later = datetime.now(UTC) + timedelta(days=2)
    assert reader.newest_run("orchestrace", now=two_days_later) == recorded.trace_ids[1]
    assert sum(r.startswith("/api/v3/traces?") for r in jaeger.requests) == 3


# --- clear errors -----------------------------------------------------------------------------
def test_unknown_trace_is_a_clear_error(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = summary("--jaeger", jaeger.url, "--trace-id", "0" * 31 + "1")
    assert (code, out) == (2, "")
    err = capsys.readouterr().err
    assert f"trace {'0' * 31}1 not found in Jaeger at {jaeger.url}" in err
    assert "No traces found" in err


def test_no_run_of_the_service_is_a_clear_error(
    jaeger: FakeJaeger, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = summary("--jaeger", jaeger.url, "--last", "--service", "nobody")
    assert code == 2
    err = capsys.readouterr().err
    assert "no run of service 'nobody'" in err
    assert "last 7 days" in err


def test_unreachable_jaeger_is_a_clear_error(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    code, _ = summary("--jaeger", url, "--trace-id", "ab" * 16)
    assert code == 2
    assert f"cannot reach Jaeger at {url}" in capsys.readouterr().err


def test_a_jaeger_that_does_not_answer_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(JaegerError, match=r"did not answer within 0\.2s"):
            JaegerReader(url, timeout=0.2).trace("ab" * 16)


def test_an_answer_that_is_not_json_is_a_clear_error() -> None:
    class Html(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>Grafana</html>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(JaegerError, match="other than JSON"):
            JaegerReader(url).trace("ab" * 16)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_server_errors_carry_jaeger_s_message(jaeger: FakeJaeger) -> None:
    reader = JaegerReader(jaeger.url)
    with pytest.raises(JaegerError, match=r"HTTP 400.*query\.serviceName missing"):
        reader._get("/api/v3/traces", {}, missing="traces")
    with pytest.raises(TraceNotFoundError):
        reader.trace("ab" * 16)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["spans.jsonl", "--jaeger", "http://localhost:16686"], "either a spans FILE or"),
        (["spans.jsonl", "--service", "x"], "--service applies to --jaeger only"),
        (["--jaeger", "localhost:16686"], "Jaeger URL must be http(s)://host:port"),
        (["--jaeger", "http://localhost:16686", "--trace-id", "xyz"], "not a trace id"),
    ],
)
def test_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert summary(*argv) == (2, "")
    assert message in capsys.readouterr().err


def test_no_source_means_the_default_spans_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither FILE nor --jaeger: the file `orchestrace run` writes, in the working directory."""
    monkeypatch.chdir(tmp_path)
    assert summary() == (2, "")
    assert "orchestrace-spans.jsonl" in capsys.readouterr().err


def test_last_and_trace_id_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        summary("--jaeger", "http://x:1", "--last", "--trace-id", "ab")
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# --- helpers ----------------------------------------------------------------------------------
def test_trace_ids_are_normalized() -> None:
    assert normalize_trace_id(" ABCDEF ") == "0" * 26 + "abcdef"
    assert normalize_trace_id("f" * 32) == "f" * 32
    for bad in ("", "g", "f" * 33):
        with pytest.raises(ValueError, match="not a trace id"):
            normalize_trace_id(bad)


def test_rfc3339_nano() -> None:
    moment = datetime(2026, 11, 24, 10, 5, 7, 123456, tzinfo=UTC)
    assert rfc3339_nano(moment) == "2026-11-24T10:05:07.123456000Z"
    assert _parse_rfc3339_nano(rfc3339_nano(moment)) == moment
