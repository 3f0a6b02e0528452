"""The benchmark's profile section runs and reports: ``python -m bench --only profile``.

As in test_bench, only correctness is asserted (the command exits 0, the text and --json
reports show every agent, --json lists every span of the generated file) — never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "bench-profile.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--only", "profile", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Correctness: all counts match, nothing dropped" in done.stdout
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data, done.stdout


def test_the_profile_section_times_text_and_json(results: tuple[dict[str, Any], str]) -> None:
    data, _ = results
    assert data["problems"] == []
    assert isinstance(data["findings"], list)
    text, as_json = data["profile"]
    assert (text["output"], as_json["output"]) == ("text", "json")
    for p in (text, as_json):
        assert p["exit_code"] == 0
        assert p["spans"] >= 5_000
        assert p["seconds"] > 0
        assert p["peak_rss_mb"] > 0
        assert p["output_mb"] > 0
        assert p["file_mb"] > 0
    assert as_json["spans_reported"] == as_json["spans"]
    assert text["spans_reported"] is None
    assert text["agents_reported"] == as_json["agents_reported"] > 10


def test_the_table_shows_the_profile_section(results: tuple[dict[str, Any], str]) -> None:
    data, stdout = results
    assert "5. Profile — `orchestrace profile FILE`" in stdout
    lines = [line.split() for line in stdout.splitlines()]
    rows = {row[0]: row for row in lines if row and row[0] in ("text", "json")}
    assert set(rows) == {"text", "json"}
    assert rows["json"][-1] == f"{data['profile'][1]['spans']:,}"


def test_profile_is_a_section_to_pick() -> None:
    sys.path.insert(0, str(REPO))
    try:
        from bench.__main__ import SECTIONS
        from bench.report import MAX_PROFILE_S
    finally:
        sys.path.remove(str(REPO))
    assert "profile" in SECTIONS
    assert MAX_PROFILE_S == 10.0
