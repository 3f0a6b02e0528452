"""The fast paths of `orchestrace profile` give what the plain ones give.

A big spans file is read by `telemetry.scan.scan_span_tree` (only the attributes the profile
reads, in parallel processes), analysed with one index pass, rendered with a sweep per
agent and written as JSON row by row (half of a long list by a forked copy). Each is checked
here against the general reader, `json.dump` and the straightforward algorithms they
replaced (kept below as references), on the recorded runs, a generated many-agent file and
hypothesis-made inputs.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_profile import EPOCH, T0, Recorded, S, Spans, run_on_fake_time
from test_summary_scan import _respell

import telemetry.profile as profile_module
from telemetry.otlp_json import encode_spans_json, iter_spans_file
from telemetry.profile import (
    LINK_KEYS,
    PROFILE_KEYS,
    AgentTimeline,
    Profile,
    _span_of,
    _Trace,
    build_profile,
    profile_file,
)
from telemetry.profile_render import _BAR, _bar, render_mermaid, render_text
from telemetry.records import SpanRecord
from telemetry.scan import scan_span_tree

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """The spawn and team runs on fake time, and a spans file holding both (as in
    test_profile)."""
    spans = {
        "spawn": run_on_fake_time("spawn", EPOCH),
        "team": run_on_fake_time("team", EPOCH + 60 * S),  # the later run
    }
    path = tmp_path_factory.mktemp("fast") / "spans.jsonl"
    path.write_text("".join(encode_spans_json(s) + "\n" for s in spans.values()))
    return Recorded(spans, path)


# --- the reader -----------------------------------------------------------------------------
def _restricted(record: SpanRecord) -> tuple[Any, ...]:
    """What the fast reader keeps of a full record."""
    return (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.name,
        record.kind,
        record.start_ns,
        record.end_ns,
        record.status,
        {k: v for k, v in record.attributes.items() if k in PROFILE_KEYS},
        [
            (
                link.trace_id,
                link.span_id,
                {k: v for k, v in link.attributes.items() if k in LINK_KEYS},
            )
            for link in record.links
        ],
    )


def _respelled(path: Path, folder: Path) -> Path:
    """The same spans in the other OTLP/JSON spellings, blank lines and other signals."""
    other = folder / "respelled.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    with other.open("w", encoding="utf-8") as out:
        for n, line in enumerate(lines):
            out.write(json.dumps(_respell(json.loads(line)) if n % 2 else json.loads(line)))
            out.write("\n\n" if n % 3 else '\n{"resourceMetrics": []}\n')
    return other


def test_the_tree_scan_reads_what_the_general_reader_reads(
    recorded: Recorded, tmp_path: Path
) -> None:
    for path in (recorded.path, _respelled(recorded.path, tmp_path)):
        for trace_id in (None, recorded.trace_id("spawn"), recorded.trace_id("team")):
            general = [
                _restricted(r)
                for r in iter_spans_file(path)
                if trace_id is None or r.trace_id == trace_id
            ]
            fast = [
                (
                    f.trace_id,
                    f.span_id,
                    f.parent_span_id,
                    f.name,
                    f.kind,
                    f.start_ns,
                    f.end_ns,
                    f.status,
                    dict(f.attributes),
                    [(k.trace_id, k.span_id, dict(k.attributes)) for k in f.links],
                )
                for f in scan_span_tree(path, PROFILE_KEYS, LINK_KEYS, trace_id=trace_id)
            ]
            assert fast == general
            assert any(f[9] for f in fast)  # links, with their attributes


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_profile_read_from_a_file_equals_one_of_the_full_records(
    recorded: Recorded, tmp_path: Path, workers: int
) -> None:
    for path in (recorded.path, _respelled(recorded.path, tmp_path)):
        for trace_id in (None, recorded.trace_id("spawn")):
            expected = build_profile(iter_spans_file(path), trace_id)
            got = profile_file(path, trace_id, workers=workers)
            assert got.to_json() == expected.to_json()
            assert render_text(got) == render_text(expected)
            assert render_mermaid(got) == render_mermaid(expected)


def test_a_malformed_line_is_named_when_read_in_parallel(
    recorded: Recorded, tmp_path: Path
) -> None:
    lines = recorded.path.read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.jsonl"
    broken = len(lines) - 2
    lines[broken] = lines[broken][:-10]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for workers in (1, 3):
        with pytest.raises(ValueError, match=rf"bad\.jsonl: line {broken + 1}: malformed"):
            profile_file(bad, workers=workers)


@pytest.fixture(scope="module")
def many_agents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated one-run file of ~6,000 spans: many agents, each with many steps."""
    import sys

    sys.path.insert(0, str(REPO))  # ``bench`` runs from the checkout
    try:
        from bench.summary_file import generate_spans_file
    finally:
        sys.path.remove(str(REPO))
    path = tmp_path_factory.mktemp("many") / "spans.jsonl"
    generate_spans_file(path, 6_000, agents=4, messages=10)
    return path


def test_a_many_agent_file_profiles_the_same_every_way(
    many_agents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = build_profile(iter_spans_file(many_agents))
    assert len(expected.agents) > 50
    monkeypatch.setattr(profile_module, "FORK_ROWS", 100)  # the forked writer too
    monkeypatch.setattr(profile_module.threading, "active_count", lambda: 1)
    text = json.dumps(expected.to_json(), indent=2, ensure_ascii=False)
    for workers in (1, 2):
        got = profile_file(many_agents, workers=workers)
        out = io.StringIO()
        got.write_json(out)
        assert out.getvalue() == text
        assert render_text(got, width=120) == render_text(expected, width=120)


# --- the JSON writer ------------------------------------------------------------------------
def _written(profile: Profile) -> str:
    out = io.StringIO()
    profile.write_json(out)
    return out.getvalue()


def test_write_json_writes_what_json_dump_writes(recorded: Recorded) -> None:
    for scenario in ("spawn", "team"):
        profile = recorded.profile(scenario)
        assert _written(profile) == json.dumps(profile.to_json(), indent=2, ensure_ascii=False)


_TEXT = st.text(
    st.characters(codec="utf-8") | st.sampled_from('"\\\n\t\x00\x1f\x7f\u2028é漢😀'), max_size=8
)
_SCALAR = (
    _TEXT
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
)
_VALUE = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)


@st.composite
def hostile_runs(draw: st.DrawFn) -> list[SpanRecord]:
    """A small run whose names and shown attributes are any text and values."""
    b = Spans()
    root = b.workflow(0, 10)
    lead = b.agent(draw(_TEXT), root, 0, 10)
    helper = b.agent(draw(_TEXT), root, 0, 9)
    send = b.send(helper, draw(_TEXT), 1, 2, message_id=draw(_TEXT))
    b.wait(lead, 0, 3)
    b.receive(lead, 3, send)
    chat = b.chat(lead, 3, 4 + draw(st.integers(0, 5)) / 7)
    shown = draw(st.dictionaries(st.sampled_from(profile_module.BAR_KEYS), _VALUE, max_size=4))
    b.records[b.records.index(chat)] = replace(chat, attributes={**chat.attributes, **shown})
    return b.records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_runs())
def test_write_json_spells_any_value_as_json_dump(spans: list[SpanRecord]) -> None:
    profile = build_profile(spans)
    assert _written(profile) == json.dumps(profile.to_json(), indent=2, ensure_ascii=False)


def test_the_forked_writer_writes_the_same(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = recorded.profile("team")
    expected = json.dumps(profile.to_json(), indent=2, ensure_ascii=False)
    monkeypatch.setattr(profile_module, "FORK_ROWS", 2)
    forks = []
    fork = profile_module.os.fork

    def counted() -> int:
        pid = fork()
        forks.append(pid)
        return pid

    monkeypatch.setattr(profile_module.os, "fork", counted)
    # This test process runs metric threads that the command does not (so it would not
    # fork); the copy only makes text and leaves, so fork all the same.
    monkeypatch.setattr(profile_module.threading, "active_count", lambda: 1)
    assert _written(profile) == expected
    assert len(forks) == 2  # the events and the spans


# --- the timeline bars ----------------------------------------------------------------------
def _bar_reference(agent: AgentTimeline, profile: Profile, width: int, which: int) -> str:
    """The bar as it was first written: every column looks at every step begun before it."""
    wall = profile.wall_ns or 1
    cells: list[str] = []
    for column in range(width):
        lo = profile.start_ns + wall * column // width
        hi = profile.start_ns + wall * (column + 1) // width
        if hi <= agent.start_ns or lo >= agent.end_ns:
            cells.append(" ")
            continue
        filled: dict[str, int] = {}
        for start, end, cat in agent.steps:
            if start >= hi:
                break
            overlap = min(end, hi) - max(start, lo)
            if overlap > 0:
                filled[cat] = filled.get(cat, 0) + overlap
        inside = min(hi, agent.end_ns) - max(lo, agent.start_ns)
        other = inside - sum(filled.values())
        best = max(filled.items(), key=lambda kv: kv[1], default=("other", 0))
        cells.append(_BAR[best[0] if best[1] >= other else "other"][which])
    return "".join(cells)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(-5, 60),
            st.integers(0, 30),
            st.sampled_from(["model", "queued", "tool", "messaging", "waiting"]),
        ),
        max_size=25,
    ),
    span=st.tuples(st.integers(-5, 60), st.integers(0, 70)),
    wall=st.integers(0, 60),
    width=st.integers(1, 40),
)
def test_the_bar_sweep_equals_the_column_by_column_bar(
    steps: list[tuple[int, int, str]], span: tuple[int, int], wall: int, width: int
) -> None:
    start, length = span
    agent = AgentTimeline("a", "", start, start + length, "done")
    agent.steps = sorted((s, s + d, cat) for s, d, cat in steps)  # overlapping, as queued do
    profile = Profile("t", "w", 0, wall, "", [agent], [], {}, {}, [])
    for which in (0, 1):
        assert _bar(agent, profile, width, which) == _bar_reference(agent, profile, width, which)


# --- cutting parent loops -------------------------------------------------------------------
def _acyclic_parents_reference(by_id: Mapping[str, SpanRecord]) -> dict[str, str]:
    """Loops cut as they first were: a walk up from every span with a parent, in order."""
    parents = {
        s.span_id: s.parent_span_id
        for s in by_id.values()
        if s.parent_span_id is not None and s.parent_span_id in by_id
    }
    settled: set[str] = set()
    for start in list(parents):
        chain: list[str] = []
        on_chain: set[str] = set()
        node: str | None = start
        while node is not None and node not in settled:
            if node in on_chain:
                del parents[chain[-1]]
                break
            chain.append(node)
            on_chain.add(node)
            node = parents.get(node)
        settled.update(chain)
    return parents


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(-1, 12), min_size=1, max_size=14))
def test_loops_are_cut_where_the_walk_in_read_order_cuts_them(parents: Sequence[int]) -> None:
    """Span i's parent is span parents[i] (-1: none; past the end: not in the trace)."""
    records = {
        f"{i:016x}": SpanRecord(
            "ab" * 16,
            f"{i:016x}",
            None if p < 0 else f"{p:016x}",
            f"s{i}",
            "INTERNAL",
            T0 + i * S,
            T0 + (i + 1) * S,
            "UNSET",
            "",
            {},
            (),
            (),
            {},
        )
        for i, p in enumerate(parents)
    }
    expected = _acyclic_parents_reference(records)
    trace = _Trace({k: _span_of(r) for k, r in records.items()})
    got = {
        span_id: parent.span_id
        for span_id, span in trace.by_id.items()
        if (parent := trace.parent(span)) is not None
    }
    assert got == expected
    children = {p: sorted(k.span_id for k in kids) for p, kids in trace.children.items() if kids}
    by_parent = {
        p: sorted(c for c, q in expected.items() if q == p) for p in set(expected.values())
    }
    assert children == by_parent


def test_every_attribute_the_profile_reads_is_a_profile_key(recorded: Recorded) -> None:
    """The file reader decodes only PROFILE_KEYS and LINK_KEYS: the profile must be the same
    from records holding nothing else."""
    for scenario in ("spawn", "team"):
        records = recorded.records(scenario)
        lean = [
            replace(
                r,
                attributes={k: v for k, v in r.attributes.items() if k in PROFILE_KEYS},
                links=tuple(
                    replace(
                        link,
                        attributes={k: v for k, v in link.attributes.items() if k in LINK_KEYS},
                    )
                    for link in r.links
                ),
                events=(),
                resource={},
            )
            for r in records
        ]
        assert build_profile(lean).to_json() == build_profile(records).to_json()
        assert render_text(build_profile(lean)) == render_text(build_profile(records))


def test_json_floats_are_the_json_modules() -> None:
    """Row floats are written with float.__repr__, as json.dumps writes them."""
    for x in (0.0, 1e-06, 7.9e-05, 1e16, 0.1 + 0.2, 123456.789012, -0.0):
        assert profile_module._json_scalar(x) == json.dumps(x)
    assert profile_module._json_scalar(math.inf) == json.dumps(math.inf)
