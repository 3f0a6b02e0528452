"""The README's "Build your own" example, verbatim: run by the command, by `python file.py`,
summarised from its spans file, and tested by the README's own offline test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry.otlp_json import iter_spans_file
from telemetry.records import SpanRecord

README = Path(__file__).resolve().parents[1] / "README.md"
TASK = "What are span links?"
ANSWER = "Span links tie a span to the one that caused it, across agents."


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else None]
    return re.findall(r"^```python\n(.*?)^```$", body, re.S | re.M)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding the README's example as research.py."""
    (tmp_path / "research.py").write_text(_python_blocks("Build your own")[0], encoding="utf-8")
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
    env["OTEL_TRACES_EXPORTER"] = "none"
    env["OTEL_METRICS_EXPORTER"] = "none"
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, check=False, timeout=300
    )


def _one_run(spans: list[SpanRecord]) -> list[SpanRecord]:
    (trace_id,) = {s.trace_id for s in spans}
    assert trace_id
    return spans


def _check_trace(spans: list[SpanRecord]) -> None:
    names = {s.name for s in spans}
    assert {
        "invoke_workflow research",
        "invoke_agent planner",
        "invoke_agent researcher",
        "execute_tool lookup",
        "send researcher",
        "send planner",
        "receive planner",
        "receive researcher",
    } <= names
    by_id = {s.span_id: s for s in spans}
    receives = [s for s in spans if s.name.startswith("receive ")]
    for receive in receives:
        assert receive.links
        for link in receive.links:
            target = by_id[link.span_id]
            assert target.kind == "PRODUCER"
            assert target.name == receive.name.replace("receive", "send", 1)


def test_the_readme_example_is_short() -> None:
    assert len(_python_blocks("Build your own")[0].splitlines()) < 25


def test_orchestrace_run_file(project: Path) -> None:
    cli = [sys.executable, "-m", "runtime.cli"]
    proc = _run([*cli, "run", "research.py", "--task", TASK, "--time-scale", "0"], project)
    assert proc.returncode == 0, proc.stderr
    assert f"[lead final answer]\n{ANSWER}\n" in proc.stdout
    assert "  [researcher] lookup({'topic': 'span links'}) → A span link ties" in proc.stdout
    _check_trace(_one_run(list(iter_spans_file(project / "orchestrace-spans.jsonl"))))

    summary = _run([*cli, "summary", "orchestrace-spans.jsonl"], project)
    assert summary.returncode == 0, summary.stderr
    assert "Run research · trace " in summary.stdout
    assert "  planner: 1×send_message, 1×wait_for_message" in summary.stdout
    assert "  researcher: 1×wait_for_message, 1×lookup, 1×send_message" in summary.stdout
    rows = {line.split()[0]: line.split()[1:4] for line in summary.stdout.splitlines() if line}
    assert rows["planner"] == ["lead", "done", "end_turn"]
    assert rows["researcher"] == ["member", "done", "end_turn"]


def test_python_file(project: Path) -> None:
    proc = _run([sys.executable, "research.py"], project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ANSWER + "\n"  # the library itself prints nothing
    assert proc.stderr == ""
    _check_trace(_one_run(list(iter_spans_file(project / "orchestrace-spans.jsonl"))))


def test_the_readmes_offline_test_passes(project: Path) -> None:
    (test_code,) = [b for b in _python_blocks("Build your own") if "def test_" in b]
    assert "orchestrace.override" in test_code
    (project / "test_research.py").write_text(test_code, encoding="utf-8")
    proc = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_research.py"],
        project,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
