"""The teams in examples/: each runs offline on fake time with one trace, resolvable links, a
stable span tree and the summary it should have; the Claude team also runs through the real
``AsyncAnthropic`` client against the local Messages API server; one example runs through the
command line and as ``python file.py``."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fake_messages_api import FakeMessagesAPI
from opentelemetry.sdk.trace import ReadableSpan
from support import Traced, span_tree

import orchestrace
from orchestrace import AnthropicModel, ModelRequest, RunResult, ScriptedModel, Team
from telemetry.otlp_json import iter_spans_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@functools.cache
def example(name: str) -> ModuleType:
    """``examples/{name}.py`` as a module (examples/ is not a package)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"orchestrace_example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Expected:
    """What a run of one example shows."""

    #: The user's agents (spawned instances included) and tools, as named on spans.
    agents: tuple[str, ...]
    tools: tuple[str, ...]
    #: The summary's "Tool-call summary:" block.
    tool_lines: str
    #: agent -> (role, state, reason), from the summary table.
    rows: dict[str, tuple[str, str, str]]
    #: (sender, recipient) of every message, sorted.
    messages: tuple[tuple[str, str], ...]
    #: The run's answer, from the example's own constants.
    answer: Callable[[ModuleType], str] = lambda module: str(module.ANSWER)


EXPECTED = {
    "research_team": Expected(
        agents=("planner", "researcher", "critic"),
        tools=("lookup",),
        tool_lines="""\
  critic: 2×send_message, 1×wait_for_message
  planner: 2×wait_for_message, 1×send_message
  researcher: 2×wait_for_message, 2×lookup, 2×send_message""",
        rows={
            "planner": ("lead", "done", "end_turn"),
            "researcher": ("member", "done", "end_turn"),
            "critic": ("member", "done", "end_turn"),
        },
        messages=(
            ("critic", "planner"),
            ("critic", "researcher"),
            ("planner", "researcher"),
            ("researcher", "critic"),
            ("researcher", "planner"),
        ),
    ),
    "spawn_specialists": Expected(
        agents=("editor", "researcher1", "researcher2", "writer1"),
        tools=("lookup", "word_count", "submit_draft"),
        tool_lines="""\
  editor: 3×wait_for_message, 2×create_subagents, 2×get_status, 1×kill_subagents
  researcher1: 1×lookup, 1×send_message, 1×wait_for_message
  researcher2: 1×lookup, 1×send_message, 1×wait_for_message
  writer1: 1×word_count, 1×submit_draft, 1×wait_for_message""",
        rows={
            "editor": ("lead", "done", "end_turn"),
            "researcher1": ("researcher", "killed", "killed"),
            "researcher2": ("researcher", "killed", "killed"),
            "writer1": ("writer", "killed", "killed"),
        },
        messages=(
            ("researcher1", "editor"),
            ("researcher2", "editor"),
            ("writer1", "editor"),
        ),
        answer=lambda m: (
            f"{m.BRIEF_TITLE}\n\n{m.BRIEF}\n\n"
            "(Researched by researcher1, researcher2; written by writer1.)"
        ),
    ),
    "claude_team": Expected(
        agents=("oncall", "analyst"),
        tools=("query_metrics",),
        tool_lines="""\
  analyst: 4×query_metrics, 1×wait_for_message, 1×send_message
  oncall: 1×send_message, 1×wait_for_message""",
        rows={
            "oncall": ("lead", "done", "end_turn"),
            "analyst": ("member", "done", "end_turn"),
        },
        messages=(("analyst", "oncall"), ("oncall", "analyst")),
    ),
}

NAMES = sorted(EXPECTED)


@pytest.fixture(autouse=True)
def _default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans name the model: the default one, whatever the environment says."""
    monkeypatch.delenv("ORCHESTRACE_MODEL", raising=False)


async def run_example(name: str, traced: Traced, **options: Any) -> RunResult:
    module = example(name)
    return await orchestrace.run(
        module.team,
        task=module.TASK,
        tracer_provider=traced.tracer_provider,
        meter_provider=traced.meter_provider,
        **options,
    )


# --- checks shared by every run ---------------------------------------------------------------
def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def check_trace(spans: list[ReadableSpan], team: Team, trace_id: str, expected: Expected) -> None:
    """One trace; the user's agents and tools on spans; every receive linked to its sends."""
    assert {format(s.context.trace_id, "032x") for s in spans} == {trace_id}
    names = {s.name for s in spans}
    assert f"invoke_workflow {team.name}" in names
    assert {f"invoke_agent {a}" for a in expected.agents} <= names
    assert {f"execute_tool {t}" for t in expected.tools} <= names
    assert {attrs(s)["gen_ai.agent.name"] for s in spans if s.name.startswith("invoke_agent ")} == {
        *expected.agents
    }

    by_id = {s.context.span_id: s for s in spans}
    sends = [s for s in spans if s.name.startswith("send ")]
    receives = [s for s in spans if s.name.startswith("receive ")]
    assert receives
    linked: list[int] = []
    for receive in receives:
        recipient = attrs(receive)["gen_ai.agent.name"]
        assert len(receive.links) == attrs(receive)["messaging.batch.message_count"]
        for link in receive.links:
            assert link.context.trace_id == receive.context.trace_id
            target = by_id[link.context.span_id]  # resolves to a span of this trace
            assert target.kind.name == "PRODUCER"
            assert target.name == f"send {recipient}"
            assert (link.attributes or {})["orchestrace.message.sender"] == attrs(target)[
                "gen_ai.agent.name"
            ]
            linked.append(link.context.span_id)
    # every message was delivered and read exactly once
    assert {attrs(s)["orchestrace.message.outcome"] for s in sends} == {"delivered"}
    assert sorted(linked) == sorted(s.context.span_id for s in sends)
    assert (
        tuple(
            sorted(
                (attrs(s)["gen_ai.agent.name"], attrs(s)["messaging.destination.name"])
                for s in sends
            )
        )
        == expected.messages
    )


def check_summary(text: str, expected: Expected) -> None:
    """The summary's tool-call lines, and each agent's role, state and end reason."""
    tool_lines = text.split("Tool-call summary:\n", 1)[1].split("\n\n", 1)[0]
    assert tool_lines == expected.tool_lines
    header, *lines = text.split("\n\n", 2)[2].splitlines()
    assert header.split()[:4] == ["agent", "role", "state", "reason"]
    total = next(i for i, line in enumerate(lines) if line.startswith("total "))
    rows = {line.split()[0]: tuple(line.split()[1:4]) for line in lines[:total]}
    assert rows == expected.rows


def check_result(result: RunResult, module: ModuleType, expected: Expected) -> None:
    assert result.completed
    assert result.text == expected.answer(module)
    assert {name: (str(r.state), r.reason) for name, r in result.agents.items()} == {
        name: row[1:] for name, row in expected.rows.items()
    }
    assert result.summary is not None
    check_summary(result.summary.render(), expected)


# --- every example, offline on fake time ------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize("name", NAMES)
async def test_example_runs_offline(traced: Traced, name: str, snapshot: Any) -> None:
    module = example(name)
    expected = EXPECTED[name]
    result = await run_example(name, traced, offline=True)
    check_result(result, module, expected)
    check_trace(traced.spans, module.team, result.trace_id, expected)
    # the summary the run returned is the one its spans make
    check_summary(traced.summary.summary().render(), expected)
    assert span_tree(traced.spans) == snapshot


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_research_team_conversation(traced: Traced) -> None:
    """The planner answers only once it has heard from the researcher and the critic."""
    result = await run_example("research_team", traced, offline=True)
    (answer,) = [
        s
        for s in traced.named("chat ")
        if attrs(s)["gen_ai.agent.name"] == "planner"
        and attrs(s)["gen_ai.response.finish_reasons"] == ("end_turn",)
    ]
    heard = {
        (link.attributes or {})["orchestrace.message.sender"]
        for r in traced.named("receive planner")
        for link in r.links
        if (r.end_time or 0) <= (answer.start_time or 0)
    }
    assert heard == {"researcher", "critic"}
    # the researcher looked the topic up twice: facts for the draft, then the caveat
    lookups = traced.named("execute_tool lookup")
    assert len(lookups) == 2
    assert all(not attrs(s)["orchestrace.tool.is_error"] for s in lookups)
    assert "sampled out" in result.text


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_spawned_specialists_are_children_of_the_spawn_that_made_them(
    traced: Traced,
) -> None:
    module = example("spawn_specialists")
    await run_example("spawn_specialists", traced, offline=True)
    first, second = sorted(
        traced.named("execute_tool create_subagents"), key=lambda s: s.start_time or 0
    )

    def children(parent: ReadableSpan) -> list[str]:
        return sorted(
            s.name
            for s in traced.named("invoke_agent ")
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        )

    assert children(first) == ["invoke_agent researcher1", "invoke_agent researcher2"]
    assert children(second) == ["invoke_agent writer1"]
    for agent in ("researcher1", "researcher2", "writer1"):
        (span,) = traced.named(f"invoke_agent {agent}")
        assert attrs(span)["orchestrace.agent.role"] == agent.rstrip("0123456789")
    # submit_draft sent its message through its ToolContext: a send span under the tool's
    # span, tagged by the tool, and the editor's receive links to it
    (submit,) = traced.named("execute_tool submit_draft")
    assert attrs(submit)["app.draft.words"] == len(module.BRIEF.split())
    (send,) = [
        s
        for s in traced.named("send editor")
        if s.parent is not None and s.parent.span_id == submit.context.span_id
    ]
    assert attrs(send)["gen_ai.agent.name"] == "writer1"
    assert any(
        link.context.span_id == send.context.span_id
        for r in traced.named("receive editor")
        for link in r.links
    )
    # the kill ended each specialist in its wait for further instructions
    waits = [
        s
        for s in traced.named("execute_tool wait_for_message")
        if attrs(s).get("orchestrace.tool.cancelled")
    ]
    assert sorted(attrs(s)["gen_ai.agent.name"] for s in waits) == [
        "researcher1",
        "researcher2",
        "writer1",
    ]


# --- the Claude team through the real client and a local Messages API -------------------------
def scripts(team: Team) -> dict[str, Any]:
    """Every agent's and template's offline script, by name."""
    return {a.name: a.script for a in team.every_agent() if a.script is not None}


def scripted_responder(team: Team) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Answer each HTTP request with the agent's script, as Claude would answer it.

    The agent is named by its system prompt ("You are analyst, ..."); the request carries
    no role, so spawned agents (whose scripts are keyed by template) are not handled.
    """
    model = ScriptedModel(latency=0, scripts=scripts(team))

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        match = re.match(r"You are (\w+)", body.get("system", ""))
        request = ModelRequest(
            agent=match.group(1) if match else "?",
            model=body["model"],
            max_tokens=body["max_tokens"],
            system=body.get("system", ""),
            tools=body.get("tools", []),
            messages=body["messages"],
        )
        return model.respond(request)[1].model_dump(mode="json")

    return respond


@pytest.fixture
def claude_api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI(responder=scripted_responder(example("claude_team").team)) as api:
        yield api


@pytest.mark.asyncio
async def test_claude_team_through_the_messages_api(
    traced: Traced, claude_api: FakeMessagesAPI, snapshot: Any
) -> None:
    module = example("claude_team")
    expected = EXPECTED["claude_team"]
    async with AnthropicModel(base_url=claude_api.url, api_key="test-key") as model:
        result = await run_example("claude_team", traced, model=model)
    check_result(result, module, expected)
    check_trace(traced.spans, module.team, result.trace_id, expected)
    requests = claude_api.message_requests
    assert len(requests) == len(traced.named("chat ")) == 10
    assert {r.headers["authorization"] for r in requests} == {"Bearer test-key"}
    assert {r.model for r in requests} == {"claude-opus-4-8"}
    # the analyst's tool went over the wire with its typed schema
    analyst = next(r for r in requests if r.system.startswith("You are analyst"))
    (query,) = [t for t in analyst.tools if t["name"] == "query_metrics"]
    assert query["input_schema"]["properties"]["service"]["enum"] == [
        "checkout",
        "payments",
        "search",
    ]
    assert query["input_schema"]["required"] == ["service", "metric"]
    # the same trace as the offline run
    tree = span_tree(traced.spans)
    offline = Traced()
    try:
        with orchestrace.override(model=ScriptedModel(latency=0, scripts=scripts(module.team))):
            await run_example("claude_team", offline)
        assert span_tree(offline.spans) == tree
    finally:
        offline.tracer_provider.shutdown()
        offline.meter_provider.shutdown()
    assert tree == snapshot


# --- from the command line, and as `python file.py` ------------------------------------------
def clean_env(**extra: str) -> dict[str, str]:
    """No API key (so offline), no exporters, the default model."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OTEL_")) and k != "ORCHESTRACE_MODEL"
    }
    return env | {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"} | extra


def run_process(
    args: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    # Bounded by the process ending (it runs on scripted latency), not by a deadline.
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_research_team_from_the_command_line(tmp_path: Path) -> None:
    module = example("research_team")
    expected = EXPECTED["research_team"]
    spans = tmp_path / "spans.jsonl"
    cli = [sys.executable, "-m", "runtime.cli"]
    args = ["run", "examples/research_team.py", "--time-scale", "0", "--spans-file", str(spans)]
    proc = run_process([*cli, *args], ROOT, clean_env())
    assert proc.returncode == 0, proc.stderr
    assert f"[lead final answer]\n{module.ANSWER}\n" in proc.stdout
    assert "  [researcher] lookup({'topic': 'span links', 'limit': 2}) → " in proc.stdout
    assert "  [planner] ← received from critic: Review: " in proc.stdout
    records = list(iter_spans_file(spans))
    assert len({r.trace_id for r in records}) == 1

    summary = run_process([*cli, "summary", str(spans)], tmp_path, clean_env())
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.startswith("Run research · trace ")
    assert " · completed\n" in summary.stdout
    check_summary(summary.stdout, expected)


def test_research_team_as_a_python_script(tmp_path: Path) -> None:
    module = example("research_team")
    proc = run_process([sys.executable, str(EXAMPLES / "research_team.py")], tmp_path, clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == module.ANSWER + "\n"
    # run_sync wrote the run's spans where it ran
    records = list(iter_spans_file(tmp_path / "orchestrace-spans.jsonl"))
    assert len({r.trace_id for r in records}) == 1
    assert {"invoke_agent planner", "invoke_agent critic", "execute_tool lookup"} <= {
        r.name for r in records
    }


def test_claude_team_script_uses_claude_when_the_key_is_set(
    tmp_path: Path, claude_api: FakeMessagesAPI
) -> None:
    module = example("claude_team")
    env = clean_env(ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=claude_api.url)
    proc = run_process([sys.executable, str(EXAMPLES / "claude_team.py")], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == module.ANSWER + "\n"
    requests = claude_api.message_requests
    assert len(requests) == 10
    assert {r.headers["authorization"] for r in requests} == {"Bearer test-key"}
    records = list(iter_spans_file(tmp_path / "orchestrace-spans.jsonl"))
    assert len([r for r in records if r.name.startswith("chat ")]) == 10


@pytest.mark.asyncio
async def test_run_sleep_paces_the_offline_model_too(traced: Traced) -> None:
    """``run(sleep=...)`` is the run's clock for the scripted model's latency as well as for
    tools, as ``--time-scale`` is for the command: an instant sleep makes the run instant."""
    slept: list[float] = []

    async def instant(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    result = await run_example("research_team", traced, offline=True, sleep=instant, stream=False)
    assert result.completed
    assert len(slept) == len(traced.named("chat ")) == 15
    assert sorted(set(slept)) == [0.125, 0.25]  # the base latency times each reply's think

    # Streamed (the default), each call's latency is slept in chunks: the same time in all.
    whole, slept[:] = list(slept), []
    streamed = Traced()
    try:
        result = await run_example("research_team", streamed, offline=True, sleep=instant)
    finally:
        streamed.tracer_provider.shutdown()
        streamed.meter_provider.shutdown()
    assert result.completed
    assert len(streamed.named("chat ")) == 15
    assert len(slept) > len(whole)
    assert sum(slept) == pytest.approx(sum(whole))
    assert {0.4 * s for s in whole} <= set(slept)  # each first token after 40 % of the latency
