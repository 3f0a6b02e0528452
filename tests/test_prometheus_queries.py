"""Every PromQL expression on the dashboards returns data from a real Prometheus.

The runtime's Prometheus scrape endpoint (``OTEL_METRICS_EXPORTER=prometheus``) stays open
in this process while Debian's ``prometheus`` binary, started here on a free port with a 1 s
scrape interval, scrapes it: one scripted ``spawn`` run (streamed, as by default), a
scrape, a second run, a scrape — so counters have grown between two samples and ``rate()``
and the quantiles have something to work with. Each panel query is then run with the
dashboard's variables set to the values its variable queries return; an empty or all-NaN
answer fails.

The same runs also export over OTLP (to the in-process receiver): the names Prometheus 3
gives those OTLP metrics (UnderscoreEscapingWithSuffixes, as implemented by the dashboard
generator) must be exactly the names and labels of the scrape, so the dashboards work on the
compose stack (OTLP push) and on a local scrape alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from otlp_receiver import OTLPReceiver, ReceivedMetric
from prometheus_client.parser import text_string_to_metric_families
from support import make_run

from runtime.agent import RunConfig, RunContext
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.setup import setup_telemetry

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))
PROMETHEUS = shutil.which("prometheus")
SERVICE = "orchestrace"
#: Grafana's interval variables, given values that cover both scrapes of the test.
INTERVALS = {"$__rate_interval": "1m", "$__range": "1m", "$__interval": "1s"}
DEADLINE = 20.0

NO_PROMETHEUS = (
    "the prometheus binary is not installed (Debian: apt-get install prometheus; "
    ".ci/run installs it)"
)


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dashboards_generate", ROOT / "dashboards" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# --- the dashboards' queries ------------------------------------------------------------------
@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    legend: str
    instant: bool

    def __str__(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref_id}"


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def panel_queries() -> list[PanelQuery]:
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in _panels(board):
            for target in panel.get("targets", []):
                uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
                if uid != "prometheus":
                    continue
                found.append(
                    PanelQuery(
                        board["uid"],
                        panel["title"],
                        target["refId"],
                        target["expr"],
                        target.get("legendFormat", ""),
                        bool(target.get("instant")) and not target.get("range"),
                    )
                )
    return found


def query_variables() -> list[tuple[str, str]]:
    """(name, label_values query) of every Prometheus query variable, in dashboard order."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                found.append(
                    (variable["name"], query if isinstance(query, str) else query["query"])
                )
    return found


def substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in INTERVALS.items():
        expr = expr.replace(name, value)
    for name, value in values.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"unresolved variable in {expr}"
    return expr


# --- a real Prometheus scraping the runtime ---------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}")


@dataclass
class Prometheus:
    """A running Prometheus's HTTP API."""

    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr, "time": f"{time.time():.3f}"})
        answer = http_json(f"{self.url}/api/v1/query?{params}")
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def label_values(self, label: str, selector: str) -> list[str]:
        params = urllib.parse.urlencode({"match[]": selector})
        answer = http_json(f"{self.url}/api/v1/label/{label}/values?{params}")
        assert answer["status"] == "success", answer
        return list(answer["data"])

    def runs_seen(self, n: int) -> bool:
        return any(float(s["value"][1]) == n for s in self.query("sum(orchestrace_runs_total)"))


@dataclass
class Recorded:
    """Two runs' metrics: the scrape endpoint's text, the OTLP export, and Prometheus."""

    exposition: str
    otlp: list[ReceivedMetric]
    server: Prometheus | None


async def _instant(_seconds: float) -> None:
    await asyncio.sleep(0)


@contextlib.contextmanager
def start_prometheus(tmp: Path, target_port: int) -> Iterator[Prometheus]:
    """Debian's prometheus on a free port, scraping ``target_port`` every second."""
    assert PROMETHEUS is not None
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        # The job is named after the service, as Prometheus 3 names OTLP metrics' job.
        f"  - job_name: {SERVICE}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
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
    try:
        wait_for("Prometheus to be ready", lambda: _ready(url, server))
        yield Prometheus(url)
    finally:
        server.terminate()
        try:
            _, errors = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            _, errors = server.communicate()
    assert server.returncode in (0, -15), errors.decode()


def _ready(url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        errors = server.stderr.read().decode() if server.stderr else ""
        raise AssertionError(f"prometheus exited: {errors}")
    with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
        return response.status == 200


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Four spawn runs exported to a scrape endpoint and over OTLP, with a scrape after each,
    alternately in the default GenAI layout and the latest conventions'
    (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``): every metric of both is
    there, each growing between scrapes, and each query that reads either layout runs on
    both."""
    exporter_port = free_port()
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(OTLPReceiver())
        env = stack.enter_context(pytest.MonkeyPatch.context())
        env.setenv("OTEL_SERVICE_NAME", SERVICE)
        # Spans go over OTLP too, so the pipeline-health counters have an exporter to count.
        env.setenv("OTEL_TRACES_EXPORTER", "otlp")
        env.setenv("OTEL_METRICS_EXPORTER", "prometheus,otlp")
        env.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        env.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(exporter_port))
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint)
        env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        env.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        env.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # OTLP only when flushed
        telemetry = setup_telemetry(set_global=False)
        stack.callback(telemetry.shutdown, 10)
        server = None
        if PROMETHEUS is not None:
            tmp = tmp_path_factory.mktemp("prometheus")
            server = stack.enter_context(start_prometheus(tmp, exporter_port))
        for n in (1, 2, 3, 4):
            asyncio.run(run_scenario("spawn", _run_context(telemetry, latest=n % 2 == 0)))
            if server is not None:
                wait_for(f"a scrape after run {n}", lambda n=n: server.runs_seen(n))
        assert telemetry.meter_provider.force_flush(10_000)  # type: ignore[attr-defined]
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter_port}/metrics") as response:
            exposition = response.read().decode()
        otlp = [m for m in receiver.metrics() if m.scope_name == "orchestrace"]
        yield Recorded(exposition, otlp, server)


@pytest.fixture(scope="module")
def prometheus(recorded: Recorded) -> Prometheus:
    if recorded.server is None:
        pytest.skip(NO_PROMETHEUS)
    return recorded.server


def _run_context(telemetry: Any, *, latest: bool) -> RunContext:
    return make_run(
        telemetry,
        model=ScriptedModel(latency=0, sleep=_instant),
        run_id=uuid.uuid4().hex,
        latest=latest,
        # Streamed, as `orchestrace run` does by default: the time-to-first-token and
        # time-per-output-token panels need the histograms only streamed calls record.
        config=RunConfig(model="claude-opus-4-8", sleep=_instant, stream=True),
    )


@pytest.fixture(scope="module")
def variables(prometheus: Prometheus) -> dict[str, str]:
    """Each query variable set to the first value its own query returns."""
    values: dict[str, str] = {}
    for name, query in query_variables():
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"${name}: not a label_values(selector, label) query: {query}"
        selector, label = match.groups()
        found = prometheus.label_values(label, substitute(selector, values))
        assert found, f"${name} has no values ({query})"
        assert re.fullmatch(r"[\w.-]+", found[0]), found[0]  # no regex escaping needed
        values[name] = found[0]
    return values


# --- tests ------------------------------------------------------------------------------------
def test_the_dashboards_have_prometheus_queries() -> None:
    assert len(panel_queries()) >= 15
    assert {name for name, _ in query_variables()} == {"service", "model"}


def test_variables_resolve_to_the_run_s_service_and_model(variables: dict[str, str]) -> None:
    assert variables == {"service": SERVICE, "model": "claude-opus-4-8"}


@pytest.mark.parametrize("panel", panel_queries(), ids=str)
def test_every_panel_query_returns_data(
    panel: PanelQuery, prometheus: Prometheus, variables: dict[str, str]
) -> None:
    expr = substitute(panel.expr, variables)
    series = prometheus.query(expr)
    assert series, f"{panel}: no data for {expr}"
    values = [float(s["value"][1]) for s in series]
    assert any(math.isfinite(v) for v in values), f"{panel}: only NaN/Inf for {expr}: {series}"
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", panel.legend):
        missing = [s["metric"] for s in series if label not in s["metric"]]
        assert not missing, f"{panel}: legend label {label!r} missing from {missing}"


# --- the alert rules read the same metrics ----------------------------------------------------
ALERTS_FILE = ROOT / "deploy" / "alerts.yml"


def alert_rules() -> list[dict[str, Any]]:
    import yaml

    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_expression_runs_on_metrics_prometheus_has(
    rule: dict[str, Any], prometheus: Prometheus
) -> None:
    prometheus.query(rule["expr"])  # valid PromQL, evaluated without error
    # metric names: what is left once label matchers and groupings are taken out
    bare = re.sub(r"\{[^}]*\}|\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", rule["expr"])
    names = set(re.findall(r"\b((?:gen_ai|orchestrace)_\w+)", bare))
    assert names, rule["expr"]
    for name in names:
        assert prometheus.query(f"count({name})"), f"{rule['alert']}: no series named {name}"


# --- OTLP push and scrape give the same names -------------------------------------------------
def _otlp_kind(metric: ReceivedMetric, kinds: Any) -> Any:
    data = metric.metric.WhichOneof("data")
    if data == "histogram":
        return kinds.HISTOGRAM
    if data == "sum":
        return kinds.COUNTER if metric.metric.sum.is_monotonic else kinds.GAUGE
    return kinds.GAUGE


def _points(metric: ReceivedMetric) -> list[Any]:
    data = metric.metric.WhichOneof("data")
    return list(getattr(metric.metric, data).data_points)


def _scrape_families(exposition: str) -> dict[str, set[str]]:
    """Series base name (counters with _total) → label names, for orchestrace's metrics."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        if not family.name.startswith(("gen_ai_", "orchestrace_")):
            continue
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = found.setdefault(name, set())
        for sample in family.samples:
            labels.update(k for k in sample.labels if k != "le" and not k.startswith("otel_scope"))
    return found


def test_otlp_and_scrape_paths_give_the_same_metric_names(recorded: Recorded) -> None:
    generator = _load_generator()
    translated: dict[str, set[str]] = {}
    for metric in recorded.otlp:
        name = generator.prometheus_name(
            metric.name, metric.metric.unit, _otlp_kind(metric, generator.Kind)
        )
        labels = translated.setdefault(name, set())
        for point in _points(metric):
            labels.update(generator.label(kv.key) for kv in point.attributes)
    scraped = _scrape_families(recorded.exposition)
    assert translated == scraped
    assert set(translated) == {m.name for m in generator.METRICS.values()}
    # service.name becomes job on both paths (OTLP: from the resource; scrape: the job).
    assert {m.resource.get("service.name") for m in recorded.otlp} == {SERVICE}


def test_otlp_metrics_are_cumulative_with_trace_exemplars(recorded: Recorded) -> None:
    # Prometheus's OTLP receiver takes cumulative sums and histograms (delta needs a flag).
    cumulative = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
    for metric in recorded.otlp:
        data = metric.metric.WhichOneof("data")
        if data in ("sum", "histogram"):
            temporality = getattr(metric.metric, data).aggregation_temporality
            assert temporality == cumulative, metric.name
    durations = [m for m in recorded.otlp if m.name == "gen_ai.client.operation.duration"]
    exemplars = [e for m in durations for p in _points(m) for e in p.exemplars]
    assert exemplars, "no exemplars on gen_ai.client.operation.duration"
    assert all(len(e.trace_id) == 16 and any(e.trace_id) for e in exemplars)
