"""Smoke test of the compose stack: run the offline demo through it, check what a user sees.

    docker compose up -d --wait
    python -m deploy.smoke_test                # from the repository, orchestrace installed
    python -m deploy.smoke_test --help         # every URL, and how long to wait

It runs the offline ``spawn`` demo (``orchestrace run spawn --offline``) against the
collector, then checks, one line each (``ok`` or ``FAIL``):

* the run's trace in Jaeger (v3 API), every span there, each ``receive`` span linked to a
  ``send`` span of the trace;
* the run's GenAI metrics in Prometheus (samples newer than the run's start);
* the alert rules loaded in Prometheus (``/api/v1/rules``: the alerts of
  ``deploy/alerts.yml``, all healthy) and Prometheus connected to Alertmanager;
* Alertmanager healthy (``/-/healthy``) and answering ``/api/v2/status``;
* Grafana healthy, its provisioned data sources (``/api/datasources``, as ``admin``: the
  anonymous viewer may not list them) and dashboards (``/api/search``).

Exit status 1 if any check failed, 2 for bad arguments. URLs are options, or the
``ORCHESTRACE_SMOKE_*`` variables (``--help`` lists them). Data can take a few seconds to
arrive (collector batching, export intervals): the trace and metric checks retry until
``--wait`` seconds have passed. Only the standard library and orchestrace are used.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

ROOT: Final = Path(__file__).resolve().parent.parent
ALERTS_FILE: Final = ROOT / "deploy" / "alerts.yml"
DATASOURCES_FILE: Final = ROOT / "dashboards" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARDS_DIR: Final = ROOT / "dashboards" / "json"

#: The GenAI metrics every model call records (Prometheus names; see dashboards/generate.py),
#: each in the default layout or the latest conventions' (OTEL_SEMCONV_STABILITY_OPT_IN).
GENAI_METRICS: Final = (
    (
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_client_inference_duration_seconds_count",
    ),
    ("gen_ai_client_token_usage_count", "gen_ai_client_inference_usage_input_tokens_total"),
)
#: What is expected when the repository's files are not beside this script.
DEFAULT_DATASOURCES: Final = ("prometheus", "jaeger", "alertmanager")
DEFAULT_DASHBOARDS: Final = ("orchestrace-overview", "orchestrace-traces")

#: option → (environment variable, default)
SETTINGS: Final = {
    "otlp": ("ORCHESTRACE_SMOKE_OTLP", "http://localhost:4317"),
    "jaeger": ("ORCHESTRACE_SMOKE_JAEGER", "http://localhost:16686"),
    "prometheus": ("ORCHESTRACE_SMOKE_PROMETHEUS", "http://localhost:9090"),
    "alertmanager": ("ORCHESTRACE_SMOKE_ALERTMANAGER", "http://localhost:9093"),
    "grafana": ("ORCHESTRACE_SMOKE_GRAFANA", "http://localhost:3000"),
    "grafana_user": ("ORCHESTRACE_SMOKE_GRAFANA_USER", "admin"),
    "grafana_password": ("ORCHESTRACE_SMOKE_GRAFANA_PASSWORD", "admin"),
    "service": ("ORCHESTRACE_SMOKE_SERVICE", "orchestrace"),
    "wait": ("ORCHESTRACE_SMOKE_WAIT", "60"),
}
HTTP_TIMEOUT: Final = 5.0
#: The demo: ``python`` and these arguments (``orchestrace run spawn --offline``, quickly).
DEMO_ARGS: Final = [
    *("-m", "runtime.cli", "run", "spawn", "--offline", "--quiet"),
    *("--time-scale", "0", "--spans-file", ""),
]


class CheckFailed(Exception):
    """A check's definitive failure (no point in retrying)."""


class NotYet(Exception):
    """What a check looks for is not there yet: retry until the deadline."""


@dataclass
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


# --- HTTP -------------------------------------------------------------------------------------
def get_json(url: str, *, auth: tuple[str, str] | None = None) -> Any:
    """GET ``url`` as JSON; NotYet when it cannot be reached or answers 404/5xx."""
    headers = {"Accept": "application/json"}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read()[:200].decode("utf-8", "replace").strip()
        if exc.code in (401, 403):
            raise CheckFailed(f"{url}: HTTP {exc.code} {text}") from None
        raise NotYet(f"{url}: HTTP {exc.code} {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotYet(f"{url}: cannot connect ({reason})") from None
    try:
        return json.loads(body)
    except ValueError:
        raise CheckFailed(f"{url}: not JSON: {body[:80]!r}") from None


def get_ok(url: str) -> str:
    """GET ``url``; its text if it answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            return str(response.read(200).decode("utf-8", "replace").strip())
    except urllib.error.HTTPError as exc:
        raise NotYet(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise NotYet(f"{url}: cannot connect ({getattr(exc, 'reason', exc)})") from None


def retry(check: Callable[[], str], deadline: float, interval: float = 1.0) -> str:
    """Run ``check`` until it passes, fails for good, or ``deadline`` passes (NotYet then
    becomes CheckFailed with its last message)."""
    while True:
        try:
            return check()
        except NotYet as exc:
            if time.monotonic() + interval > deadline:
                raise CheckFailed(str(exc)) from None
            time.sleep(interval)


# --- the checks -------------------------------------------------------------------------------
@dataclass
class Run:
    """The demo run: its trace id, span count and start (epoch seconds)."""

    trace_id: str
    spans: int | None
    started: float | None


def run_demo(otlp: str, service: str) -> Run:
    """Run the offline demo against the collector at ``otlp``."""
    started = time.time()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": service,
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "ORCHESTRACE_SHUTDOWN_TIMEOUT": "10",
    }
    command = [sys.executable, *DEMO_ARGS]
    # from a checkout, `-m runtime.cli` is found in it; an installed orchestrace anywhere
    cwd = ROOT if (ROOT / "runtime" / "cli.py").is_file() else None
    try:
        done = subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        raise CheckFailed("the demo run did not finish within 120 s") from None
    trace = re.search(r"^trace id: ([0-9a-f]{32})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or trace is None:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise CheckFailed(f"exit {done.returncode}: {last[0]}")
    count = re.search(r"· (\d+) spans ·", done.stdout)
    return Run(trace.group(1), int(count.group(1)) if count else None, started)


def check_trace(jaeger: str, run: Run, deadline: float) -> str:
    from telemetry.jaeger import JaegerError, JaegerReader, TraceNotFoundError

    reader = JaegerReader(jaeger, timeout=HTTP_TIMEOUT)

    def look() -> str:
        try:
            spans = list(reader.spans(run.trace_id))
        except TraceNotFoundError:
            raise NotYet(f"trace {run.trace_id} not in Jaeger at {jaeger}") from None
        except JaegerError as exc:
            raise NotYet(str(exc)) from None
        if run.spans is not None and len(spans) < run.spans:
            raise NotYet(f"trace {run.trace_id}: {len(spans)} of {run.spans} spans in Jaeger")
        names = {s.span_id: s.name for s in spans}
        roots = [s.name for s in spans if s.parent_span_id is None]
        if not any(name.startswith("invoke_workflow ") for name in roots):
            raise CheckFailed(f"trace {run.trace_id} has no invoke_workflow root span")
        receives = [s for s in spans if s.name.startswith("receive ")]
        if not receives:
            raise CheckFailed(f"trace {run.trace_id} has no receive span")
        linked = 0
        for span in receives:
            targets = [names.get(link.span_id, "") for link in span.links]
            if not targets or not all(t.startswith("send ") for t in targets):
                raise CheckFailed(
                    f"{span.name} ({span.span_id}) links to {targets or 'nothing'}, "
                    "not to send spans of the trace"
                )
            linked += len(targets)
        return (
            f"trace {run.trace_id}: {len(spans)} spans; receive → send links: "
            f"{len(receives)} receive span(s) linked to {linked} send span(s)"
        )

    return retry(look, deadline)


def check_metrics(prometheus: str, service: str, run: Run | None, deadline: float) -> str:
    def look() -> str:
        found = []
        for layouts in GENAI_METRICS:
            name = " or ".join(layouts)
            expr = f'max(timestamp({{__name__=~"{"|".join(layouts)}", job="{service}"}}))'
            url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            answer = get_json(url)
            result = answer.get("data", {}).get("result", [])
            if not result:
                raise NotYet(f"no {name} series for job={service} in Prometheus")
            newest = float(result[0]["value"][1])
            if run is not None and run.started is not None and newest < run.started - 1:
                raise NotYet(f"{name}: no sample since the run started (newest {newest:.0f})")
            found.append(" or ".join(n.removesuffix("_count") for n in layouts))
        return f"{', '.join(found)} for job={service}" + (
            ", sampled since the run started" if run is not None and run.started else ""
        )

    return retry(look, deadline)


def expected_alerts() -> set[str] | None:
    """The alert names in deploy/alerts.yml, or None if it is not beside this script."""
    if not ALERTS_FILE.is_file():
        return None
    return set(re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", ALERTS_FILE.read_text(), re.MULTILINE))


def check_rules(prometheus: str, deadline: float) -> str:
    def look() -> str:
        answer = get_json(f"{prometheus}/api/v1/rules")
        rules = [r for g in answer.get("data", {}).get("groups", []) for r in g.get("rules", [])]
        alerting = {r["name"]: r for r in rules if r.get("type") == "alerting"}
        if not alerting:
            raise NotYet(f"no alerting rules loaded in Prometheus at {prometheus}")
        expected = expected_alerts()
        missing = sorted((expected or set()) - set(alerting))
        if missing:
            raise CheckFailed(f"alert rules not loaded: {', '.join(missing)}")
        unhealthy = [r["name"] for r in rules if r.get("health", "ok") not in ("ok", "unknown")]
        if unhealthy:
            raise CheckFailed(f"rules failing to evaluate: {', '.join(unhealthy)}")
        firing = sorted(n for n, r in alerting.items() if r.get("state") == "firing")
        return f"{len(alerting)} alert rules loaded and healthy" + (
            f"; firing: {', '.join(firing)}" if firing else "; none firing"
        )

    return retry(look, deadline)


def check_prometheus_alertmanager(prometheus: str, deadline: float) -> str:
    def look() -> str:
        answer = get_json(f"{prometheus}/api/v1/alertmanagers")
        active = [a["url"] for a in answer.get("data", {}).get("activeAlertmanagers", [])]
        if not active:
            raise NotYet(f"Prometheus at {prometheus} has no active Alertmanager")
        return f"Prometheus sends alerts to {', '.join(active)}"

    return retry(look, deadline)


def check_alertmanager(alertmanager: str, deadline: float) -> str:
    def look() -> str:
        get_ok(f"{alertmanager}/-/healthy")
        status = get_json(f"{alertmanager}/api/v2/status")
        version = status.get("versionInfo", {}).get("version", "?")
        cluster = status.get("cluster", {}).get("status", "?")
        if "config" not in status:
            raise CheckFailed(f"{alertmanager}/api/v2/status has no config: {status}")
        return f"healthy, version {version}, cluster {cluster}"

    return retry(look, deadline)


def _expected_grafana() -> tuple[set[str], set[str]]:
    datasources = set(DEFAULT_DATASOURCES)
    if DATASOURCES_FILE.is_file():
        datasources = set(
            re.findall(r"^\s*uid:\s*(\S+)\s*$", DATASOURCES_FILE.read_text(), re.MULTILINE)
        )
    dashboards = set(DEFAULT_DASHBOARDS)
    if DASHBOARDS_DIR.is_dir():
        dashboards = {json.loads(p.read_text())["uid"] for p in DASHBOARDS_DIR.glob("*.json")}
    return datasources, dashboards


def check_grafana(grafana: str, auth: tuple[str, str], deadline: float) -> list[Result]:
    want_sources, want_boards = _expected_grafana()
    results = []

    def health() -> str:
        answer = get_json(f"{grafana}/api/health")
        if answer.get("database") != "ok":
            raise NotYet(f"{grafana}/api/health: {answer}")
        return f"healthy, version {answer.get('version', '?')}"

    def sources() -> str:
        answer = get_json(f"{grafana}/api/datasources", auth=auth)
        have = {d.get("uid"): d.get("type") for d in answer}
        missing = sorted(want_sources - set(have))
        if missing:
            raise NotYet(f"data sources missing: {', '.join(missing)} (have {sorted(have)})")
        return ", ".join(f"{uid} ({have[uid]})" for uid in sorted(want_sources))

    def dashboards() -> str:
        query = urllib.parse.urlencode({"type": "dash-db", "tag": "orchestrace"})
        answer = get_json(f"{grafana}/api/search?{query}", auth=auth)
        have = {d.get("uid") for d in answer}
        missing = sorted(want_boards - have)
        if missing:
            raise NotYet(f"dashboards missing: {', '.join(missing)}")
        return ", ".join(sorted(want_boards))

    checks: list[tuple[str, Callable[[], str]]] = [
        ("grafana", health),
        ("grafana data sources", sources),
        ("grafana dashboards", dashboards),
    ]
    for name, check in checks:
        results.append(attempt(name, functools.partial(retry, check, deadline)))
    return results


def attempt(name: str, check: Callable[[], str]) -> Result:
    try:
        return Result(name, True, check())
    except (CheckFailed, NotYet) as exc:
        return Result(name, False, str(exc))


# --- command line -----------------------------------------------------------------------------
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.smoke_test",
        description="Run the offline demo through the compose stack and check what a user "
        "would click through: the trace in Jaeger, metrics and alert rules in Prometheus, "
        "Alertmanager, Grafana's data sources and dashboards. Exit 1 if a check fails.",
    )
    for option, (variable, default) in SETTINGS.items():
        parser.add_argument(
            f"--{option.replace('_', '-')}",
            default=os.environ.get(variable, default),
            help=f"(${variable}, default {default})",
        )
    parser.add_argument(
        "--trace-id",
        help="check this run's trace instead of running the demo (skips the demo run and "
        "the metrics' freshness check)",
    )
    args = parser.parse_args(argv)
    try:
        args.wait = float(args.wait)
    except ValueError:
        parser.error(f"--wait: not a number of seconds: {args.wait!r}")
    for option in ("otlp", "jaeger", "prometheus", "alertmanager", "grafana"):
        url = getattr(args, option)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            parser.error(f"--{option}: not an http(s) URL: {url!r}")
        setattr(args, option, url.rstrip("/"))
    if args.trace_id and not re.fullmatch(r"[0-9a-f]{32}", args.trace_id):
        parser.error(f"--trace-id: not 32 hex digits: {args.trace_id!r}")
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run every check; print one line each; 0 if all passed, else 1."""
    out = out if out is not None else sys.stdout
    args = parse(argv)
    deadline = time.monotonic() + args.wait
    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        out.write(result.line() + "\n")
        out.flush()

    run: Run | None = None
    if args.trace_id:
        run = Run(args.trace_id, None, None)
    else:
        try:
            run = run_demo(args.otlp, args.service)
            report(Result("demo run", True, f"trace {run.trace_id}, {run.spans} spans"))
        except CheckFailed as exc:
            report(Result("demo run", False, str(exc)))
    if run is not None:
        demo = run
        report(attempt("jaeger trace", lambda: check_trace(args.jaeger, demo, deadline)))
    else:
        report(Result("jaeger trace", False, "no trace to look for: the demo run failed"))
    fresh = run if not args.trace_id else None
    report(
        attempt(
            "prometheus metrics",
            lambda: check_metrics(args.prometheus, args.service, fresh, deadline),
        )
    )
    report(attempt("prometheus alert rules", lambda: check_rules(args.prometheus, deadline)))
    report(
        attempt(
            "prometheus → alertmanager",
            lambda: check_prometheus_alertmanager(args.prometheus, deadline),
        )
    )
    report(attempt("alertmanager", lambda: check_alertmanager(args.alertmanager, deadline)))
    auth = (args.grafana_user, args.grafana_password)
    for result in check_grafana(args.grafana, auth, deadline):
        report(result)
    failed = [r for r in results if not r.ok]
    out.write(
        f"{len(results) - len(failed)} of {len(results)} checks passed"
        + (f"; failed: {', '.join(r.name for r in failed)}\n" if failed else "\n")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
