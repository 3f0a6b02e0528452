"""Library misuse and bad numbers get a clear, documented error — never a bare KeyError,
a deadlock or a traceback."""

from __future__ import annotations

import asyncio

import pytest
from support import Traced

from orchestrace import ConfigurationError, OrchestraceError, RunLimits, UnknownAgentError
from runtime.agent import AgentAlreadyRunningError, AgentSpec, run_agent
from runtime.cli import main
from runtime.hub import Hub, InvalidAgentNameError
from runtime.scripted import Reply, ScriptedModel


@pytest.mark.parametrize("name", ["", " ", "two words", "tab\there", "bell\x07", 7, None])
def test_a_name_that_cannot_name_an_agent_is_refused(name: object) -> None:
    with pytest.raises(InvalidAgentNameError):
        Hub().register(name)  # type: ignore[arg-type]
    assert issubclass(InvalidAgentNameError, OrchestraceError)


@pytest.mark.asyncio
async def test_hub_calls_for_an_unregistered_agent_name_it() -> None:
    hub = Hub()
    for call in (hub.role, hub.pending, hub.drain, hub.state):
        with pytest.raises(UnknownAgentError, match="'ghost'"):
            call("ghost")
    with pytest.raises(UnknownAgentError, match="'ghost'"):
        await hub.wait("ghost", 1.0)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_one_agent_cannot_run_twice_at_once(traced: Traced) -> None:
    run = traced.context(
        model=ScriptedModel(policy=lambda conv: Reply.call("wait_for_message"), latency=1)
    )
    run.hub.register("a")
    run.hub.register("b")  # someone who could still send: "a" waits instead of giving up
    spec = AgentSpec("a", "member", "You are a.", "go")
    first = asyncio.create_task(run_agent(run, spec))
    await asyncio.sleep(0.5)
    with pytest.raises(AgentAlreadyRunningError, match="'a' is already running"):
        await run_agent(run, spec)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert run.running == set()  # a finished (or cancelled) agent may run again


@pytest.mark.parametrize(
    "limits",
    [
        {"max_concurrent_calls": 0},  # every agent would wait for a slot forever
        {"max_agents": -1},
        {"max_model_calls": 1.5},
        {"max_tokens_total": True},
    ],
)
def test_limits_that_mean_nothing_or_deadlock_are_refused(limits: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=r"RunLimits\.\w+ must be a whole number"):
        RunLimits(**limits)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-concurrent-calls", "-1"],
        ["--max-turns", "0"],
        ["--max-tokens", "2.5"],
        ["--max-agents", "١٠"],  # digits, but not ASCII ones
        ["--wait-timeout", "nan"],
        ["--time-scale", "inf"],
        ["--latency", "-0.1"],
    ],
)
def test_a_bad_number_on_the_command_line_is_exit_2_naming_the_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "spawn", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[0]}: expected a" in err
    assert "Traceback" not in err
