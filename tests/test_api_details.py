"""Small rules of the public API that a newcomer would otherwise trip over."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from orchestrace import Agent, ConfigurationError, Reply, Team, ToolError, tool
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
