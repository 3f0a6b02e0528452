"""The lead's subagent tools (create_subagents, get_status, kill_subagents) over agent
templates, and the built-in ``sleep`` tool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from runtime.agent import AgentResult, AgentSpec, RunContext, run_agent
from runtime.errors import ToolError
from runtime.hub import AgentState
from runtime.limits import LimitExceeded
from runtime.teams import Agent, spawned_system_prompt
from runtime.tools import (
    Schema,
    Tool,
    ToolCall,
    ToolContext,
)
from telemetry.spans import current_context

# --- the team tools (their handlers are below) ---------------------------------------------
SLEEP: Final[Schema] = {
    "name": "sleep",
    "description": "Sleep for the given number of seconds, then return.",
    "input_schema": {
        "type": "object",
        "properties": {"seconds": {"type": "integer", "minimum": 0, "maximum": 10}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
}

MAX_SUBAGENTS_PER_CALL: Final = 10

CREATE_SUBAGENTS: Final[Schema] = {
    "name": "create_subagents",
    "description": (
        "Spawn helper subagents. Returns immediately — helpers run concurrently in the "
        "background in parallel with you. Each gets base_instruction, optionally + "
        "per_subagent_instructions[i]."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "base_instruction": {"type": "string"},
            "per_subagent_instructions": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": MAX_SUBAGENTS_PER_CALL,
            },
        },
        "required": ["base_instruction"],
        "additionalProperties": False,
    },
}

GET_STATUS: Final[Schema] = {
    "name": "get_status",
    "description": "Status of every helper (active / idling / done / crashed / killed).",
    "input_schema": {"type": "object", "properties": {}, "additionalProperties": False},
}

KILL_SUBAGENTS: Final[Schema] = {
    "name": "kill_subagents",
    "description": "Cancel running helpers you no longer need.",
    "input_schema": {
        "type": "object",
        "properties": {
            "subagent_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1}
        },
        "required": ["subagent_ids"],
        "additionalProperties": False,
    },
}

#: The names of the tools a lead with templates gets.
SUBAGENT_TOOL_NAMES: Final = frozenset(
    s["name"] for s in (CREATE_SUBAGENTS, GET_STATUS, KILL_SUBAGENTS)
)

HELPER_ROLE = "helper"


def sleep_tool(sleep: Callable[[float], Awaitable[None]]) -> Tool:
    """The original cookbook's ``sleep(seconds)`` tool, sleeping through ``sleep``."""

    async def _sleep(call: ToolCall) -> str:
        seconds = int(call.input["seconds"])
        await sleep(seconds)
        return f"slept {seconds}s"

    return Tool(SLEEP, _sleep)


async def _sleep_on_run_clock(call: ToolCall, context: ToolContext) -> str:
    seconds = int(call.input["seconds"])
    await context.sleep(seconds)
    return f"slept {seconds}s"


#: ``sleep(seconds)`` on the run's clock (``--time-scale``), for team definitions.
SLEEP_TOOL = Tool(SLEEP, _sleep_on_run_clock, takes_context=True)

#: The original cookbook's helper: no instructions of its own, one ``sleep`` tool.
HELPER_TEMPLATE = Agent(HELPER_ROLE, tools=[SLEEP_TOOL])


def create_subagents_schema(templates: Sequence[Agent]) -> Schema:
    """The ``create_subagents`` schema; with several templates the lead picks one."""
    if len(templates) < 2:
        return CREATE_SUBAGENTS
    listing = "; ".join(
        f"{t.name}: {t.instructions.strip().splitlines()[0]}" if t.instructions.strip() else t.name
        for t in templates
    )
    schema: dict[str, Any] = {
        **CREATE_SUBAGENTS,
        "description": CREATE_SUBAGENTS["description"]
        + " Each is an instance of `template`, named after it (researcher1, researcher2, "
        f"...). Templates: {listing}.",
    }
    input_schema = dict(CREATE_SUBAGENTS["input_schema"])
    input_schema["properties"] = {
        "template": {"type": "string", "enum": [t.name for t in templates]},
        **input_schema["properties"],
    }
    input_schema["required"] = ["template", *input_schema["required"]]
    schema["input_schema"] = input_schema
    return schema


def spawned_spec(
    name: str, template: Agent, first_user_turn: str, *, caller: str | None = None
) -> AgentSpec:
    """How instance ``name`` of ``template`` runs (spawned by ``caller``)."""
    return AgentSpec(
        name=name,
        role=template.name,
        system=spawned_system_prompt(name, template),
        first_user_turn=first_user_turn,
        tools=template.agent_tools,
        model=template.model,
        max_turns=template.max_turns,
        max_tokens=template.max_tokens,
        stream=template.stream,
        caller=caller,
    )


class Subagents:
    """The agents one lead has spawned from its templates, and the tools to manage them.

    ``templates`` default to the original cookbook's sleeping ``helper``.
    """

    def __init__(
        self,
        run: RunContext,
        templates: Sequence[Agent] | None = None,
        *,
        spawner: str = "lead",
    ) -> None:
        self.run = run
        self.templates = {t.name: t for t in (templates or (HELPER_TEMPLATE,))}
        self.spawner = spawner
        self.tasks: dict[str, asyncio.Task[AgentResult]] = {}

    def tools(self) -> list[Tool]:
        """create_subagents, get_status and kill_subagents bound to this lead."""
        return [
            Tool(create_subagents_schema(list(self.templates.values())), self._create),
            Tool(GET_STATUS, self._status),
            Tool(KILL_SUBAGENTS, self._kill),
        ]

    async def _create(self, call: ToolCall) -> str:
        base: str = call.input["base_instruction"]
        per: list[str] = call.input.get("per_subagent_instructions") or [""]
        template = self.templates[call.input.get("template") or next(iter(self.templates))]
        hub = self.run.hub
        try:
            self.run.budget.check_spawn(len(list(hub)), len(per))
        except LimitExceeded as exc:
            raise ToolError(str(exc), kind="limit") from exc
        # Spawned agents are children of this execute_tool span: pass its context explicitly.
        parent = current_context()
        spawned = []
        placement = self.run.placement
        for suffix in per:
            first_turn = f"{base}\n\n{suffix}".strip()
            if placement is not None and placement.offers(template.name):
                name, task = placement.spawn(template.name, template.name, first_turn, parent)
                self.tasks[name] = task
            else:
                name = hub.new_name(template.name, role=template.name)
                spec = spawned_spec(name, template, first_turn, caller=self.spawner)
                self.tasks[name] = asyncio.create_task(
                    run_agent(self.run, spec, parent=parent), name=f"agent {name}"
                )
            spawned.append(name)
        # Let each spawned agent start (open its span, reach its first model call) before
        # the lead goes on: a kill in the same response would otherwise cancel a task that
        # never ran, leaving no span and no record of the agent.
        await asyncio.sleep(0)
        return f"spawned: {', '.join(spawned)}"

    async def _status(self, call: ToolCall) -> str:
        hub = self.run.hub
        return "\n".join(f"{n}: {hub.state(n)}" for n in self.tasks) or "(none)"

    async def _kill(self, call: ToolCall) -> str:
        hub = self.run.hub
        killed: list[str] = []
        refused: list[str] = []
        for sid in dict.fromkeys(call.input["subagent_ids"]):
            task = self.tasks.get(sid)
            if task is None:
                refused.append(f"{sid} (unknown)")
            elif task.done() or hub.state(sid).ended:
                refused.append(f"{sid} (already {hub.state(sid)})")
            else:
                killed.append(sid)
        await self._cancel(killed)
        if not killed:
            raise ToolError(
                "no matching active helpers: " + ", ".join(refused), kind="invalid_subagent"
            )
        text = f"cancelled: {', '.join(killed)}"
        return text + (f"; not cancelled: {', '.join(refused)}" if refused else "")

    async def _cancel(self, names: list[str]) -> None:
        for name in names:
            self.run.hub.set_state(name, AgentState.KILLED)
            self.tasks[name].cancel()
        await asyncio.gather(*(self.tasks[n] for n in names), return_exceptions=True)

    async def shutdown(self) -> None:
        """Kill every spawned agent still running (the lead has ended); leaves no task."""
        await self._cancel([n for n, t in self.tasks.items() if not t.done()])
