"""The Grafana dashboards: generated, not drifted, wired to the provisioned data sources."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards" / "json"
DATASOURCES = ROOT / "dashboards" / "provisioning" / "datasources" / "datasources.yaml"
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval", "__value", "__url_time_range"}


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


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def provisioned() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds for ds in document["datasources"]}


# --- generated, and not drifted ---------------------------------------------------------------
def test_committed_json_is_what_the_generator_produces(generator: ModuleType) -> None:
    rendered = generator.rendered()
    committed = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert set(committed) == set(rendered), (
        "dashboards/json holds files the generator does not make"
    )
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} is stale: run python dashboards/generate.py"


def test_generator_check_mode_reports_drift(generator: ModuleType, tmp_path: Path) -> None:
    assert generator.main(["--out", str(tmp_path)]) == 0
    assert generator.main(["--check", "--out", str(tmp_path)]) == 0
    stale = tmp_path / "orchestrace-overview.json"
    stale.write_text(stale.read_text().replace("Model calls", "Model kals"))
    assert generator.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        # the examples Prometheus documents for its OTLP translation
        (
            "gen_ai.client.operation.duration",
            "s",
            "HISTOGRAM",
            "gen_ai_client_operation_duration_seconds",
        ),
        ("gen_ai.client.token.usage", "{token}", "HISTOGRAM", "gen_ai_client_token_usage"),
        ("orchestrace.messages.sent", "{message}", "COUNTER", "orchestrace_messages_sent_total"),
        ("orchestrace.agents", "{agent}", "GAUGE", "orchestrace_agents"),
        (
            "traces.span.metrics.duration",
            "ms",
            "HISTOGRAM",
            "traces_span_metrics_duration_milliseconds",
        ),
        ("traces.span.metrics.calls", "", "COUNTER", "traces_span_metrics_calls_total"),
        ("http.server.duration_seconds", "s", "HISTOGRAM", "http_server_duration_seconds"),
        ("requests.total", "1", "COUNTER", "requests_total"),
        ("cpu.utilization", "1", "GAUGE", "cpu_utilization_ratio"),
    ],
)
def test_prometheus_name_translation(
    generator: ModuleType, name: str, unit: str, kind: str, expected: str
) -> None:
    assert generator.prometheus_name(name, unit, generator.Kind[kind]) == expected


def test_an_unknown_unit_must_be_decided(generator: ModuleType) -> None:
    with pytest.raises(ValueError, match="no Prometheus unit word"):
        generator.prometheus_name("disk.io", "KiBy", generator.Kind.COUNTER)


def test_every_instrument_is_on_the_overview(generator: ModuleType) -> None:
    exprs = " ".join(
        t["expr"]
        for p in panels(dashboards()["orchestrace-overview.json"])
        for t in p.get("targets", [])
    )
    for metric in generator.METRICS.values():
        assert re.search(rf"\b{metric.name}(_bucket|_sum|_count)?\b", exprs), metric.otel_name


def test_the_readme_lists_every_metric_and_no_other(generator: ModuleType) -> None:
    """Each metric's OpenTelemetry and Prometheus names are in the README, and every
    Prometheus-looking name the README mentions is one orchestrace emits."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = set(re.findall(r"`([A-Za-z_.{}]+)`", readme))
    emitted = {m.name for m in generator.METRICS.values()}
    for metric in generator.METRICS.values():
        assert metric.otel_name in quoted, metric.otel_name
        assert metric.name in quoted, metric.name
    mentioned = {
        re.sub(r"_(bucket|sum|count)$", "", q)
        for q in quoted
        if re.fullmatch(r"(gen_ai|orchestrace)_[a-z_]+", q)
        and not q.startswith("orchestrace_layout")
    }
    labels = {"gen_ai_request_model", "gen_ai_operation_name", "gen_ai_token_type"}
    assert mentioned - labels <= emitted, mentioned - labels - emitted


# --- data sources -----------------------------------------------------------------------------
def _datasource_refs(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in panels(board):
        if panel.get("datasource"):
            yield f"panel {panel['title']!r}", panel["datasource"]
        for target in panel.get("targets", []):
            yield (
                f"panel {panel['title']!r} target {target['refId']}",
                target.get("datasource") or panel.get("datasource") or {},
            )
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("datasource"):
            yield f"variable ${variable['name']}", variable["datasource"]


def test_every_data_source_uid_is_provisioned() -> None:
    sources = provisioned()
    assert set(sources) == {"prometheus", "jaeger", "alertmanager"}
    for name, board in dashboards().items():
        refs = list(_datasource_refs(board))
        assert refs, name
        for where, ref in refs:
            assert ref.get("uid") in sources, f"{name}: {where} uses unknown uid {ref}"
            assert ref.get("type") == sources[ref["uid"]]["type"], f"{name}: {where}"


def test_every_panel_with_queries_names_its_data_source() -> None:
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel["type"] in {"row", "text"}:
                continue
            assert panel.get("datasource", {}).get("uid"), f"{name}: {panel['title']}"
            if panel["type"] == "alertlist":  # lists alert rules: no query of its own
                continue
            assert panel.get("targets"), f"{name}: {panel['title']} has no query"


def test_the_alert_list_shows_the_rules_prometheus_evaluates() -> None:
    sources = provisioned()
    [panel] = [
        p for p in panels(dashboards()["orchestrace-overview.json"]) if p["type"] == "alertlist"
    ]
    # the panel filters rule sources by data source *name*
    assert panel["options"]["datasource"] == sources["prometheus"]["name"]
    assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    states = panel["options"]["stateFilter"]
    assert states["firing"] is states["pending"] is True
    assert states["normal"] is False
    # Prometheus manages the rules and names the Alertmanager it sends them to
    prometheus = sources["prometheus"]["jsonData"]
    assert prometheus["manageAlerts"] is True
    assert sources[prometheus["alertmanagerUid"]]["type"] == "alertmanager"
    alertmanager = sources["alertmanager"]["jsonData"]
    assert alertmanager == {"implementation": "prometheus", "handleGrafanaManagedAlerts": False}


def test_exemplars_link_to_jaeger() -> None:
    sources = provisioned()
    destinations = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations == [
        {"name": "trace_id", "datasourceUid": "jaeger", "urlDisplayLabel": "Open trace in Jaeger"}
    ]
    assert sources["jaeger"]["type"] == "jaeger"
    assert sources["jaeger"]["jsonData"]["nodeGraph"] == {"enabled": True}
    latency = [
        t
        for p in panels(dashboards()["orchestrace-overview.json"])
        for t in p.get("targets", [])
        if "histogram_quantile" in t["expr"] and "_seconds_bucket" in t["expr"]
    ]
    assert latency
    assert any(t.get("exemplar") for t in latency)


def test_provisioning_files_escape_dollars() -> None:
    # Grafana expands $VAR in provisioning files; a literal $ must be written $$.
    for path in (ROOT / "dashboards" / "provisioning").rglob("*.yaml"):
        assert not re.search(r"(?<!\$)\$(?!\$)", path.read_text()), path


# --- dashboard structure ----------------------------------------------------------------------
def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    for name, board in dashboards().items():
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), name
        for p in panels(board):
            pos = p["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}: {p['title']}"


def test_variables_used_are_defined() -> None:
    for name, board in dashboards().items():
        defined = {v["name"] for v in board.get("templating", {}).get("list", [])}
        text = json.dumps(board["panels"])
        used = set(re.findall(r"\$\{?(\w+)", text))
        assert used - GRAFANA_BUILTINS <= defined, f"{name}: {used - GRAFANA_BUILTINS - defined}"


def test_overview_is_templated_by_service_and_model() -> None:
    board = dashboards()["orchestrace-overview.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"service", "model"}
    assert variables["service"]["query"].startswith("label_values(")
    assert variables["service"]["query"].endswith(", job)")
    assert 'job=~"$service"}' in variables["model"]["query"]
    for panel in panels(board):
        for target in panel.get("targets", []):
            assert 'job=~"$service"' in target["expr"], panel["title"]
            if "gen_ai_client_" in target["expr"]:
                assert 'gen_ai_request_model=~"$model"' in target["expr"], panel["title"]


def test_traces_dashboard_searches_runs_and_shows_one_trace() -> None:
    board = dashboards()["orchestrace-traces.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["trace_id"]["type"] == "textbox"
    assert variables["service"]["type"] == "textbox"
    by_type = {p["type"]: p for p in panels(board)}
    trace = by_type["traces"]
    assert trace["datasource"] == {"type": "jaeger", "uid": "jaeger"}
    [target] = trace["targets"]
    assert target["query"] == "${trace_id}"
    assert "queryType" not in target
    runs = by_type["table"]
    [search] = runs["targets"]
    assert search["queryType"] == "search"
    assert search["service"] == "$service"
    [override] = runs["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byName", "options": "traceID"}
    [link] = override["properties"][0]["value"]
    assert f"/d/{board['uid']}/" in link["url"]
    assert "var-trace_id=${__value.raw}" in link["url"]


def test_dashboards_link_to_each_other() -> None:
    boards = dashboards()
    for board in boards.values():
        assert "orchestrace" in board["tags"]
        assert any(
            link["type"] == "dashboards" and link["tags"] == ["orchestrace"]
            for link in board["links"]
        )
    assert {b["uid"] for b in boards.values()} == {"orchestrace-overview", "orchestrace-traces"}
