"""The fast summary reader (`telemetry.scan` + `summarize_file`) agrees with the general one.

`orchestrace summary FILE` decodes only the attributes the summary reads and, on big files,
reads parts of the file in parallel processes. Whatever the path, the text must be the one
the general reader (`iter_spans_file` → `summarize`) gives, for every OTLP/JSON spelling the
general reader accepts, for any split of the file, and for any trace chosen in it.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.cli import main
from telemetry.otlp_json import iter_spans_file
from telemetry.scan import split_lines
from telemetry.summary import summarize
from telemetry.summary_file import summarize_file


def _run(path: Path, scenario: str) -> str:
    out = io.StringIO()
    code = main([
        "run", scenario, "--time-scale", "0", "--latency", "0", "--quiet",
        "--spans-file", str(path),
    ], out=out)  # fmt: skip
    assert code == 0
    match = re.search(r"trace id: ([0-9a-f]{32})", out.getvalue())
    assert match is not None
    return match.group(1)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A spans file holding a spawn run and then a team run (two traces), 7 spans a line."""
    folder = tmp_path_factory.mktemp("scan")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "7")
        trace_ids = [_run(folder / f"{name}.jsonl", name) for name in ("spawn", "team")]
    path = folder / "two.jsonl"
    path.write_bytes(b"".join((folder / f"{n}.jsonl").read_bytes() for n in ("spawn", "team")))
    assert len(path.read_bytes().splitlines()) > 6
    return path, trace_ids


def general(path: Path, trace_id: str | None = None) -> str:
    return summarize(iter_spans_file(path), trace_id)


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
@pytest.mark.parametrize("which", [None, 0, 1])
def test_any_split_gives_the_general_readers_summary(
    two_runs: tuple[Path, list[str]], workers: int, which: int | None
) -> None:
    path, trace_ids = two_runs
    trace_id = None if which is None else trace_ids[which]
    expected = general(path, trace_id)
    assert f"trace {trace_ids[1 if which is None else which]}" in expected
    assert summarize_file(path, trace_id, workers=workers) == expected


def _respell(document: dict[str, Any]) -> dict[str, Any]:
    """The same spans in the other spellings OTLP/JSON producers use."""
    for rs in document["resourceSpans"]:
        rs["instrumentationLibrarySpans"] = rs.pop("scopeSpans")
        for ss in rs["instrumentationLibrarySpans"]:
            for span in ss["spans"]:
                span["traceId"] = base64.b64encode(bytes.fromhex(span["traceId"])).decode()
                span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
                code = (span.get("status") or {}).get("code")
                if code is not None:
                    span["status"]["code"] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                              "STATUS_CODE_ERROR"][code]  # fmt: skip
                for kv in span.get("attributes") or ():
                    value = kv["value"]
                    if "intValue" in value:
                        value["intValue"] = int(value["intValue"])  # a number, not a string
                attributes = span.setdefault("attributes", [])
                attributes.append(
                    {"key": "extra", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}}
                )
                # A key the summary reads, present with an empty value, is the same as absent.
                if not any(kv["key"] == "gen_ai.tool.name" for kv in attributes):
                    attributes.append({"key": "gen_ai.tool.name", "value": {}})
    return {"result": document}  # Jaeger's wrapper


def test_every_spelling_the_general_reader_accepts(
    two_runs: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, trace_ids = two_runs
    lines = path.read_text(encoding="utf-8").splitlines()
    other = tmp_path / "respelled.jsonl"
    with other.open("w", encoding="utf-8") as out:
        for n, line in enumerate(lines):
            out.write(json.dumps(_respell(json.loads(line)) if n % 2 else json.loads(line)))
            out.write("\n\n" if n % 3 else '\n{"resourceMetrics": []}\n')
    for trace_id in (None, *trace_ids):
        expected = general(other, trace_id)
        assert expected == general(path, trace_id)  # the respelling changed nothing
        assert summarize_file(other, trace_id, workers=1) == expected
        assert summarize_file(other, trace_id, workers=3) == expected


@pytest.mark.parametrize("workers", [1, 3])
def test_a_malformed_line_is_named_whatever_the_split(
    two_runs: tuple[Path, list[str]], tmp_path: Path, workers: int
) -> None:
    path, _ = two_runs
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.jsonl"
    broken = len(lines) - 2
    lines[broken] = lines[broken][:-10]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.jsonl: line {broken + 1}: malformed"):
        summarize_file(bad, workers=workers)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    lines=st.lists(st.text(alphabet="ab\n", max_size=12), max_size=8).map("\n".join),
    parts=st.integers(1, 9),
)
def test_split_lines_covers_the_file_in_whole_lines(
    tmp_path_factory: pytest.TempPathFactory, lines: str, parts: int
) -> None:
    path = tmp_path_factory.mktemp("split") / "f"
    data = lines.encode()
    path.write_bytes(data)
    ranges = split_lines(path, parts)
    assert len(ranges) <= parts
    assert b"".join(data[a:b] for a, b in ranges) == data
    for a, _ in ranges:
        assert a == 0 or data[a - 1 : a] == b"\n"
