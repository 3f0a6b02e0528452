"""Readers of a spans file survive what breaks files in practice: a last line cut by a
killed writer (the complete lines are summarised, with a warning), the same spans twice (a
file concatenated with itself, a collector that retried: counted once, with a warning),
and a pipe instead of a file (``summary -``, ``summary /dev/stdin``)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from support import no_global_providers

import orchestrace
from orchestrace import Agent, Team
from runtime.cli import main
from runtime.scripted import Reply
from telemetry.otlp_json import iter_spans_file
from telemetry.profile import profile_file
from telemetry.records import ReadNotes
from telemetry.summary_file import summarize_file

CLI = [sys.executable, "-m", "runtime.cli"]


def _team(name: str) -> Team:
    lead = Agent(
        "lead",
        "Lead.",
        task="go",
        script=[Reply.call("sleep", seconds=0), Reply.say(f"{name} done")],
    )
    return Team(name, [lead])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A spans file with two runs (first, then second), one line per exported batch."""
    path = tmp_path_factory.mktemp("runs") / "spans.jsonl"
    trace_ids = []
    with no_global_providers():
        for name in ("first", "second"):
            result = orchestrace.run_sync(_team(name), offline=True, spans_file=path)
            trace_ids.append(result.trace_id)
    return path, trace_ids


def _command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


def _cut(source: Path, target: Path) -> tuple[Path, int]:
    """``source`` with its last line cut in half (which holds the second run's root span:
    the root ends last); the number of that line."""
    *complete, last = source.read_bytes().splitlines(keepends=True)
    target.write_bytes(b"".join(complete) + last[: len(last) // 2])
    return target, len(complete) + 1


@pytest.mark.parametrize("command", ["summary", "profile"])
def test_a_cut_last_line_gives_the_complete_lines_and_a_warning(
    two_runs: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    path, (first, _second) = two_runs
    cut, number = _cut(path, tmp_path / "cut.jsonl")
    code, out, err = _command([command, str(cut)], capsys)
    assert code == 0, err
    assert first in out  # the newest complete run is the first one
    assert err == (
        f"orchestrace {command}: warning: the last line ({number}) was cut short (was its "
        "writer killed?); read without it\n"
    )
    # the same as the file of the complete lines alone
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
    assert _command([command, str(whole)], capsys)[1] == out


def test_a_cut_line_is_still_an_error_for_a_strict_reader_and_in_the_middle(
    two_runs: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, _ = two_runs
    cut, number = _cut(path, tmp_path / "cut.jsonl")
    with pytest.raises(ValueError, match=f"line {number}: malformed"):
        summarize_file(cut)  # no notes: strict, as before
    first, *rest = path.read_bytes().splitlines(keepends=True)
    middle = tmp_path / "middle.jsonl"
    middle.write_bytes(first[: len(first) // 2] + b"\n" + b"".join(rest))
    with pytest.raises(ValueError, match="line 1: malformed"):
        summarize_file(middle, notes=ReadNotes())  # only a last line is forgiven


def test_the_parallel_readers_forgive_a_cut_last_line_too(
    two_runs: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, (first, _) = two_runs
    cut, number = _cut(path, tmp_path / "cut.jsonl")
    one, two = ReadNotes(), ReadNotes()
    assert summarize_file(cut, workers=2, notes=two) == summarize_file(cut, notes=one)
    assert one.cut_line == two.cut_line == number
    profiles = [ReadNotes(), ReadNotes()]
    a = profile_file(cut, notes=profiles[0])
    b = profile_file(cut, workers=2, notes=profiles[1])
    assert a.trace_id == b.trace_id == first
    assert [n.cut_line for n in profiles] == [number, number]


@pytest.mark.parametrize("command", ["summary", "profile"])
def test_spans_read_twice_are_counted_once_with_a_warning(
    two_runs: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    path, (_, second) = two_runs
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_bytes(path.read_bytes() * 2)
    code, out, err = _command([command, str(doubled)], capsys)
    assert code == 0, err
    _, original, original_err = _command([command, str(path)], capsys)
    assert original_err == ""
    assert out == original
    assert second in out
    (line,) = err.splitlines()
    assert line.startswith(f"orchestrace {command}: warning: ")
    spans = sum(1 for _ in iter_spans_file(path))
    assert f": {spans} span(s) appeared more than once" in line
    assert "each was counted once" in line


def test_duplicates_across_parallel_parts_are_counted_once(
    two_runs: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, (first, second) = two_runs
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_bytes(path.read_bytes() * 2)
    for trace_id in (first, second):
        one, parallel = ReadNotes(), ReadNotes()
        expected = summarize_file(path, trace_id)
        assert summarize_file(doubled, trace_id, notes=one) == expected
        assert summarize_file(doubled, trace_id, workers=2, notes=parallel) == expected
        assert one.duplicates == parallel.duplicates > 0


@pytest.mark.parametrize("command", ["summary", "profile"])
@pytest.mark.parametrize("source", ["-", "/dev/stdin"])
def test_a_pipe_can_be_read(two_runs: tuple[Path, list[str]], command: str, source: str) -> None:
    path, _ = two_runs
    expected = subprocess.run(
        [*CLI, command, str(path)], capture_output=True, check=True, timeout=300
    ).stdout
    piped = subprocess.run(
        [*CLI, command, source],
        input=path.read_bytes(),  # a pipe: not seekable, no size
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b""
    assert piped.stdout == expected
