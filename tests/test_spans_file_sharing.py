"""Two runs in one folder keep both their spans: the spans file is appended to, a whole
line at a time under a lock, never truncated by the next run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from telemetry.otlp_json import iter_spans_file

CLI = [sys.executable, "-m", "runtime.cli"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
    return env | {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}


def test_concurrent_runs_in_one_folder_keep_every_span(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [*CLI, "run", scenario, "--quiet", "--time-scale", "0", "--latency", "0"],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for scenario in ("spawn", "team", "spawn")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    created: dict[str, int] = {}
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        match = re.search(r"trace ([0-9a-f]{32}) · (\d+) spans", out)
        assert match is not None, out
        created[match.group(1)] = int(match.group(2))
    spans = list(iter_spans_file(tmp_path / "orchestrace-spans.jsonl"))
    found: dict[str, int] = {}
    for span in spans:
        found[span.trace_id] = found.get(span.trace_id, 0) + 1
    assert found == created
    assert len({s.span_id for s in spans}) == len(spans)


def test_a_later_run_does_not_truncate_an_earlier_one(tmp_path: Path) -> None:
    for _ in range(2):
        proc = subprocess.run(
            [*CLI, "run", "team", "--quiet", "--time-scale", "0", "--latency", "0"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    roots = [
        s for s in iter_spans_file(tmp_path / "orchestrace-spans.jsonl") if s.parent_span_id is None
    ]
    assert [r.name for r in roots] == ["invoke_workflow team", "invoke_workflow team"]
    # `summary` and `profile` read the newest run unless told otherwise
    summary = subprocess.run(
        [*CLI, "summary", "orchestrace-spans.jsonl"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    newest = max(roots, key=lambda r: r.start_ns)
    assert f"trace {newest.trace_id}" in summary.stdout


def test_a_spans_file_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    for target in (tmp_path, tmp_path / "missing" / "spans.jsonl"):
        proc = subprocess.run(
            [*CLI, "run", "spawn", "--quiet", "--spans-file", str(target)],
            env=_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert proc.returncode == 2
        assert proc.stderr.startswith("orchestrace run: cannot write the spans file ")
        assert len(proc.stderr.splitlines()) == 1
        assert "Traceback" not in proc.stderr
