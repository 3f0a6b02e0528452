"""The alert rules (deploy/alerts.yml) and the Alertmanager config (deploy/alertmanager.yml).

Each alert gets promtool unit tests (``promtool test rules``): input series that must fire
it, with exactly the expected labels, and series that must leave it silent (not even
pending). The tests are built here from the thresholds in the file (its first group,
``orchestrace:threshold:*`` recording rules), so changing a threshold keeps them valid: a
firing case sits well above its threshold, a silent one below. Firing is checked on the
``ALERTS`` series the rule evaluation writes — its labels are the alert's — rather than
with ``alert_rule_test``, whose expected annotations would have to repeat each rendered
``$value``.

``amtool check-config`` validates the Alertmanager config, and ``amtool config routes
test`` shows every alert reaching the one receiver. Both tools skip with a reason when
missing (Debian: ``prometheus`` ships promtool, ``prometheus-alertmanager`` amtool; .ci/run
installs both).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from telemetry import semconv as sc

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "alerts.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager.yml"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
THRESHOLD_GROUP = "orchestrace-alert-thresholds"
JOB = "orchestrace"

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus; .ci/run installs it)",
)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None,
    reason="amtool not installed (Debian: apt-get install prometheus-alertmanager; "
    ".ci/run installs it)",
)


# --- the rules file ---------------------------------------------------------------------------
def groups() -> list[dict[str, Any]]:
    return list(yaml.safe_load(ALERTS.read_text())["groups"])


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups() for r in g["rules"] if "alert" in r}


def thresholds() -> dict[str, float]:
    """``orchestrace:threshold:NAME`` recording rules → NAME → value."""
    [group] = [g for g in groups() if g["name"] == THRESHOLD_GROUP]
    found = {}
    for rule in group["rules"]:
        match = re.fullmatch(r"vector\(\s*([-+0-9.eE]+)\s*\)", rule["expr"].strip())
        assert match, f"{rule['record']}: a threshold is vector(NUMBER), not {rule['expr']}"
        found[rule["record"].removeprefix("orchestrace:threshold:")] = float(match.group(1))
    return found


T = thresholds()


# --- promtool unit tests, built from the thresholds ------------------------------------------
Values = Sequence[float | None]  # one sample per minute; None: no sample


@dataclass
class Case:
    """Input series and what the alert must do with them at ``at`` minutes."""

    name: str
    series: list[tuple[str, Values]]
    at: int
    #: Label sets of the firing alerts (without alertname, alertstate and the rule's own
    #: labels); empty: the alert must be silent.
    fires: list[dict[str, str]] = field(default_factory=list)


def series(name: str, values: Values, **labels: str) -> tuple[str, Values]:
    selector = ",".join(f'{k}="{v}"' for k, v in {"job": JOB, "instance": "p1", **labels}.items())
    return f"{name}{{{selector}}}", values


def counter(per_minute: float, minutes: int, start: float = 0.0) -> list[float | None]:
    return [start + per_minute * i for i in range(minutes + 1)]


def flat(value: float, minutes: int) -> list[float | None]:
    return [value] * (minutes + 1)


def appears(at: int, value: float, minutes: int) -> list[float | None]:
    """A series that starts at minute ``at`` already at ``value`` (a short-lived process
    whose counter was exported for the first time after the event)."""
    return [None] * at + [value] * (minutes + 1 - at)


def growth_cases(metric: str, labels: dict[str, str], **other: str) -> list[Case]:
    """ "Any growth in 10 minutes" alerts on a counter: long-lived and short-lived series.

    ``labels`` are the alert's own (its ``by``), ``other`` further labels of the series.
    """
    every = {**labels, **other}
    return [
        Case("fires when the counter grows", [series(metric, [0] * 11 + [1] * 10, **every)], 15,
             [labels]),
        Case("fires on a new series that starts above zero",
             [series(metric, appears(11, 2, 12), **every)], 12, [labels]),
        Case("silent while the counter stays at zero", [series(metric, flat(0, 20), **every)],
             20),
        Case("silent for an old count that no longer grows",
             [series(metric, flat(3, 30), **every)], 25),
    ]  # fmt: skip


def above(threshold: float) -> float:
    """A value clearly above ``threshold`` (never 0)."""
    return threshold * 2 + 1 if threshold >= 0 else threshold / 2


def below(threshold: float) -> float:
    """A value below ``threshold``, or 0 when the threshold is 0 (``> 0`` is then silent)."""
    return threshold / 2 if threshold > 0 else threshold * 2 - 1 if threshold < 0 else 0.0


def ratio_counts(ratio: float, per_minute: int = 1000) -> tuple[int, int]:
    """(errors, successes) per minute giving ``ratio`` errors."""
    errors = min(per_minute, max(0, round(ratio * per_minute)))
    return errors, per_minute - errors


def histogram(name: str, above_s: float | None, minutes: int, **labels: str) -> list[Any]:
    """A histogram whose observations (10 a minute) all lie in one bucket: the first one
    above ``above_s`` seconds, or the lowest bucket when None."""
    bounds = [*sc.DURATION_BUCKETS, math.inf]
    if above_s is None:
        index = 0
    else:
        index = next(i for i, b in enumerate(bounds) if b > above_s) + 1
        index = min(index, len(bounds) - 1)
    out = []
    for i, le in enumerate(bounds):
        label = "+Inf" if math.isinf(le) else repr(le)
        rate = 10 if i >= index else 0
        out.append(series(f"{name}_bucket", counter(rate, minutes), le=label, **labels))
    out.append(series(f"{name}_count", counter(10, minutes), **labels))
    return out


MODEL = {"gen_ai_request_model": "claude-opus-4-8"}
OK = {**MODEL, "gen_ai_operation_name": "chat"}


#: Model-call histograms in the default GenAI layout and the latest conventions'
#: (OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental): the alerts read either.
CALLS = {
    "default": "gen_ai_client_operation_duration_seconds",
    "latest": "gen_ai_client_inference_duration_seconds",
}
FIRST_CHUNK = {
    "default": "gen_ai_client_operation_time_to_first_chunk_seconds",
    "latest": "gen_ai_client_inference_time_to_first_chunk_seconds",
}


def error_ratio_cases() -> list[Case]:
    threshold = T["model_error_ratio"]
    cases = []
    for (label, ratio, fires), (layout, base) in (
        (case, layout)
        for case in (
            ("fires above the threshold", (threshold + 1) / 2, True),
            ("silent below the threshold", below(threshold), False),
        )
        for layout in CALLS.items()
    ):
        name = f"{base}_count"
        label = f"{label} ({layout} layout)"
        errors, ok = ratio_counts(ratio)
        cases.append(
            Case(
                label,
                [
                    series(name, counter(errors, 15), error_type="500", **OK),
                    series(name, counter(ok, 15), **OK),
                ],
                15,
                [MODEL] if fires else [],
            )
        )
    return cases


def retry_storm_cases() -> list[Case]:
    """Counted per attempt: retries that later succeed fire it, though no call failed."""
    threshold = T["model_rate_limited_per_minute"]
    name = "orchestrace_model_attempts_total"
    calls = "gen_ai_client_operation_duration_seconds_count"
    # Every call ends well (no error_type on the call histogram), after its retries.
    busy = [
        series(name, counter(1000, 15), http_response_status_code="200", **OK),
        series(calls, counter(1000, 15), **OK),
    ]

    def failed(per_minute: float, status: str) -> tuple[str, Values]:
        return series(
            name, counter(per_minute, 15), error_type=status, http_response_status_code=status, **OK
        )

    return [
        Case("fires on retried 429 attempts above the threshold though every call succeeds",
             [*busy, failed(above(threshold), "429")], 15, [MODEL]),
        Case("fires on retried 529 attempts above the threshold though every call succeeds",
             [*busy, failed(above(threshold), "529")], 15, [MODEL]),
        Case("silent on a few retried attempts, and other errors do not count",
             [*busy, failed(below(threshold), "429"), failed(above(threshold) * 10, "500")],
             15),
    ]  # fmt: skip


def token_cases() -> list[Case]:
    threshold = T["tokens_per_minute"]
    name = "gen_ai_client_token_usage_sum"

    def tokens(per_minute: float) -> list[tuple[str, Values]]:
        half = per_minute / 2
        return [
            series(name, counter(half, 20), gen_ai_token_type="input", **OK),
            series(name, counter(half, 20), gen_ai_token_type="output", **OK),
        ]

    def counters(per_minute: float) -> list[tuple[str, Values]]:
        """The latest conventions' token counters: input and output apart, both counted."""
        half = per_minute / 2
        return [
            series(f"gen_ai_client_inference_usage_{kind}_tokens_total", counter(half, 20),
                   gen_ai_token_modality="text", **OK)
            for kind in ("input", "output")
        ]  # fmt: skip

    return [
        Case("fires above the budget", tokens(above(threshold)), 20, [{}]),
        Case("silent within the budget", tokens(below(threshold)), 20),
        Case("fires above the budget (latest layout)", counters(above(threshold)), 20, [{}]),
        # each counter alone is above 3/4 of the budget: both must be added to fire
        Case("fires when input and output only add up above the budget (latest layout)",
             counters(threshold * 1.5), 20, [{}]),
        Case("silent within the budget (latest layout)", counters(below(threshold)), 20),
    ]  # fmt: skip


def cost_cases() -> list[Case]:
    threshold = T["cost_usd_per_hour"]
    name = "orchestrace_usage_cost_USD_total"
    return [
        Case("fires above the budget",
             [series(name, counter(above(threshold) / 60, 25), **OK)], 25, [{}]),
        Case("silent within the budget",
             [series(name, counter(below(threshold) / 60, 25), **OK)], 25),
    ]  # fmt: skip


def latency_cases(metric: str, threshold: float) -> list[Case]:
    return [
        Case(f"fires when p95 is above the threshold ({metric})",
             histogram(metric, threshold, 15, **OK), 15, [MODEL]),
        Case(f"silent when calls are fast ({metric})", histogram(metric, None, 15, **OK), 15),
    ]  # fmt: skip


def undeliverable_cases() -> list[Case]:
    threshold = T["undeliverable_messages"]
    name = "orchestrace_messages_sent_total"
    lead = {"orchestrace_agent_role": "lead"}
    delivered = series(name, counter(50, 30), orchestrace_message_outcome="delivered", **lead)
    grows = above(threshold) / 10 + 1  # per minute: 10 minutes make more than the threshold
    return [
        Case("fires when messages to ended agents grow",
             [delivered,
              series(name, counter(grows, 20), orchestrace_message_outcome="ended", **lead)],
             20, [{"orchestrace_message_outcome": "ended"}]),
        Case("fires on a new series of unknown recipients",
             [delivered,
              series(name, appears(11, above(threshold), 12),
                     orchestrace_message_outcome="unknown", **lead)],
             12, [{"orchestrace_message_outcome": "unknown"}]),
        Case("silent when every message is delivered (or few are not)",
             [delivered,
              series(name, counter(below(threshold) / 10, 20),
                     orchestrace_message_outcome="ended", **lead)],
             20),
    ]  # fmt: skip


def blocked_cases() -> list[Case]:
    threshold = T["agent_blocked_seconds"]
    name = "orchestrace_agent_wait_longest_seconds"
    return [
        Case("fires when one wait lasts longer than the threshold",
             [series(name, flat(above(threshold), 5), orchestrace_agent_role="helper"),
              series(name, flat(0, 5), orchestrace_agent_role="lead")],
             5, [{"orchestrace_agent_role": "helper"}]),
        Case("silent for shorter waits",
             [series(name, flat(below(threshold), 5), orchestrace_agent_role="helper")], 5),
    ]  # fmt: skip


CASES: dict[str, list[Case]] = {
    "OrchestraceAgentCrashed": [
        *growth_cases(
            "orchestrace_agents_ended_total",
            {"orchestrace_agent_role": "helper"},
            orchestrace_agent_state="crashed",
        ),
        Case(
            "silent when agents end done or killed",
            [
                series(
                    "orchestrace_agents_ended_total",
                    counter(3, 20),
                    orchestrace_agent_role="helper",
                    orchestrace_agent_state=state,
                )
                for state in ("done", "killed")
            ],
            20,
        ),
    ],
    "OrchestraceModelErrorRatio": error_ratio_cases(),
    "OrchestraceModelRetryStorm": retry_storm_cases(),
    "OrchestraceTokenBudget": token_cases(),
    "OrchestraceCostBudget": cost_cases(),
    "OrchestraceTimeToFirstTokenSlow": [
        case
        for metric in FIRST_CHUNK.values()
        for case in latency_cases(metric, T["time_to_first_token_p95_seconds"])
    ],
    "OrchestraceModelLatencyHigh": [
        case
        for metric in CALLS.values()
        for case in latency_cases(metric, T["model_latency_p95_seconds"])
    ],
    "OrchestraceMessagesUndeliverable": undeliverable_cases(),
    "OrchestraceAgentBlocked": blocked_cases(),
    "OrchestraceSpansDropped": growth_cases(
        "orchestrace_telemetry_spans_dropped_total", {"orchestrace_exporter": "otlp/grpc"}
    ),
    "OrchestraceSpansExportFailing": growth_cases(
        "orchestrace_telemetry_spans_failed_total", {"orchestrace_exporter": "otlp/grpc"}
    ),
    "OrchestraceMetricExportFailing": growth_cases(
        "orchestrace_telemetry_metric_points_failed_total", {"orchestrace_exporter": "otlp/grpc"}
    ),
}


def _series_entry(selector: str, values: Values) -> dict[str, str]:
    text = " ".join("_" if v is None else repr(float(v)) for v in values)
    return {"series": selector, "values": text}


def promtool_tests(alert: str, cases: list[Case]) -> dict[str, Any]:
    """A ``promtool test rules`` file: one test group per case."""
    rule = alerts()[alert]
    own = {k: str(v) for k, v in (rule.get("labels") or {}).items()}
    tests = []
    for case in cases:
        firing = [
            {
                "labels": "ALERTS{"
                + ",".join(
                    f'{k}="{v}"'
                    for k, v in {
                        "alertname": alert,
                        "alertstate": "firing",
                        "job": JOB,
                        **own,
                        **labels,
                    }.items()
                )
                + "}",
                "value": 1,
            }
            for labels in case.fires
        ]
        checks: list[dict[str, Any]] = [
            {
                "expr": f'ALERTS{{alertname="{alert}",alertstate="firing"}}',
                "eval_time": f"{case.at}m",
                "exp_samples": firing,
            }
        ]
        if not case.fires:  # silent: not even pending
            checks.append(
                {"expr": f'ALERTS{{alertname="{alert}"}}', "eval_time": f"{case.at}m",
                 "exp_samples": []}
            )  # fmt: skip
        tests.append(
            {
                "name": f"{alert}: {case.name}",
                "interval": "1m",
                "input_series": [_series_entry(s, v) for s, v in case.series],
                "promql_expr_test": checks,
            }
        )
    return {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


# --- tests: the rules -------------------------------------------------------------------------
def test_every_alert_has_firing_and_silent_cases() -> None:
    assert set(CASES) == set(alerts())
    for alert, cases in CASES.items():
        assert any(c.fires for c in cases), f"{alert}: no case that fires it"
        assert any(not c.fires for c in cases), f"{alert}: no case that leaves it silent"


def test_every_alert_says_what_happened_and_what_to_do() -> None:
    for name, rule in alerts().items():
        assert name.startswith("Orchestrace"), name
        annotations = rule.get("annotations") or {}
        assert annotations.get("summary"), f"{name}: no summary"
        assert len(annotations.get("runbook", "")) > 80, f"{name}: no runbook"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
        assert "job" in rule["expr"], f"{name}: not per service"


def test_thresholds_are_one_place_and_all_used() -> None:
    used = {
        name
        for rule in alerts().values()
        for name in re.findall(r"orchestrace:threshold:(\w+)", rule["expr"])
    }
    assert used == set(T), "every threshold is used, and every one used is defined"
    # a p95 cannot exceed the largest finite bucket: a threshold at or above it never fires
    for name in ("time_to_first_token_p95_seconds", "model_latency_p95_seconds"):
        assert T[name] < sc.DURATION_BUCKETS[-1], f"{name} must be below {sc.DURATION_BUCKETS[-1]}"


@needs_promtool
def test_promtool_check_rules() -> None:
    assert PROMTOOL is not None
    result = run(PROMTOOL, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts()) + len(T)} rules found" in result.stdout


@needs_promtool
@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_on_what_should_fire_it_and_only_that(alert: str, tmp_path: Path) -> None:
    assert PROMTOOL is not None
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump(promtool_tests(alert, CASES[alert]), sort_keys=False))
    result = run(PROMTOOL, "test", "rules", str(path))
    assert result.returncode == 0, f"{path}:\n{result.stdout}{result.stderr}"
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    # the harness can fail: a silent case that is expected to fire must not pass
    [silent, *_] = [c for c in CASES["OrchestraceAgentCrashed"] if not c.fires]
    wrong = Case(silent.name, silent.series, silent.at, [{"orchestrace_agent_role": "helper"}])
    path = tmp_path / "wrong.test.yml"
    path.write_text(yaml.safe_dump(promtool_tests("OrchestraceAgentCrashed", [wrong])))
    assert PROMTOOL is not None
    result = run(PROMTOOL, "test", "rules", str(path))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


# --- tests: Alertmanager ----------------------------------------------------------------------
def _alertmanager_config() -> dict[str, Any]:
    return dict(yaml.safe_load(ALERTMANAGER.read_text()))


def test_one_receiver_to_replace() -> None:
    config = _alertmanager_config()
    [receiver] = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert "routes" not in config["route"]  # everything goes to the one receiver
    [webhook] = receiver["webhook_configs"]
    assert webhook["url"].startswith("http")
    assert ".invalid" in webhook["url"]  # a placeholder that can never reach anyone


@needs_amtool
def test_amtool_check_config(tmp_path: Path) -> None:
    assert AMTOOL is not None
    result = run(AMTOOL, "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # and it does reject a broken config: a route to a receiver that does not exist
    broken = _alertmanager_config()
    broken["route"]["receiver"] = "nobody"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(broken))
    assert run(AMTOOL, "check-config", str(path)).returncode != 0


@needs_amtool
@pytest.mark.parametrize("alert", sorted(alerts()))
def test_every_alert_reaches_the_receiver(alert: str) -> None:
    assert AMTOOL is not None
    [receiver] = _alertmanager_config()["receivers"]
    severity = alerts()[alert]["labels"]["severity"]
    result = run(
        AMTOOL,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        f"alertname={alert}",
        f"job={JOB}",
        f"severity={severity}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver["name"]]


def _iter_annotations() -> Iterator[tuple[str, str, str]]:
    for name, rule in alerts().items():
        for key, text in (rule.get("annotations") or {}).items():
            yield name, key, text


def test_annotation_templates_use_only_the_alert_s_labels() -> None:
    # a template naming a label the alert does not carry renders as "<no value>"
    for name, key, text in _iter_annotations():
        expr = alerts()[name]["expr"]
        grouping = re.findall(r"\bby \(([^)]*)\)", expr)
        carried = {label.strip() for group in grouping for label in group.split(",")}
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert label in carried, f"{name} {key}: {label} is not a label of the alert"


def test_the_readme_lists_every_alert_with_its_threshold() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(Orchestrace\w+)` \|.*\| (`(\w+)`|—) \|$", readme, re.MULTILINE)
    assert {name for name, _, _ in rows} == set(alerts())
    for name, _, threshold in rows:
        used = set(re.findall(r"orchestrace:threshold:(\w+)", alerts()[name]["expr"]))
        assert used == ({threshold} if threshold else set()), name
