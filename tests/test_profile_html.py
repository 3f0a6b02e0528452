"""`orchestrace profile --html`: one self-contained page, checked as text and in a browser.

The page is opened in headless Chromium (Debian's ``chromium``; the browser tests skip
without it): ``--dump-dom`` gives the DOM after the page's script ran, and
``--enable-logging=stderr`` its console (every console message and uncaught error is a
``:CONSOLE`` line there). The script itself records any error in ``<body data-errors>`` and
sets ``data-ready`` when it has drawn everything.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_profile import EPOCH, S, Spans, run_on_fake_time

from runtime.cli import main
from telemetry import profile_html
from telemetry import semconv as sc
from telemetry.profile import Profile, build_profile
from telemetry.profile_html import render_html, report_data, write_html
from telemetry.records import from_readable_span

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium): the report is checked in it",
)

#: A span name, agent name and attribute values that would be markup if pasted into HTML.
HOSTILE_SPAN = "</script><img src=x onerror=alert(1)>"
HOSTILE_AGENT = '"><svg onload=alert(2)>'
HOSTILE_MODEL = "<!--<script>alert(3)</script>"
HOSTILE_WORKFLOW = "<b>run</b> & 'co'"


# --- the profiles drawn -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs() -> dict[str, Profile]:
    return {
        scenario: build_profile(
            from_readable_span(s) for s in run_on_fake_time(scenario, EPOCH + i * 60 * S)
        )
        for i, scenario in enumerate(["spawn", "team"])
    }


def hostile_profile() -> Profile:
    b = Spans()
    root = b.span(
        "invoke_workflow x",
        0,
        4,
        None,
        {sc.GEN_AI_OPERATION_NAME: sc.OP_WORKFLOW, sc.GEN_AI_WORKFLOW_NAME: HOSTILE_WORKFLOW},
    )
    lead, evil = b.agent("lead", root, 0, 4), b.agent(HOSTILE_AGENT, root, 0, 3)
    b.span(
        HOSTILE_SPAN,
        0,
        1,
        evil,
        {
            sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
            sc.GEN_AI_AGENT_NAME: HOSTILE_AGENT,
            sc.GEN_AI_REQUEST_MODEL: HOSTILE_MODEL,
        },
    )
    send = b.send(evil, "lead", 1, 2, "m</script>1")
    b.wait(lead, 0, 2.5)
    b.receive(lead, 2.5, send)
    b.chat(lead, 2.5, 4)
    return build_profile(b.records)


# --- the page as text -------------------------------------------------------------------------
def embedded(page: str) -> Any:
    (data,) = re.findall(r'<script type="application/json" id="profile-data">(.*?)</script>', page)
    return json.loads(data)


def test_the_report_is_one_file_that_loads_nothing(runs: dict[str, Profile]) -> None:
    page = render_html(runs["spawn"])
    assert page.startswith("<!DOCTYPE html>")
    # nothing to fetch: no src/href, no url() but the page's own markers, no @import
    assert not re.search(r"\s(src|href|action|srcset)\s*=", page)
    assert "@import" not in page
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#cross", "#head"}
    assert set(re.findall(r"https?://[^\s\"')]+", page)) == {"http://www.w3.org/2000/svg"}
    # the policy allows this page's script and style, by hash, and no source at all else
    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert "default-src 'none'" in policy
    assert f"script-src {csp_hash(script)};" in policy
    assert f"style-src {csp_hash(style)};" in policy
    # the data is the profile, drawn spans only
    data = embedded(page)
    assert data == json.loads(json.dumps(report_data(runs["spawn"])))
    assert len(data["bars"]) == sum(1 for b in runs["spawn"].bars if b.category != "runtime")
    assert "sequenceDiagram" in page  # the Mermaid text, for copy-paste


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_hostile_names_stay_text() -> None:
    profile = hostile_profile()
    page = render_html(profile)
    assert page.count("</script>") == 2  # the two script elements' own end tags
    for markup in ("<img", "<svg onload", "<!--<script", "<b>run"):
        assert markup not in page
    assert "<title>Profile of run &lt;b&gt;run&lt;/b&gt; &amp; &#x27;co&#x27; · orchestrace" in page
    data = embedded(page)
    names = {b["name"] for b in data["bars"]}
    assert HOSTILE_SPAN in names
    assert {a["agent"] for a in data["agents"]} == {"lead", HOSTILE_AGENT}
    (chat,) = [b for b in data["bars"] if b["name"] == HOSTILE_SPAN]
    assert chat["attributes"][sc.GEN_AI_REQUEST_MODEL] == HOSTILE_MODEL


def test_a_large_run_draws_the_critical_path_and_the_longest_spans(
    runs: dict[str, Profile], monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = runs["spawn"]
    every = [s for s in profile.to_json()["spans"] if s["category"] != "runtime"]
    monkeypatch.setattr(profile_html, "MAX_BARS", 20)
    data = report_data(profile)
    kept = data["bars"]
    assert (len(kept), data["bars_total"]) == (20, len(every))
    assert [s for s in every if s in kept] == kept  # in time order still
    assert all(s in kept for s in every if s["on_critical_path"])
    shortest = min(s["seconds"] for s in kept if not s["on_critical_path"])
    assert all(s["seconds"] <= shortest for s in every if s not in kept)


def test_non_finite_numbers_do_not_break_the_data() -> None:
    b = Spans()
    root = b.workflow(0, 1)
    agent = b.agent("a", root, 0, 1)
    b.span(
        "chat m",
        0,
        1,
        agent,
        {
            sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
            sc.GEN_AI_AGENT_NAME: "a",
            sc.GEN_AI_USAGE_INPUT_TOKENS: float("nan"),
        },
    )
    data = embedded(render_html(build_profile(b.records)))
    assert data["bars"][0]["attributes"][sc.GEN_AI_USAGE_INPUT_TOKENS] == "nan"


# --- the command ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spans_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from telemetry.otlp_json import encode_spans_json

    path = tmp_path_factory.mktemp("report") / "spans.jsonl"
    path.write_text(encode_spans_json(run_on_fake_time("spawn", EPOCH)) + "\n")
    return path


def profile_cmd(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["profile", *argv], out=out), out.getvalue()


def test_html_with_the_text_report(
    spans_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    code, out = profile_cmd(str(spans_file), "--html", str(report))
    assert code == 0
    assert out.startswith("Profile of run spawn")
    assert out.endswith(f"\nreport: {report}\n")
    assert report.read_text(encoding="utf-8") == render_html(build_profile(_records(spans_file)))
    assert capsys.readouterr().err == ""


def test_html_with_json_keeps_stdout_json(
    spans_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    code, out = profile_cmd(str(spans_file), "--json", "--html", str(report))
    assert code == 0
    assert json.loads(out)["workflow"] == "spawn"
    assert capsys.readouterr().err == f"report: {report}\n"
    assert report.is_file()


@pytest.mark.parametrize("where", ["missing/dir/report.html", "."])
def test_an_unwritable_report_is_one_line_and_exit_2(
    spans_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    code, out = profile_cmd(str(spans_file), "--html", str(tmp_path / where))
    assert code == 2
    assert out == ""  # nothing printed before the error
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"orchestrace profile: cannot write {tmp_path / where}: ")


def _records(path: Path) -> list[Any]:
    from telemetry.otlp_json import iter_spans_file

    return list(iter_spans_file(path))


# --- in a browser -----------------------------------------------------------------------------
@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


@dataclass
class Page:
    """The DOM Chromium dumped after the page's script ran, and its console lines."""

    elements: list[Element]
    console: list[str]
    body: dict[str, str] = field(default_factory=dict)

    def having(self, cls: str, tag: str | None = None) -> list[Element]:
        return [e for e in self.elements if cls in e.classes and tag in (None, e.tag)]

    def by_id(self, id_: str) -> Element:
        (found,) = [e for e in self.elements if e.attrs.get("id") == id_]
        return found


class _Collector(HTMLParser):
    """Every element with its attributes and the text directly inside it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in {"meta", "br", "img", "input", "link"}:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.open:
            self.open[-1].text += data


def chromium(*args: str, profile_dir: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,  # a hang detector only
        check=False,
    )


def open_page(path: Path, tmp_path: Path) -> Page:
    result = chromium("--dump-dom", path.resolve().as_uri(), profile_dir=tmp_path / "chromium")
    assert result.returncode == 0, result.stderr[-2000:]
    collector = _Collector()
    collector.feed(result.stdout)
    collector.close()
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    (body,) = [e for e in collector.elements if e.tag == "body"]
    return Page(collector.elements, console, body.attrs)


@pytest.fixture
def opened(tmp_path: Path) -> Any:
    def open_profile(profile: Profile) -> Page:
        path = tmp_path / "report.html"
        write_html(profile, path)
        return open_page(path, tmp_path)

    return open_profile


def check_drawn(page: Page, profile: Profile) -> None:
    """Everything drew without an error: one bar per span shown, the path marked."""
    assert page.console == []
    assert page.body.get("data-errors") == ""
    assert page.body.get("data-ready") == "1"
    shown = [b for b in profile.bars if b.category != "runtime"]
    bars = page.having("bar", "rect")
    assert sorted(b.attrs["data-span-id"] for b in bars) == sorted(b.span_id for b in shown)
    on_path = {s.span_id for s in profile.critical_path} & {b.span_id for b in shown}
    marked = [b for b in bars if "on-path" in b.classes]
    assert len(marked) == len(on_path)
    assert {b.attrs["data-span-id"] for b in marked} == on_path
    assert len(page.having("path-seg", "rect")) == len(profile.critical_path)
    rows = [e.attrs["data-agent"] for e in page.having("row", "g")]
    assert rows[: len(profile.agents)] == [a.agent for a in profile.agents]
    assert len(page.having("step", "g")) == len(profile.events)


@needs_chromium
@pytest.mark.parametrize("scenario", ["spawn", "team"])
def test_the_report_draws_in_chromium(runs: dict[str, Profile], opened: Any, scenario: str) -> None:
    profile = runs[scenario]
    page = opened(profile)
    check_drawn(page, profile)
    tips = {b.attrs["data-span-id"]: b.attrs["data-tip"] for b in page.having("bar", "rect")}
    if scenario == "spawn":
        sleep = next(
            b for b in profile.bars if b.name == "execute_tool sleep" and b.agent == "helper3"
        )
        assert tips[sleep.span_id].splitlines() == [
            "execute_tool sleep",
            "helper3 · 3.000s · from 0.500s · tool",
            "gen_ai.tool.name: sleep",
            "on the critical path",
        ]
        hops = [e for e in page.elements if e.tag == "td" and e.text.startswith("woken by")]
        assert [e.text for e in hops] == ["woken by msg-3 from helper3"]
    names = {e.attrs["data-agent"] for e in page.having("participant-col", "g")}
    assert names == {a.agent for a in profile.agents}
    # the profile's cost (per agent, priced from the shipped table) is drawn
    assert page.by_id("cost-section").attrs.get("hidden") is None
    cells = {e.text for e in page.elements if e.tag == "td"}
    assert {a.agent for a in profile.agents} <= cells


@needs_chromium
def test_hostile_names_stay_text_in_chromium(opened: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # With a cost entry as telemetry/cost.py may add it, hostile text in it included.
    to_json = Profile.to_json

    def with_cost(self: Profile) -> dict[str, Any]:
        data = to_json(self)
        data["cost"] = {
            "total_usd": 0.0123,
            "by_agent": [{"agent": HOSTILE_AGENT, "usd": 0.01}, {"agent": "lead", "usd": 0.0023}],
        }
        return data

    monkeypatch.setattr(Profile, "to_json", with_cost)
    profile = hostile_profile()
    page = opened(profile)
    check_drawn(page, profile)
    assert not [e for e in page.elements if e.tag == "img"]
    assert not [e for e in page.elements if any(k.startswith("on") for k in e.attrs)]
    (bar,) = [b for b in page.having("bar", "rect") if b.attrs["data-tip"].startswith("</")]
    assert bar.attrs["data-tip"].splitlines()[0] == HOSTILE_SPAN
    assert f"{sc.GEN_AI_REQUEST_MODEL}: {HOSTILE_MODEL}" in bar.attrs["data-tip"]
    assert HOSTILE_AGENT in [e.attrs["data-agent"] for e in page.having("row", "g")]
    assert page.by_id("cost-section").attrs.get("hidden") is None
    cells = [e.text for e in page.elements if e.tag == "td"]
    assert HOSTILE_AGENT in cells
    assert "0.0123" in cells


@needs_chromium
def test_a_screenshot_of_the_report(runs: dict[str, Profile], tmp_path: Path) -> None:
    report, shot = tmp_path / "report.html", tmp_path / "report.png"
    write_html(runs["spawn"], report)
    result = chromium(
        "--hide-scrollbars",
        "--window-size=1200,900",
        f"--screenshot={shot}",
        report.resolve().as_uri(),
        profile_dir=tmp_path / "chromium",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if ":CONSOLE" in line] == []
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 20_000  # drawn, not a blank page
