"""The lead's subagent tools (create_subagents, get_status, kill_subagents) and ``sleep``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from runtime.agent import AgentResult, AgentSpec, RunContext, run_agent
from runtime.errors import ToolError
from runtime.hub import AgentState
from runtime.limits import LimitExceeded
from runtime.tools import CREATE_SUBAGENTS, GET_STATUS, KILL_SUBAGENTS, SLEEP, Tool, ToolCall
from telemetry.spans import current_context

HELPER_ROLE = "helper"


def sleep_tool(sleep: Callable[[float], Awaitable[None]]) -> Tool:
    """The seed's ``sleep(seconds)`` tool, sleeping through the injected ``sleep``."""

    async def _sleep(call: ToolCall) -> str:
        seconds = int(call.input["seconds"])
        await sleep(seconds)
        return f"slept {seconds}s"

    return Tool(SLEEP, _sleep)


class Subagents:
    """The helpers one lead has spawned, and the tools the lead uses to manage them."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.tasks: dict[str, asyncio.Task[AgentResult]] = {}

    def tools(self) -> list[Tool]:
        """create_subagents, get_status and kill_subagents bound to this lead."""
        return [
            Tool(CREATE_SUBAGENTS, self._create),
            Tool(GET_STATUS, self._status),
            Tool(KILL_SUBAGENTS, self._kill),
        ]

    async def _create(self, call: ToolCall) -> str:
        base: str = call.input["base_instruction"]
        per: list[str] = call.input.get("per_subagent_instructions") or [""]
        hub = self.run.hub
        try:
            self.run.budget.check_spawn(len(list(hub)), len(per))
        except LimitExceeded as exc:
            raise ToolError(str(exc), kind="limit") from exc
        # Helpers are children of this execute_tool span: pass its context explicitly.
        parent = current_context()
        spawned = []
        for suffix in per:
            name = hub.new_name("helper", role=HELPER_ROLE)
            spec = AgentSpec(
                name=name,
                role=HELPER_ROLE,
                system=f"You are {name}, a helper.",
                first_user_turn=f"{base}\n\n{suffix}".strip(),
                tools=[sleep_tool(self.run.config.sleep)],
            )
            self.tasks[name] = asyncio.create_task(
                run_agent(self.run, spec, parent=parent), name=f"agent {name}"
            )
            spawned.append(name)
        # Let each helper start (open its span, reach its first model call) before the lead
        # goes on: a kill in the same response would otherwise cancel a task that never ran,
        # leaving no span and no record of the helper.
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
        """Kill every helper still running (the lead has ended); leaves no task behind."""
        await self._cancel([n for n, t in self.tasks.items() if not t.done()])
