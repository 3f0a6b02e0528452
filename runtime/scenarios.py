"""The seed's two runs: a fixed three-agent ``team`` and a lead that ``spawn``s helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from runtime.agent import AgentResult, AgentSpec, RunContext, run_agent
from runtime.subagents import Subagents
from telemetry.spans import current_context

TEAM_SYSTEM: Final = "You are {name}, one of 3 agents working together (peers: {peers})."
TEAM_TASKS: Final = {
    "lead": "You are the lead. Introduce yourself to the others. Once everyone has introduced "
    "themselves, finish with a one-sentence summary of the team.",
    "helper1": "You are a backend engineer named Ada. Introduce yourself to the others, then wait "
    "for their replies.",
    "helper2": "You are a designer named Bo. Introduce yourself to the others, then wait for their "
    "replies.",
}

SPAWN_TASK: Final = (
    "Spawn three helper agents. Instruct each to sleep a different number of seconds "
    "(1, 2, 3), report back to you 'done, slept Ns', then wait for your further "
    "instructions. After that, check that they're running, collect all three reports, "
    "then dismiss all three helpers. Finish with a one-line summary."
)

#: How long team members may go on after the lead has ended before they are cancelled.
TEAM_GRACE_SECONDS: Final = 10.0


@dataclass(frozen=True)
class ScenarioResult:
    """The lead's outcome; its ``text`` is the run's final answer."""

    lead: AgentResult


async def run_team(run: RunContext) -> ScenarioResult:
    """Part 1: lead + helper1 (Ada) + helper2 (Bo) introduce themselves; the lead sums up."""
    hub = run.hub
    names = list(TEAM_TASKS)
    for name in names:
        hub.register(name, role="lead" if name == "lead" else "member")
    parent = current_context()

    def spec(name: str) -> AgentSpec:
        peers = [p for p in names if p != name]
        return AgentSpec(
            name=name,
            role=hub.role(name),
            system=TEAM_SYSTEM.format(name=name, peers=peers),
            first_user_turn=TEAM_TASKS[name],
        )

    members = [
        asyncio.create_task(run_agent(run, spec(n), parent=parent), name=f"agent {n}")
        for n in names[1:]
    ]
    try:
        lead = await run_agent(run, spec("lead"), parent=parent)
        # Members still working may answer the lead's last message; then they are dismissed.
        await asyncio.wait(members, timeout=TEAM_GRACE_SECONDS)
    finally:
        for task in members:
            task.cancel()
        await asyncio.gather(*members, return_exceptions=True)
    return ScenarioResult(lead)


async def run_spawn(run: RunContext) -> ScenarioResult:
    """Part 2: the lead spawns three sleeping helpers, polls, collects and kills them."""
    run.hub.register("lead", role="lead")
    subagents = Subagents(run)
    spec = AgentSpec(
        name="lead",
        role="lead",
        system="You are the lead.",
        first_user_turn=SPAWN_TASK,
        tools=subagents.tools(),
    )
    try:
        lead = await run_agent(run, spec)
    finally:
        await subagents.shutdown()
    return ScenarioResult(lead)


SCENARIOS: Final[dict[str, Callable[[RunContext], Awaitable[ScenarioResult]]]] = {
    "team": run_team,
    "spawn": run_spawn,
}


async def run_scenario(
    name: str, run: RunContext, *, on_start: Callable[[str], None] | None = None
) -> ScenarioResult:
    """Run scenario ``name`` inside its ``invoke_workflow`` root span.

    ``on_start`` is called with the run's trace id (32 hex digits) once the span is open.
    """
    with run.telemetry.workflow(name, backend=run.model.backend) as span:
        if on_start is not None:
            on_start(format(span.get_span_context().trace_id, "032x"))
        try:
            return await SCENARIOS[name](run)
        finally:
            run.hub.retire()
