"""``orchestrace run TARGET``: a file, a file's team by name, a module, the built-in runs, and
the one-line errors (exit status 2) or the user's own traceback (exit status 1) when the
target cannot be run.

The command runs in-process (``main(argv, out=...)``) with its process-wide settings
(logging, structlog, the global tracer provider, the interpreter tuning) put back after
each test; a few run as a real process where the process itself is what is tested.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--quiet", "--spans-file", "", "--latency", "0", "--time-scale", "0"]

#: Team definitions whose lead answers with its own first user turn (its task).
TEAMS = """
from orchestrace import Agent, Reply, Team

def echo(prefix):
    return lambda conv: Reply.say(prefix + conv.first_user_turn())
"""


pytestmark = pytest.mark.usefixtures("command_process_state")


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def answer(self) -> str:
        """The lead's final answer as the command printed it."""
        return self.out.split("[lead final answer]\n", 1)[1].split("\n", 1)[0]

    @property
    def run_name(self) -> str:
        """The team name on the summary's first line (``Run NAME · trace ...``)."""
        line = next(x for x in self.out.splitlines() if x.startswith("Run "))
        return line.split(" ", 2)[1]


@pytest.fixture
def orchestrace_run(capsys: pytest.CaptureFixture[str]):
    def invoke(*args: str) -> Ran:
        out = io.StringIO()
        code = main(["run", *args, *FAST], out=out)
        captured = capsys.readouterr()
        assert captured.out == ""  # everything goes to `out`
        return Ran(code, out.getvalue(), captured.err)

    return invoke


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


# --- what TARGET can name ---------------------------------------------------------------------
def test_a_file_with_one_team(tmp_path: Path, orchestrace_run) -> None:
    path = write(
        tmp_path,
        "one_team.py",
        TEAMS + 'team = Team("only", [Agent("lead", task="its own task", script=echo("> "))])\n',
    )
    ran = orchestrace_run(str(path))
    assert (ran.code, ran.answer, ran.run_name, ran.err) == (0, "> its own task", "only", "")


TWO_TEAMS_AND_MORE = (
    TEAMS
    + """
first = Team("first", [Agent("lead", task="t", script=echo("first: "))])
second = Team("second", [Agent("boss", task="t", script=echo("second: ")),
                         Agent("member", script=[Reply.say("ok")])])
loner = Agent("loner", task="t", script=echo("loner: "))
count = 3

def make_team():
    return Team("made", [Agent("maker", task="t", script=echo("made: "))])

def make_agent():
    return Agent("single", task="t", script=echo("single: "))

def make_nothing():
    return 3

def make_sized(size, *more, name="sized", **options):
    return Team(name, [Agent("lead", task="t", script=echo("sized: "))] * size)
"""
)


@pytest.mark.parametrize(
    ("name", "answer", "run_name"),
    [
        ("first", "first: t", "first"),
        ("second", "second: t", "second"),
        ("loner", "loner: t", "loner"),
        ("make_team", "made: t", "made"),
        ("make_agent", "single: t", "single"),
    ],
)
def test_a_file_and_a_name(
    tmp_path: Path, orchestrace_run, name: str, answer: str, run_name: str
) -> None:
    path = write(tmp_path, "teams.py", TWO_TEAMS_AND_MORE)
    ran = orchestrace_run(f"{path}:{name}")
    assert (ran.code, ran.answer, ran.run_name) == (0, answer, run_name)


def test_task_replaces_the_leads_own_task(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "teams.py", TWO_TEAMS_AND_MORE)
    ran = orchestrace_run(f"{path}:second", "--task", "What is a span link?")
    assert ran.answer == "second: What is a span link?"


def test_a_relative_file_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchestrace_run
) -> None:
    write(
        tmp_path, "here.py", TEAMS + 'team = Team("here", [Agent("l", task="t", script=echo(""))])'
    )
    monkeypatch.chdir(tmp_path)
    assert orchestrace_run("here.py").answer == "t"
    assert orchestrace_run("./here.py:team").answer == "t"


def test_a_file_can_import_its_siblings(tmp_path: Path, orchestrace_run) -> None:
    write(tmp_path, "sibling_tools_xq.py", "GREETING = 'hello from a sibling'\n")
    path = write(
        tmp_path,
        "main_team.py",
        TEAMS
        + "from sibling_tools_xq import GREETING\n"
        + 'team = Team("s", [Agent("l", task=GREETING, script=echo(""))])\n',
    )
    assert orchestrace_run(str(path)).answer == "hello from a sibling"


@pytest.mark.parametrize(
    ("target", "answer"),
    [
        ("agentpkg_q7.teams:second", "second: t"),
        ("agentpkg_q7.teams:make_agent", "single: t"),
        ("agentpkg_q7.single", "solo: t"),
    ],
)
def test_a_module_of_an_importable_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchestrace_run, target: str, answer: str
) -> None:
    write(tmp_path, "agentpkg_q7/__init__.py", "")
    write(tmp_path, "agentpkg_q7/teams.py", TWO_TEAMS_AND_MORE)
    write(
        tmp_path,
        "agentpkg_q7/single.py",
        TEAMS + 'team = Team("solo", [Agent("l", task="t", script=echo("solo: "))])\n',
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ran = orchestrace_run(target)
    assert (ran.code, ran.answer) == (0, answer)


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("team", "Everyone has introduced themselves, and I've shared the summary."),
        ("spawn", "Summary: All 3 helpers were spawned and confirmed active"),
    ],
)
def test_the_built_in_runs_still_work(orchestrace_run, name: str, answer: str) -> None:
    ran = orchestrace_run(name)
    assert ran.code == 0
    assert ran.answer.startswith(answer)
    assert ran.run_name == name


def test_the_built_in_names_win_over_a_file_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchestrace_run
) -> None:
    write(
        tmp_path, "team.py", TEAMS + 'team = Team("mine", [Agent("l", task="t", script=echo(""))])'
    )
    monkeypatch.chdir(tmp_path)
    assert orchestrace_run("team").run_name == "team"
    assert orchestrace_run("team.py").run_name == "mine"


def test_the_command_runs_a_module_target_as_a_process(tmp_path: Path) -> None:
    write(tmp_path, "procpkg/__init__.py", "")
    write(tmp_path, "procpkg/teams.py", TWO_TEAMS_AND_MORE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run", "procpkg.teams:first", "--task", "q", *FAST],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "[lead final answer]\nfirst: q\n" in done.stdout


# --- targets that cannot be run: one line, exit status 2 --------------------------------------
def one_line_error(ran: Ran) -> str:
    assert ran.code == 2
    assert ran.out == ""
    assert "Traceback" not in ran.err
    assert ran.err.startswith("orchestrace run: ")
    assert ran.err.endswith("\n")
    assert ran.err.count("\n") == 1
    return ran.err.removeprefix("orchestrace run: ").rstrip("\n")


def test_a_missing_file(tmp_path: Path, orchestrace_run) -> None:
    path = tmp_path / "missing.py"
    assert one_line_error(orchestrace_run(str(path))) == f"{path}: no such file"


def test_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchestrace_run) -> None:
    (tmp_path / "folder").mkdir()
    assert one_line_error(orchestrace_run(str(tmp_path / "folder"))) == (
        f"{tmp_path / 'folder'}: not a file"
    )
    monkeypatch.chdir(tmp_path)
    assert one_line_error(orchestrace_run(".")) == ".: not a file"
    assert one_line_error(orchestrace_run("..")) == "..: not a file"
    assert one_line_error(orchestrace_run("./folder")) == "folder: not a file"


def test_a_file_that_is_not_python(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "notes.txt", "team = 1\n")
    assert one_line_error(orchestrace_run(str(path))) == f"{path}: not a Python file (.py)"


def test_a_file_with_no_team(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "no_team.py", TEAMS + "count = 3\n")
    message = one_line_error(orchestrace_run(str(path)))
    assert message.startswith(f"{path} defines no Team: add `team = Team(...)` at module level")
    assert f"{path}:NAME" in message


def test_a_file_with_agents_only_names_them(tmp_path: Path, orchestrace_run) -> None:
    path = write(
        tmp_path, "agents.py", TEAMS + 'a = Agent("a", task="t")\nb = Agent("b", task="t")\n'
    )
    assert one_line_error(orchestrace_run(str(path))) == (
        f"{path} defines no Team, only agents (a, b): run one alone as {path}:a, or add "
        "`team = Team(...)` at module level"
    )


def test_a_file_with_two_teams_and_no_name(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "teams.py", TWO_TEAMS_AND_MORE)
    assert one_line_error(orchestrace_run(str(path))) == (
        f"{path} defines several teams (first, second); name one, e.g. {path}:first"
    )


def test_a_name_the_file_does_not_define(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "teams.py", TWO_TEAMS_AND_MORE)
    assert one_line_error(orchestrace_run(f"{path}:third")) == (
        f"{path} has no 'third' (it defines: first, second)"
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("count", "{ref}:count is int, not a Team or an Agent (or a function returning one)"),
        ("make_nothing", "{ref}:make_nothing() returned int, not a Team or an Agent"),
        ("Team", "{ref}:Team is type, not a Team or an Agent (or a function returning one)"),
        (
            "make_sized",
            "{ref}:make_sized takes arguments (size); orchestrace run calls it with none: give "
            "them defaults, or name a Team, an Agent or a function of no arguments",
        ),
    ],
)
def test_a_name_that_is_not_a_team(
    tmp_path: Path, orchestrace_run, name: str, problem: str
) -> None:
    path = write(tmp_path, "teams.py", TWO_TEAMS_AND_MORE)
    assert one_line_error(orchestrace_run(f"{path}:{name}")) == problem.format(ref=path)


@pytest.mark.parametrize("target", ["no_such_module_zq", "no_such_module_zq.teams:team"])
def test_a_module_that_does_not_exist(orchestrace_run, target: str) -> None:
    ref = target.split(":")[0]
    assert one_line_error(orchestrace_run(target)) == (
        f"{ref!r} is neither a built-in run (team, spawn), nor a .py file, nor an importable "
        "module (no module named 'no_such_module_zq')"
    )


def test_a_module_missing_from_an_existing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchestrace_run
) -> None:
    write(tmp_path, "halfpkg_q7/__init__.py", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = one_line_error(orchestrace_run("halfpkg_q7.absent"))
    assert message.endswith("(no module named 'halfpkg_q7.absent')")


def test_an_offline_team_with_an_unscripted_agent(tmp_path: Path, orchestrace_run) -> None:
    path = write(
        tmp_path,
        "unscripted.py",
        TEAMS + 'team = Team("u", [Agent("lead", task="t", script=[]), Agent("nobody")])\n',
    )
    message = one_line_error(orchestrace_run(str(path)))
    assert message.startswith(
        "team 'u' cannot run offline (ANTHROPIC_API_KEY is not set): no script for nobody;"
    )
    assert "script=[Reply.call(" in message


def test_an_invalid_team_definition(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "invalid.py", TEAMS + 'team = Team("t", [Agent("two words")])\n')
    assert one_line_error(orchestrace_run(str(path))).startswith(
        "agent name 'two words' may contain only letters"
    )


# --- the user's code raised: their traceback, exit status 1 -----------------------------------
def user_traceback(ran: Ran) -> list[str]:
    assert ran.code == 1
    assert ran.out == ""
    assert ran.err.startswith("Traceback (most recent call last):\n")
    assert "loader.py" not in ran.err
    assert "importlib" not in ran.err
    assert "runtime" not in ran.err
    return ran.err.splitlines()


RAISES_ON_IMPORT = """\
from orchestrace import Agent, Team

def helper():
    return 1 / 0

team = helper()
"""


def test_an_exception_while_importing_the_file(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "raises.py", RAISES_ON_IMPORT)
    lines = user_traceback(orchestrace_run(str(path)))
    assert f'  File "{path}", line 6, in <module>' in lines
    assert f'  File "{path}", line 4, in helper' in lines
    assert lines[-1] == "ZeroDivisionError: division by zero"


def test_a_syntax_error_in_the_file(tmp_path: Path, orchestrace_run) -> None:
    path = write(tmp_path, "broken_syntax.py", "team = 1\ndef f(:\n    pass\n")
    lines = user_traceback(orchestrace_run(str(path)))
    assert f'  File "{path}", line 2' in lines
    assert lines[-1] == "SyntaxError: invalid syntax"


def test_an_exception_while_importing_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchestrace_run
) -> None:
    write(tmp_path, "raisingpkg_q7/__init__.py", "")
    path = write(tmp_path, "raisingpkg_q7/teams.py", RAISES_ON_IMPORT)
    write(tmp_path, "raisingpkg_q7/needs.py", "import a_dependency_that_is_not_installed_q7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = user_traceback(orchestrace_run("raisingpkg_q7.teams:team"))
    assert lines[1] == f'  File "{path}", line 6, in <module>'
    assert lines[-1] == "ZeroDivisionError: division by zero"
    # a module the user's module imports is missing: their error, not an unknown target
    lines = user_traceback(orchestrace_run("raisingpkg_q7.needs"))
    assert lines[-1] == (
        "ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed_q7'"
    )


def test_an_exception_in_a_team_factory(tmp_path: Path, orchestrace_run) -> None:
    path = write(
        tmp_path,
        "factory.py",
        TEAMS + "\ndef make():\n    raise RuntimeError('no team today')\n",
    )
    lines = user_traceback(orchestrace_run(f"{path}:make"))
    assert lines[1] == f'  File "{path}", line 8, in make'
    assert lines[-1] == "RuntimeError: no team today"


def test_the_command_shows_only_the_users_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "raises.py", RAISES_ON_IMPORT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run", str(path), *FAST],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, "")
    # (caret lines under the failing expression vary across Python versions)
    lines = [line for line in done.stderr.splitlines(keepends=True) if line.strip(" ^~\n")]
    assert "".join(lines) == (
        "Traceback (most recent call last):\n"
        f'  File "{path}", line 6, in <module>\n'
        "    team = helper()\n"
        f'  File "{path}", line 4, in helper\n'
        "    return 1 / 0\n"
        "ZeroDivisionError: division by zero\n"
    )


# --- help ---------------------------------------------------------------------------------------
def test_run_help_names_file_targets_and_task(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "FILE.py[:NAME]" in text
    assert "MODULE[:NAME]" in text
    assert "--task TASK" in text
    assert "orchestrace run my_team.py:research" in text
