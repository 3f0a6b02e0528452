"""``deploy/smoke_test.py`` against the parts of the stack that run here.

* the collector: the in-process OTLP receiver, which the smoke test's demo run exports to;
* Jaeger: the v3 API stand-in of test_jaeger_reader, serving what the receiver got;
* Prometheus: Debian's real ``prometheus`` loaded with ``deploy/alerts.yml`` and connected to
  the Alertmanager stand-in, scraping a scripted run of this process (job = the service);
* Alertmanager and Grafana: small stdlib stand-ins answering the endpoints the smoke test
  reads (``/-/healthy``, ``/api/v2/status``; ``/api/health``, ``/api/datasources`` behind
  basic auth, ``/api/search``), built from the provisioning files and dashboards.

The happy path runs ``python -m deploy.smoke_test`` as a user would; the failing cases call
its ``main`` on the same stack with one part broken. A real Alertmanager (Debian's
``prometheus-alertmanager``) is checked too when installed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from otlp_receiver import OTLPReceiver
from support import make_run
from test_jaeger_reader import FakeJaeger

from runtime.agent import RunConfig
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.setup import Telemetry, setup_telemetry

ROOT = Path(__file__).resolve().parent.parent


def _load_smoke_test() -> ModuleType:
    # deploy/ is not an installed package: load the script from the checkout
    spec = importlib.util.spec_from_file_location(
        "deploy_smoke_test", ROOT / "deploy" / "smoke_test.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


smoke_test = _load_smoke_test()
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager")
SERVICE = "orchestrace"
DEADLINE = 30.0
AUTH = ("admin", "admin")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is not installed (Debian: apt-get install prometheus; "
    ".ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}")


# --- stand-ins --------------------------------------------------------------------------------
class Server:
    """A stdlib HTTP server on a free port; ``route(method, path, query, headers)`` answers
    ``(status, body)`` (a body that is not bytes is sent as JSON)."""

    def __init__(self, route: Callable[[str, str, str, Any], tuple[int, Any]]) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                server.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path, _, query = self.path.partition("?")
                status, body = route(self.command, path, query, self.headers)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@dataclass
class FakeAlertmanager:
    healthy: bool = True

    def route(self, method: str, path: str, _query: str, _headers: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/api/v2/alerts":  # Prometheus sending alerts
            return 200, b""
        if path == "/-/healthy":
            return (200, b"OK") if self.healthy else (503, b"unhealthy")
        if path == "/api/v2/status":
            return 200, {
                "cluster": {"status": "disabled", "peers": []},
                "versionInfo": {"version": "0.34.0"},
                "config": {"original": (ROOT / "deploy" / "alertmanager.yml").read_text()},
                "uptime": "2026-01-01T00:00:00Z",
            }
        return 404, {"error": "not found"}


@dataclass
class FakeGrafana:
    """Answers with what provisioning would give: the data sources and dashboards."""

    missing_datasource: str | None = None

    def route(self, _method: str, path: str, _query: str, headers: Any) -> tuple[int, Any]:
        if path == "/api/health":
            return 200, {"database": "ok", "version": "13.2.3"}
        if path == "/api/datasources":
            expected = "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()
            if headers.get("Authorization") != expected:
                return 401, {"message": "Unauthorized"}
            document = yaml.safe_load(
                (ROOT / "dashboards/provisioning/datasources/datasources.yaml").read_text()
            )
            return 200, [
                {"uid": d["uid"], "name": d["name"], "type": d["type"]}
                for d in document["datasources"]
                if d["uid"] != self.missing_datasource
            ]
        if path == "/api/search":
            boards = [json.loads(p.read_text()) for p in (ROOT / "dashboards/json").glob("*.json")]
            return 200, [
                {"uid": b["uid"], "title": b["title"], "type": "dash-db", "tags": b["tags"]}
                for b in boards
            ]
        return 404, {"message": "Not found"}


def _hex_ids(node: Any) -> Any:
    """OTLP/JSON from protobuf's JSON mapping (base64 ids) to Jaeger's (hex ids)."""
    if isinstance(node, dict):
        return {
            k: binascii.hexlify(base64.b64decode(v)).decode()
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
            else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


class ReceiverJaeger(FakeJaeger):
    """Jaeger's v3 API over whatever the collector stand-in has received so far."""

    def __init__(self, receiver: OTLPReceiver) -> None:
        super().__init__([])
        self.receiver = receiver
        self.drop_links = False

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        documents = [
            _hex_ids(json_format.MessageToDict(r, use_integers_for_enums=True))
            for r in self.receiver.trace_requests()
        ]
        self.spans = [
            (rs.get("resource", {}), {k: v for k, v in span.items() if k != "links"}
             if self.drop_links else span)
            for doc in documents
            for rs in doc.get("resourceSpans", [])
            for ss in rs.get("scopeSpans", [])
            for span in ss.get("spans", [])
        ]  # fmt: skip
        return super().answer(path)


# --- Prometheus, fed by a scripted run of this process ----------------------------------------
@contextlib.contextmanager
def prometheus(tmp: Path, target_port: int, alertmanager: str) -> Iterator[str]:
    assert PROMETHEUS is not None
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "alerts.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager.split("//")[1]]}]}]
        },
        "scrape_configs": [
            {"job_name": SERVICE, "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if server.poll() is not None:
            raise AssertionError(
                f"prometheus exited: {server.stderr.read() if server.stderr else ''}"
            )
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return bool(response.status == 200)

    try:
        wait_for("Prometheus to be ready", ready)
        yield url
    finally:
        server.terminate()
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def _query(url: str, expr: str) -> list[Any]:
    params = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=5) as response:
        return list(json.loads(response.read())["data"]["result"])


async def _instant(_seconds: float) -> None:
    await asyncio.sleep(0)


def _scripted_run(telemetry: Telemetry) -> None:
    run = make_run(
        telemetry,
        model=ScriptedModel(latency=0, sleep=_instant),
        config=RunConfig(model="claude-opus-4-8", sleep=_instant),
        run_id=uuid.uuid4().hex,
    )
    asyncio.run(run_scenario("spawn", run))


@dataclass
class Stack:
    collector: OTLPReceiver
    jaeger: ReceiverJaeger
    prometheus: str
    alertmanager: FakeAlertmanager
    alertmanager_url: str
    grafana: FakeGrafana
    grafana_url: str

    def argv(self, *extra: str) -> list[str]:
        return [
            f"--otlp={self.collector.grpc_endpoint}",
            f"--jaeger={self.jaeger.url}",
            f"--prometheus={self.prometheus}",
            f"--alertmanager={self.alertmanager_url}",
            f"--grafana={self.grafana_url}",
            f"--service={SERVICE}",
            *extra,
        ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    exporter_port = free_port()
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(pytest.MonkeyPatch.context())
        for name in list(os.environ):
            if name.startswith("OTEL_"):
                env.delenv(name)
        env.setenv("OTEL_SERVICE_NAME", SERVICE)
        env.setenv("OTEL_METRICS_EXPORTER", "prometheus")
        env.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        env.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(exporter_port))
        telemetry = setup_telemetry(set_global=False)
        stack.callback(telemetry.shutdown, 10)
        collector = stack.enter_context(OTLPReceiver())
        jaeger = stack.enter_context(ReceiverJaeger(collector))
        alertmanager = FakeAlertmanager()
        am_server = stack.enter_context(Server(alertmanager.route))
        grafana = FakeGrafana()
        grafana_server = stack.enter_context(Server(grafana.route))
        url = stack.enter_context(
            prometheus(tmp_path_factory.mktemp("prometheus"), exporter_port, am_server.url)
        )
        _scripted_run(telemetry)
        wait_for(
            "the scripted run's metrics in Prometheus",
            lambda: bool(_query(url, f'gen_ai_client_token_usage_count{{job="{SERVICE}"}}')),
        )
        yield Stack(
            collector, jaeger, url, alertmanager, am_server.url, grafana, grafana_server.url
        )


def smoke(stack: Stack, *extra: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = smoke_test.main(stack.argv(*extra), out=out)
    return code, out.getvalue().splitlines()


CHECKS = [
    "demo run",
    "jaeger trace",
    "prometheus metrics",
    "prometheus alert rules",
    "prometheus → alertmanager",
    "alertmanager",
    "grafana",
    "grafana data sources",
    "grafana dashboards",
]


def _line(lines: list[str], name: str) -> str:
    [line] = [x for x in lines if re.match(rf"(ok  |FAIL) {re.escape(name)}: ", x)]
    return line


# --- tests ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def passed(stack: Stack) -> tuple[int, list[str]]:
    """The smoke test as a user runs it: a subprocess, the demo run included."""
    result = subprocess.run(
        [sys.executable, "-m", "deploy.smoke_test", *stack.argv("--wait=60")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    assert result.stderr == "" or result.returncode == 0, result.stderr
    return result.returncode, result.stdout.splitlines()


def test_every_check_passes_on_a_working_stack(passed: tuple[int, list[str]]) -> None:
    code, lines = passed
    assert code == 0, "\n".join(lines)
    for name in CHECKS:
        assert _line(lines, name).startswith("ok   "), "\n".join(lines)
    assert lines[-1] == f"{len(CHECKS)} of {len(CHECKS)} checks passed"


def test_the_demo_run_went_through_the_collector(
    stack: Stack, passed: tuple[int, list[str]]
) -> None:
    lines = passed[1]
    trace_id = re.search(r"trace ([0-9a-f]{32})", _line(lines, "demo run"))
    assert trace_id is not None
    received = {s.trace_id.hex() for s in stack.collector.spans()}
    assert trace_id.group(1) in received
    jaeger = _line(lines, "jaeger trace")
    assert re.search(
        r"\d+ spans; receive → send links: [1-9]\d* receive span\(s\) linked to "
        r"[1-9]\d* send span\(s\)",
        jaeger,
    )
    assert "sampled since the run started" in _line(lines, "prometheus metrics")
    rules = _line(lines, "prometheus alert rules")
    assert f"{len(smoke_test.expected_alerts() or ())} alert rules loaded and healthy" in rules
    assert "grafana data sources: alertmanager (alertmanager), jaeger (jaeger)" in "\n".join(lines)


def test_a_broken_stack_fails_with_one_line_per_failure(
    stack: Stack, passed: tuple[int, list[str]]
) -> None:
    trace_id = re.search(r"trace ([0-9a-f]{32})", _line(passed[1], "demo run"))
    assert trace_id is not None
    stack.grafana.missing_datasource = "alertmanager"
    stack.alertmanager.healthy = False
    try:
        code, lines = smoke(stack, f"--trace-id={trace_id.group(1)}", "--wait=1")
    finally:
        stack.grafana.missing_datasource = None
        stack.alertmanager.healthy = True
    assert code == 1
    assert _line(lines, "grafana data sources").startswith(
        "FAIL grafana data sources: data sources missing: alertmanager"
    )
    assert _line(lines, "alertmanager").startswith("FAIL alertmanager: ")
    assert "HTTP 503" in _line(lines, "alertmanager")
    for name in ("jaeger trace", "prometheus metrics", "prometheus alert rules", "grafana"):
        assert _line(lines, name).startswith("ok   "), "\n".join(lines)
    assert lines[-1] == "6 of 8 checks passed; failed: alertmanager, grafana data sources"


def test_a_trace_without_links_and_unreachable_services_fail(
    stack: Stack, passed: tuple[int, list[str]]
) -> None:
    trace_id = re.search(r"trace ([0-9a-f]{32})", _line(passed[1], "demo run"))
    assert trace_id is not None
    stack.jaeger.drop_links = True
    closed = f"http://127.0.0.1:{free_port()}"
    try:
        out = io.StringIO()
        argv = stack.argv(f"--trace-id={trace_id.group(1)}", "--wait=1")
        argv = [a for a in argv if not a.startswith("--grafana=")] + [f"--grafana={closed}"]
        code = smoke_test.main(argv, out=out)
    finally:
        stack.jaeger.drop_links = False
    lines = out.getvalue().splitlines()
    assert code == 1
    assert re.match(r"FAIL jaeger trace: receive \S+ \([0-9a-f]{16}\) links to nothing", _line(
        lines, "jaeger trace"
    ))  # fmt: skip
    assert "cannot connect" in _line(lines, "grafana")


def test_grafana_data_sources_need_the_credentials(stack: Stack) -> None:
    with pytest.raises(smoke_test.CheckFailed, match="HTTP 401"):
        smoke_test.get_json(f"{stack.grafana_url}/api/datasources", auth=("admin", "wrong"))


def test_a_failing_demo_run_is_reported(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = ["-c", "import sys; sys.exit('orchestrace: error: boom')"]
    monkeypatch.setattr(smoke_test, "DEMO_ARGS", failing)
    code, lines = smoke(stack, "--wait=1")
    assert code == 1
    assert _line(lines, "demo run") == "FAIL demo run: exit 1: orchestrace: error: boom"
    assert _line(lines, "jaeger trace") == (
        "FAIL jaeger trace: no trace to look for: the demo run failed"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wait=soon"], "--wait: not a number"),
        (["--grafana=localhost:3000"], "--grafana: not an http(s) URL"),
        (["--trace-id=xyz"], "--trace-id: not 32 hex digits"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        smoke_test.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_urls_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACE_SMOKE_GRAFANA", "http://grafana.example:3000/")
    monkeypatch.setenv("ORCHESTRACE_SMOKE_WAIT", "5")
    args = smoke_test.parse([])
    assert args.grafana == "http://grafana.example:3000"
    assert args.wait == 5.0
    assert smoke_test.parse(["--grafana=http://other:1"]).grafana == "http://other:1"


def test_the_metric_names_checked_are_the_dashboards() -> None:
    spec = importlib.util.spec_from_file_location(
        "dashboards_generate", ROOT / "dashboards" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator
    spec.loader.exec_module(generator)
    series = {m.count for m in generator.METRICS.values() if m.kind is generator.Kind.HISTOGRAM}
    series |= {m.name for m in generator.METRICS.values() if m.kind is generator.Kind.COUNTER}
    assert {name for layouts in smoke_test.GENAI_METRICS for name in layouts} <= series


@pytest.mark.skipif(
    ALERTMANAGER_BIN is None,
    reason="prometheus-alertmanager not installed (Debian: apt-get install "
    "prometheus-alertmanager; .ci/run installs it)",
)
def test_a_real_alertmanager_with_the_stack_s_config(tmp_path: Path) -> None:
    assert ALERTMANAGER_BIN is not None
    port = free_port()
    server = subprocess.Popen(
        [
            ALERTMANAGER_BIN,
            f"--config.file={ROOT / 'deploy' / 'alertmanager.yml'}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        detail = smoke_test.check_alertmanager(
            f"http://127.0.0.1:{port}", time.monotonic() + DEADLINE
        )
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert detail.startswith("healthy, version 0.")
    assert detail.endswith("cluster disabled")
