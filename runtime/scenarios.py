"""The original cookbook's two runs as :class:`~runtime.teams.Team` definitions: a fixed
three-agent ``team`` and a lead that ``spawn``s sleeping helpers.

Both are written with the same API users have (``Agent``, ``Team``, scripts for the offline
model) and run like any user team.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from runtime.agent import AgentResult, RunContext
from runtime.scripted import spawn_helper, spawn_lead, team_lead, team_member
from runtime.subagents import HELPER_TEMPLATE
from runtime.teams import Agent, Team

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

#: Lead + helper1 (Ada) + helper2 (Bo) introduce themselves; the lead sums up.
TEAM: Final = Team(
    "team",
    [
        Agent("lead", task=TEAM_TASKS["lead"], script=team_lead),
        Agent("helper1", task=TEAM_TASKS["helper1"], script=team_member),
        Agent("helper2", task=TEAM_TASKS["helper2"], script=team_member),
    ],
)

#: The lead spawns three sleeping helpers, polls, collects and kills them.
SPAWN: Final = Team(
    "spawn",
    [Agent("lead", "You are the lead.", task=SPAWN_TASK, script=spawn_lead)],
    templates=[dataclasses.replace(HELPER_TEMPLATE, script=spawn_helper)],
)

SCENARIOS: Final[dict[str, Team]] = {"team": TEAM, "spawn": SPAWN}


@dataclass(frozen=True)
class ScenarioResult:
    """The lead's outcome; its ``text`` is the run's final answer."""

    lead: AgentResult


async def run_scenario(
    name: str, run: RunContext, *, on_start: Callable[[str], None] | None = None
) -> ScenarioResult:
    """Run built-in scenario ``name`` inside its ``invoke_workflow`` root span.

    ``on_start`` is called with the run's trace id (32 hex digits) once the span is open.
    """
    from runtime.runner import execute

    return ScenarioResult(await execute(SCENARIOS[name], run, on_start=on_start))
