"""One parser for every OTEL_* and ORCHESTRACE_* variable: a bad value is exit 2 naming the
variable and what it accepts (``ConfigurationError`` from ``orchestrace.run``), or a
warning and the documented default — never a traceback, never an empty spans file."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path

import pytest

import orchestrace
import runtime.process  # noqa: F401  (registers its settings in the table)
from orchestrace import Agent, ConfigurationError, Team
from runtime.cli import main
from runtime.scripted import Reply
from telemetry import settings
from telemetry.summary_file import summarize_file

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command_process_state: None) -> Path:
    monkeypatch.chdir(tmp_path)
    settings._warned.clear()  # each test sees its own warnings
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        ["run", "spawn", "--quiet", "--time-scale", "0", "--latency", "0"], out=io.StringIO()
    )
    return code, capsys.readouterr().err


_URL = "a URL such as http://localhost:4317 (a host, a port from 0 to 65535, no spaces)"


@pytest.mark.parametrize(
    ("env", "accepts"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "one of grpc, http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, "one of grpc, http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "nan"}, "a number of seconds > 0"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-5"}, "a number of seconds > 0"),
        ({"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "inf"}, "a number of seconds > 0"),
        ({"OTEL_EXPORTER_PROMETHEUS_PORT": "٣"}, "a whole number >= 0 and <= 65535"),
        ({"OTEL_EXPORTER_PROMETHEUS_PORT": "99999"}, "a whole number >= 0 and <= 65535"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"}, _URL),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"}, _URL),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:99999"}, _URL),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://"}, _URL),
    ],
    ids=lambda v: "-".join(f"{k}={val}" for k, val in v.items()) if isinstance(v, dict) else "",
)
def test_a_refused_value_is_one_line_exit_2_and_no_spans_file(
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    accepts: str,
) -> None:
    (name, value), *_ = env.items()
    monkeypatch.setenv(name, value)
    # The exporter must be asked for, or the setting is never used.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus" if "PROMETHEUS" in name else "none")
    code, err = _run(capsys)
    assert code == 2
    assert err == f"orchestrace run: {name}={value!r}: expected {accepts}\n"
    assert not (in_tmp / "orchestrace-spans.jsonl").exists()


@pytest.mark.parametrize(
    ("name", "value", "default"),
    [
        ("OTEL_METRIC_EXPORT_INTERVAL", "0", "5000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "nan", "5000"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "٣", "65536"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "65536"),
        ("OTEL_BSP_SCHEDULE_DELAY", "inf", "500"),
        ("ORCHESTRACE_SHUTDOWN_TIMEOUT", "-1", "3"),
        ("ORCHESTRACE_CONTENT_MAX_CHARS", "lots", "2048"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe", "false"),
    ],
)
def test_a_bad_tuning_value_is_a_warning_and_the_default(
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    default: str,
) -> None:
    monkeypatch.setenv(name, value)
    if name == "OTEL_METRIC_EXPORT_INTERVAL":
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    code, err = _run(capsys)
    assert code == 0
    assert "Traceback" not in err
    assert f"{name}={value!r}: expected " in err.encode().decode("unicode_escape")
    assert f"using the default, {default}" in err
    assert "lead" in summarize_file(in_tmp / "orchestrace-spans.jsonl")


def test_a_queue_smaller_than_the_batch_lowers_the_batch(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1000")
    code, err = _run(capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert "lead" in summarize_file(in_tmp / "orchestrace-spans.jsonl")


def test_a_prometheus_port_in_use_is_exit_2_naming_the_setting(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
        code, err = _run(capsys)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "set OTEL_EXPORTER_PROMETHEUS_PORT to a free port" in err
    assert not (in_tmp / "orchestrace-spans.jsonl").exists()


def test_the_library_raises_configuration_error_naming_the_setting(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    team = Team("t", [Agent("lead", "x", task="hi", script=[Reply.say("done")])])
    with pytest.raises(ConfigurationError, match=r"^OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        orchestrace.run_sync(team, offline=True)
    assert not (in_tmp / "orchestrace-spans.jsonl").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "١٠", "1e999", "0x10", "soon"])
def test_every_numeric_setting_refuses_or_defaults_what_is_not_a_finite_ascii_number(
    value: str,
) -> None:
    numeric = [s for s in settings.SETTINGS.values() if isinstance(s.default, float)]
    assert len(numeric) > 10
    for setting in numeric:
        environ = {setting.name: value}
        if setting.on_bad is settings.OnBad.EXIT:
            with pytest.raises(settings.SettingError, match=rf"^{setting.name}="):
                setting.get(environ)
        else:
            assert setting.get(environ) == setting.default, setting.name
        assert setting.get({setting.name: " "}) == setting.default


def test_the_readmes_table_is_the_settings_table() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- settings-table -->\n(.*?)<!-- /settings-table -->", text, re.S)
    assert match is not None
    assert match.group(1) == settings.table()


def test_every_variable_the_code_reads_is_in_the_table() -> None:
    root = README.parent
    read = set()
    for path in [*root.glob("runtime/*.py"), *root.glob("telemetry/*.py")]:
        read |= set(re.findall(r"\b((?:OTEL|ORCHESTRACE)_[A-Z_]+[A-Z])\b", path.read_text()))
    # Prefix patterns and names built from parts, not variables themselves.
    read -= {"OTEL_EXPORTER_OTLP", "ORCHESTRACE_SMOKE"}
    known = set(settings.SETTINGS) | {
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    }
    assert read <= known, sorted(read - known)
