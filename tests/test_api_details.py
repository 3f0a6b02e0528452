"""Small rules of the public API that a newcomer would otherwise trip over."""

from __future__ import annotations

import ast
import builtins
import inspect
import io
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from support import Traced

import orchestrace
from orchestrace import (
    Agent,
    AgentState,
    ConfigurationError,
    Reply,
    ScriptedModel,
    Team,
    Tool,
    ToolCall,
    ToolError,
    tool,
)
from runtime.cli import main

COMMAND = pytest.mark.usefixtures("command_process_state")


def test_reply_call_takes_input_named_text_or_think_as_a_dict() -> None:
    reply = Reply.call("count", {"text": "a b c", "think": "hard"}, text="Counting.", think=2)
    assert reply.tool_input == {"text": "a b c", "think": "hard"}
    assert (reply.text, reply.think, reply.stop_reason) == ("Counting.", 2, "tool_use")
    assert Reply.call("lookup", {"topic": "x"}, limit=2).tool_input == {"topic": "x", "limit": 2}


def test_a_tool_error_raised_on_purpose_is_not_called_invalid_input() -> None:
    assert ToolError("not today").kind == "tool_error"


@pytest.mark.parametrize("name", ["bad name", "x" * 65, "ünïcode", ""])
def test_a_tool_name_the_api_would_refuse_is_refused_at_definition(name: str) -> None:
    @tool(name=name or None)
    def lookup(topic: str) -> str:
        """Look up."""
        return topic

    if not name:  # an empty name falls back to the function's name, which is fine
        Agent("a", tools=[lookup])
        return
    with pytest.raises(ConfigurationError, match="must be 1 to 64 letters"):
        Agent("a", tools=[lookup])


def test_a_lambda_is_not_a_tool_name() -> None:
    with pytest.raises(ConfigurationError, match="'<lambda>'"):
        Agent("a", tools=[lambda topic: topic])


def test_agents_may_come_from_any_iterable() -> None:
    team = Team("t", (Agent(n) for n in ("a", "b")))
    assert [a.name for a in team.agents] == ["a", "b"]
    with pytest.raises(ConfigurationError, match="agents must be a list of Agent"):
        Team("t", Agent("a"))  # type: ignore[arg-type]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv, out=io.StringIO())
    return code, capsys.readouterr().err


@COMMAND
def test_a_module_of_the_current_folder_is_a_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "myteams.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    with pytest.raises(SystemExit, match="imported"):  # found and imported, like python -m
        main(["run", "myteams:team", "--spans-file", ""], out=io.StringIO())


@COMMAND
def test_a_file_that_is_not_python_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    monkeypatch.chdir(tmp_path)
    code, err = _run(["run", "notes.txt", "--spans-file", ""], capsys)
    assert code == 2
    assert err == "orchestrace run: notes.txt: not a Python file (.py)\n"


@COMMAND
def test_a_malformed_price_file_is_a_one_line_setting_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "prices.json").write_text("{bad")
    monkeypatch.setenv("ORCHESTRACE_PRICES", str(tmp_path / "prices.json"))
    code, err = _run(["run", "spawn", "--spans-file", ""], capsys)
    assert code == 2
    assert err.startswith("orchestrace run: ORCHESTRACE_PRICES: price file ")
    assert len(err.splitlines()) == 1
    import orchestrace

    with pytest.raises(ConfigurationError, match="ORCHESTRACE_PRICES"):
        orchestrace.run_sync(Agent("a", task="x", script=[Reply.say("y")]), spans_file=None)


# --- scripts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("script", "message"),
    [
        (["hi"], r"agent 'a': script\[0\] is str 'hi', not a Reply; use Reply\.call"),
        ([Reply.say("x"), None], r"script\[1\] is NoneType None, not a Reply"),
        ("hi", r"script must be a list of Reply\.call\(\.\.\.\) .*, not str"),
        (Reply.say("x"), r"script must be .*; wrap one Reply in \[\.\.\.\]"),
        ({"a": Reply.say("x")}, r"script must be .*, not dict"),
    ],
)
def test_a_script_that_is_not_one_is_refused_where_the_agent_is_defined(
    script: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Agent("a", script=script)  # type: ignore[arg-type]


def test_a_script_may_be_any_iterable_of_replies_or_a_function() -> None:
    assert Agent("a", script=iter([Reply.say("x")])).script == (Reply.say("x"),)
    policy = lambda conv: Reply.say("x")  # noqa: E731
    assert Agent("a", script=policy).script is policy


async def run_in(traced: Traced, team: Team | Agent, task: str = "go", **kw: Any):
    return await orchestrace.run(
        team,
        task,
        tracer_provider=traced.tracer_provider,
        meter_provider=traced.meter_provider,
        **kw,
    )


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_script_function_that_returns_no_reply_crashes_its_agent_saying_so(
    traced: Traced,
) -> None:
    result = await run_in(traced, Agent("a", script=lambda conv: "hello"), offline=True)
    assert (result.lead.state, result.lead.reason) == (AgentState.CRASHED, "TypeError")
    (event,) = [e for s in traced.named("invoke_agent a") for e in s.events]
    assert event.attributes is not None
    assert event.attributes["exception.message"] == (
        "the script of agent 'a' returned str 'hello', not a Reply: "
        "return Reply.call(tool, **input) or Reply.say(text)"
    )


# --- a scripted model that leaves an agent out --------------------------------------------------
def two() -> Team:
    return Team(
        "t",
        [Agent("a", script=[Reply.say("own")]), Agent("b", script=[])],
        templates=[Agent("w", script=[])],
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["override", "argument"])
async def test_a_scripted_model_without_a_script_for_every_agent_is_refused_before_the_run(
    traced: Traced, how: str
) -> None:
    model = ScriptedModel(latency=0, scripts={"a": [Reply.say("x")], "w": []})

    async def attempt() -> None:
        if how == "override":
            with orchestrace.override(model=model):
                await run_in(traced, two())
        else:
            await run_in(traced, two(), model=model)

    with pytest.raises(ConfigurationError) as caught:
        await attempt()
    assert str(caught.value) == (
        "team 't': the ScriptedModel has no script for b; add them to "
        "ScriptedModel(scripts={...}) (a ScriptedModel passed to run() or override() replaces "
        "every Agent(script=...), it does not add to them)"
    )
    assert traced.spans == []
    assert model.calls == 0


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize(
    "model",
    [
        ScriptedModel(latency=0, scripts={"a": [Reply.say("x")], "b": [], "w": []}),
        ScriptedModel(latency=0, scripts={"lead": [Reply.say("x")], "member": [], "w": []}),
        ScriptedModel(latency=0, policy=lambda conv: Reply.say("x")),
    ],
    ids=["by name", "by role", "policy"],
)
async def test_scripts_by_name_by_role_or_a_policy_cover_every_agent(
    traced: Traced, model: ScriptedModel
) -> None:
    result = await run_in(traced, two(), model=model)
    assert result.text == "x"
    assert all(r.state is AgentState.DONE for r in result.agents.values())


# --- run settings and model clients -------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_turns": 0}, "max_turns must be a whole number >= 1, got 0"),
        ({"max_turns": "3"}, "max_turns must be a whole number >= 1, got '3'"),
        ({"max_tokens": 0}, "max_tokens must be a whole number >= 1, got 0"),
        ({"max_tokens": True}, "max_tokens must be a whole number >= 1, got True"),
        ({"wait_timeout": -1}, "wait_timeout must be seconds >= 0, got -1"),
        ({"wait_timeout": float("nan")}, "wait_timeout must be seconds >= 0, got nan"),
        ({"model": 3}, r"run\(model=\.\.\.\) takes a model client .*, not int 3"),
    ],
)
def test_a_run_setting_the_command_would_refuse_is_a_configuration_error(
    traced: Traced, options: dict[str, Any], message: str
) -> None:
    team = Agent("a", script=[Reply.say("x")])
    with pytest.raises(ConfigurationError, match=message):
        orchestrace.run_sync(team, "go", tracer_provider=traced.tracer_provider, **options)
    assert traced.spans == []


def test_override_takes_a_model_client_not_a_model_name() -> None:
    with pytest.raises(ConfigurationError) as caught:
        orchestrace.override(model="claude-opus-4-8").__enter__()  # type: ignore[arg-type]
    assert str(caught.value) == (
        "override(model=...) takes a model client such as ScriptedModel(...) or "
        "AnthropicModel(), not str 'claude-opus-4-8'; a Claude model name goes to "
        "run(model=...)"
    )


@COMMAND
def test_a_run_with_no_task_anywhere_is_a_one_line_error_naming_the_lead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.py").write_text(
        "from orchestrace import Agent, Reply, Team\n"
        'team = Team("t", [Agent("boss", script=[Reply.say("x")])])\n'
    )
    monkeypatch.chdir(tmp_path)
    code, err = _run(["run", "t.py", "--spans-file", ""], capsys)
    assert (code, err) == (
        2,
        "orchestrace run: no task for 'boss': pass --task TEXT, or give the lead "
        "Agent(..., task=...)\n",
    )
    code, err = _run(
        ["run", "t.py", "--spans-file", "", "--task", "go", "--time-scale", "0"], capsys
    )
    assert (code, err) == (0, "")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "a lead without one needs --task" in " ".join(capsys.readouterr().out.split())


# --- what help() shows -------------------------------------------------------------------------
def _public_docstrings() -> dict[str, str]:
    docs: dict[str, str] = {"orchestrace": orchestrace.__doc__ or ""}
    for name in orchestrace.__all__:
        value = getattr(orchestrace, name)
        if isinstance(value, str):
            continue
        docs[name] = inspect.getdoc(value) or ""
        for attr, member in vars(value).items() if inspect.isclass(value) else ():
            func = member.fget if isinstance(member, property) else member
            func = getattr(func, "__func__", func)
            if not attr.startswith("_") and inspect.isfunction(func):
                docs[f"{name}.{attr}"] = inspect.getdoc(func) or ""
    return docs


def test_help_on_the_public_api_points_only_at_public_names() -> None:
    internal = {
        where: found
        for where, doc in _public_docstrings().items()
        if (found := re.findall(r"~runtime\.[\w.]+|choose_model|the policies", doc))
    }
    assert internal == {}


def test_the_package_docstring_example_defines_every_name_it_uses() -> None:
    doc = orchestrace.__doc__ or ""
    example = doc.split("::\n\n", 1)[1].split("\nOffline", 1)[0]
    code = textwrap.dedent(example)
    tree = ast.parse(code)
    defined = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    defined |= {
        a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
    }
    defined |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    defined |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert used - defined - set(dir(builtins)) == set()


def test_conversation_and_tool_context_document_what_a_script_or_tool_reads() -> None:
    conversation = inspect.getdoc(orchestrace.Conversation) or ""
    for name in ("``agent``", "``role``", "``turn``", "``tools``", "``request``"):
        assert name in conversation
    result = " ".join((inspect.getdoc(orchestrace.RunResult) or "").split())
    for name in ("``text``", "``lead``", "``agents[name]``", "``run_id``", "``trace_id``"):
        assert name in result
    context = inspect.getdoc(orchestrace.ToolContext) or ""
    for name in (
        "``agent``",
        "``role``",
        "``run_id``",
        "``call_id``",
        "``span``",
        "agent_states()",
    ):
        assert name in context


def test_the_run_clock_paces_the_agents_own_scripts(traced: Traced) -> None:
    """The README's way to keep a test fast without replacing the agents' scripts."""
    slept: list[float] = []

    async def instant(seconds: float) -> None:
        slept.append(seconds)

    team = Agent("a", script=[Reply.call("nothing"), Reply.say("done")])
    result = orchestrace.run_sync(
        team, "go", tracer_provider=traced.tracer_provider, sleep=instant, stream=False
    )
    assert result.text == "done"
    assert slept == [0.25, 0.25]  # each scripted call's latency, on the given clock
    doc = " ".join((inspect.getdoc(orchestrace.run) or "").split())
    assert "``sleep`` is the run's clock" in doc


def test_a_template_with_a_task_is_refused_since_the_task_would_never_be_used() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Team("t", [Agent("lead")], templates=[Agent("w", task="do w things")])
    assert str(caught.value) == (
        "team 't': template 'w' has a task, which is never used (a spawned agent's first turn "
        "is the lead's create_subagents instruction); put standing orders in its instructions"
    )


# --- tools ---------------------------------------------------------------------------------------
def test_a_method_is_refused_and_a_bound_method_is_a_tool() -> None:
    with pytest.raises(TypeError) as caught:

        class Notes:
            @tool
            def lookup(self, topic: str) -> str:
                """Look up."""
                return topic

    assert str(caught.value) == (
        "@tool lookup: 'self' would be a parameter the model fills in; use @tool on a "
        "function, or make a tool of a bound method: tool(instance.lookup)"
    )

    class Shelf:
        def lookup(self, topic: str) -> str:
            """Look up."""
            return f"shelf: {topic}"

    bound = tool(Shelf().lookup)
    assert bound.schema["input_schema"]["properties"] == {"topic": {"type": "string"}}
    assert bound("x") == "shelf: x"


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_dict_schema_tool_may_have_a_sync_handler(traced: Traced) -> None:
    threads: list[str] = []

    def echo(call: ToolCall) -> str:
        threads.append(threading.current_thread().name)
        return f"echo: {call.input['text']}"

    def later(call: ToolCall) -> Awaitable[str]:  # not async itself, returns a coroutine
        async def answer() -> str:
            return "later"

        return answer()

    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    tools = [
        Tool({"name": "echo", "description": "Echo.", "input_schema": schema}, echo),
        Tool({"name": "later", "description": "Later.", "input_schema": schema}, later),
    ]
    script = [Reply.call("echo", {"text": "hi"}), Reply.call("later"), Reply.say("done")]
    result = await run_in(traced, Agent("a", tools=tools, script=script))
    assert result.completed
    for name in ("echo", "later"):
        (span,) = traced.named(f"execute_tool {name}")
        assert span.attributes is not None
        assert span.attributes["orchestrace.tool.is_error"] is False
    assert len(threads) == 1
    assert threads != [threading.main_thread().name]


def test_python_dash_m_orchestrace_is_the_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrace", "run", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: orchestrace run ")


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_reply_with_another_stop_reason_is_an_unfinished_answer(traced: Traced) -> None:
    assert 'stop_reason="max_tokens"' in (inspect.getdoc(Reply) or "")
    team = Agent("a", script=[Reply("Half an ans", stop_reason="max_tokens")])
    result = await run_in(traced, team)
    assert (result.lead.reason, result.text, result.completed) == (
        "stop_reason:max_tokens",
        "Half an ans",
        False,
    )


def test_the_model_client_docstring_example_runs(traced: Traced) -> None:
    doc = inspect.getdoc(orchestrace.ModelClient) or ""
    code = textwrap.dedent(doc.split("::\n", 1)[1])
    *definition, last = code.strip().splitlines()
    namespace: dict[str, Any] = {}
    exec(  # the docstring's class, with the names it uses
        "from anthropic.types import Message, TextBlock, Usage\n"
        "from orchestrace import Agent, ModelRequest\nimport orchestrace\n" + "\n".join(definition),
        namespace,
    )
    call, expected = last.split("  # ")
    call = call.replace(")).text", "), tracer_provider=tp).text")
    namespace["tp"] = traced.tracer_provider
    assert eval(call, namespace) == eval(expected, namespace)
