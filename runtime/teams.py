"""Agent and Team definitions, and running a team inside a run.

A :class:`Team` names its agents, its lead (whose final answer is the run's answer) and
the agent templates the lead may spawn with ``create_subagents``. Definitions are plain,
immutable values: one team can be run any number of times, concurrently.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from runtime.agent import MESSAGING_TOOL_NAMES, AgentResult, AgentSpec, RunContext, run_agent
from runtime.errors import ConfigurationError
from runtime.hub import SYSTEM_SENDER
from runtime.scripted import Reply, Script
from runtime.tools import (
    AgentTool,
    as_tool,
)
from telemetry.spans import current_context


def reserved_tool_names() -> frozenset[str]:
    """Tool names the runtime gives agents itself; a user tool may not take them."""
    from runtime.subagents import SUBAGENT_TOOL_NAMES  # it imports this module

    return MESSAGING_TOOL_NAMES | SUBAGENT_TOOL_NAMES


#: What the Messages API accepts as a tool name.
_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: The first user turn of a team member that was given no task of its own.
DEFAULT_MEMBER_TASK: Final = (
    "Wait for messages from your team (wait_for_message) and do what they ask; reply with "
    "send_message."
)

#: How long team members may go on after the lead has ended before they are cancelled.
DEFAULT_GRACE_SECONDS: Final = 10.0


def check_agent_name(name: object, what: str = "agent name") -> str:
    """``name`` if it can name an agent, else :class:`ConfigurationError` saying why.

    A name is a non-empty string of letters, digits, ``_``, ``-`` and ``.`` (it appears in
    span names, metric labels and the messages other agents address).
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"{what} must be a string, got {type(name).__name__}")
    if not name:
        raise ConfigurationError(f"{what} is empty")
    bad = [c for c in name if not (c.isalnum() or c in "_-.")]
    if bad:
        shown = ", ".join(
            repr(c) if c.isprintable() else unicodedata.name(c, hex(ord(c))) for c in bad
        )
        raise ConfigurationError(
            f"{what} {name!r} may contain only letters, digits, '_', '-' and '.' (not {shown})"
        )
    if name == SYSTEM_SENDER:
        raise ConfigurationError(f"{what} {name!r} is reserved for the runtime's notices")
    return name


@dataclass(frozen=True)
class Agent:
    """One agent: a name, instructions (its system prompt) and tools.

    Example::

        researcher = Agent(
            "researcher",
            "You research topics with the lookup tool and report to the planner.",
            tools=[lookup],
        )

    ``tools`` takes functions decorated with :func:`orchestrace.tool`, plain functions
    (wrapped for you) and dict-schema :class:`orchestrace.Tool` values. ``task`` is the
    agent's first user turn (a team's lead gets the run's task instead, when one is given).
    ``model``, ``max_turns`` and ``max_tokens`` override the run's settings for this agent,
    and ``stream`` (True / False) whether its model calls stream (None: the run's setting).
    ``script`` is what the agent says when the run is offline: a list of
    :class:`orchestrace.Reply` (one per turn; when it runs out, the agent ends its turn) or a
    function of the :class:`orchestrace.Conversation` returning the next ``Reply``. A
    ``ScriptedModel`` given to ``run(model=...)`` or ``override()`` replaces every script.

    Raises :class:`orchestrace.ConfigurationError` for a bad name, a tool that is not a
    tool, two tools with one name, or a script that is not one.
    """

    name: str
    instructions: str = ""
    tools: Sequence[object] = ()
    task: str | None = None
    model: str | None = None
    max_turns: int | None = None
    max_tokens: int | None = None
    script: Script | None = field(default=None, repr=False, compare=False)
    stream: bool | None = None

    def __post_init__(self) -> None:
        check_agent_name(self.name)
        if not isinstance(self.instructions, str):
            raise ConfigurationError(f"agent {self.name!r}: instructions must be a string")
        if isinstance(self.tools, str | bytes) or not isinstance(self.tools, Sequence):
            raise ConfigurationError(f"agent {self.name!r}: tools must be a list")
        tools: list[AgentTool] = []
        for value in self.tools:
            try:
                tools.append(as_tool(value))
            except TypeError as exc:
                raise ConfigurationError(f"agent {self.name!r}: {exc}") from None
        names = [t.name for t in tools]
        for name in names:
            if not _TOOL_NAME.fullmatch(name):
                raise ConfigurationError(
                    f"agent {self.name!r}: tool name {name!r} must be 1 to 64 letters, digits, "
                    "'_' or '-' (the Messages API's rule); use @tool(name=...)"
                )
            if name in reserved_tool_names():
                raise ConfigurationError(
                    f"agent {self.name!r}: tool name {name!r} is the runtime's own; rename it"
                )
            if names.count(name) > 1:
                raise ConfigurationError(f"agent {self.name!r}: two tools are named {name!r}")
        for option in ("max_turns", "max_tokens"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"agent {self.name!r}: {option} must be a positive int")
        if self.stream is not None and not isinstance(self.stream, bool):
            raise ConfigurationError(f"agent {self.name!r}: stream must be True, False or None")
        if self.script is not None:
            object.__setattr__(self, "script", _checked_script(self.name, self.script))
        object.__setattr__(self, "tools", tuple(tools))

    @property
    def agent_tools(self) -> tuple[AgentTool, ...]:
        """The tools as the runtime calls them (``@tool`` functions, plain functions and
        ``Tool`` values alike, converted when the agent was defined)."""
        return self.tools  # type: ignore[return-value]  # converted in __post_init__


def _checked_script(agent: str, script: object) -> Script:
    """``script`` if it is one (a function, or a list of :class:`Reply` kept as a tuple),
    else :class:`ConfigurationError` saying what it is and what a script looks like."""
    how = "a list of Reply.call(...) / Reply.say(...), or a function of the Conversation"
    if isinstance(script, Reply):
        raise ConfigurationError(f"agent {agent!r}: script must be {how}; wrap one Reply in [...]")
    if callable(script):
        return script  # a function of the Conversation
    if isinstance(script, str | bytes | Mapping) or not isinstance(script, Iterable):
        raise ConfigurationError(
            f"agent {agent!r}: script must be {how}, not {type(script).__name__}"
        )
    replies = tuple(script)
    for turn, reply in enumerate(replies):
        if not isinstance(reply, Reply):
            raise ConfigurationError(
                f"agent {agent!r}: script[{turn}] is {type(reply).__name__} {reply!r:.40}, "
                "not a Reply; use Reply.call(tool, **input) or Reply.say(text)"
            )
    return replies


@dataclass(frozen=True)
class Team:
    """Agents that work together: a lead, members, and templates the lead may spawn.

    Example::

        team = Team("research", [planner, researcher, critic])   # the lead: planner

    ``lead`` names the agent whose final answer is the run's answer (default: the first).
    Every agent of a team of two or more gets ``send_message`` and ``wait_for_message``.
    With ``templates``, the lead also gets ``create_subagents`` (which makes instances of a
    template: ``researcher1``, ``researcher2``, ... with the template's instructions, tools
    and script; with several templates the lead names one), ``get_status`` and
    ``kill_subagents``. ``name`` names the run's root span
    (``invoke_workflow {name}``). Members still working when the lead ends get
    ``grace_seconds`` to finish, then they are cancelled; spawned agents are killed.

    Raises :class:`orchestrace.ConfigurationError` for no agents, two agents (or two
    templates) with one name, a template named like an agent, a template with a ``task``
    (an instance's first turn is the lead's ``create_subagents`` instruction), or a lead
    that is not one of the agents.
    """

    name: str
    agents: Sequence[Agent]
    lead: str | None = None
    templates: Sequence[Agent] = ()
    grace_seconds: float = DEFAULT_GRACE_SECONDS

    def __post_init__(self) -> None:
        check_agent_name(self.name, "team name")
        if isinstance(self.agents, str | bytes | Agent) or not isinstance(self.agents, Iterable):
            raise ConfigurationError(f"team {self.name!r}: agents must be a list of Agent")
        agents = tuple(self.agents)
        if not agents:
            raise ConfigurationError(f"team {self.name!r} has no agents")
        if isinstance(self.templates, str | bytes | Agent) or not isinstance(
            self.templates, Iterable
        ):
            raise ConfigurationError(f"team {self.name!r}: templates must be a list of Agent")
        templates = tuple(self.templates)
        for value in (*agents, *templates):
            if not isinstance(value, Agent):
                raise ConfigurationError(
                    f"team {self.name!r}: {value!r} is not an Agent (use Agent(name, ...))"
                )
        for group, what in ((agents, "agents"), (templates, "templates")):
            names = [a.name for a in group]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ConfigurationError(f"team {self.name!r}: {what} named twice: {twice}")
        # Scripts and ScriptedModel(scripts=...) are keyed by agent or template name: a
        # template named like an agent would hand that agent the template's script.
        shared = sorted({a.name for a in agents} & {t.name for t in templates})
        if shared:
            raise ConfigurationError(
                f"team {self.name!r}: templates named like agents: {shared}; rename one"
            )
        for template in templates:
            if template.task is not None:
                raise ConfigurationError(
                    f"team {self.name!r}: template {template.name!r} has a task, which is never "
                    "used (a spawned agent's first turn is the lead's create_subagents "
                    "instruction); put standing orders in its instructions"
                )
        lead = self.lead if self.lead is not None else agents[0].name
        if lead not in {a.name for a in agents}:
            raise ConfigurationError(
                f"team {self.name!r}: lead {lead!r} is not one of its agents "
                f"({', '.join(a.name for a in agents)})"
            )
        if not (self.grace_seconds >= 0):
            raise ConfigurationError(f"team {self.name!r}: grace_seconds must be >= 0")
        object.__setattr__(self, "agents", agents)
        object.__setattr__(self, "templates", templates)
        object.__setattr__(self, "lead", lead)

    @property
    def lead_agent(self) -> Agent:
        """The lead's definition."""
        return next(a for a in self.agents if a.name == self.lead)

    def every_agent(self) -> Iterator[Agent]:
        """The agents, then the templates."""
        yield from self.agents
        yield from self.templates

    @classmethod
    def of(cls, value: Team | Agent) -> Team:
        """``value`` if it is a team; a lone agent becomes a team of one named after it."""
        if isinstance(value, Team):
            return value
        if isinstance(value, Agent):
            return cls(value.name, [value])
        raise ConfigurationError(f"expected a Team or an Agent, got {type(value).__name__}")


def team_system_prompt(agent: Agent, team: Team) -> str:
    """The system prompt of a team agent: who it is and who its peers are, then its
    instructions. A team of one gets its instructions only."""
    names = [a.name for a in team.agents]
    if len(names) < 2:
        return agent.instructions
    peers = [n for n in names if n != agent.name]
    roster = f"You are {agent.name}, one of {len(names)} agents working together (peers: {peers})."
    return f"{roster}\n\n{agent.instructions}" if agent.instructions else roster


def spawned_system_prompt(name: str, template: Agent) -> str:
    """The system prompt of an instance of ``template``."""
    intro = f"You are {name}, a {template.name}."
    return f"{intro}\n\n{template.instructions}" if template.instructions else intro


async def run_team(run: RunContext, team: Team, task: str | None = None) -> AgentResult:
    """Run ``team`` inside the current (workflow) span; returns the lead's result.

    Registers every agent before any starts (so early messages reach them), runs the
    members as tasks beside the lead, and once the lead has ended gives the members
    ``team.grace_seconds`` before cancelling them; spawned agents are killed.
    """
    from runtime.subagents import Subagents

    hub = run.hub
    lead = team.lead_agent
    placement = run.placement
    elsewhere = await placement.claim(team) if placement is not None else set()
    for agent in team.agents:
        role = "lead" if agent is lead else "member"
        if agent.name in elsewhere and placement is not None:
            placement.register(agent.name, role)
        else:
            hub.register(agent.name, role)
    subagents = Subagents(run, team.templates, spawner=lead.name) if team.templates else None
    parent = current_context()
    remote = await placement.start(team, parent) if placement is not None else {}
    members = [
        remote[a.name]
        if a.name in remote
        else asyncio.create_task(
            run_agent(run, member_spec(team, a, hub.role(a.name)), parent=parent),
            name=f"agent {a.name}",
        )
        for a in team.agents
        if a is not lead
    ]
    try:
        lead_spec = member_spec(
            team, lead, hub.role(lead.name), task, subagents.tools() if subagents else ()
        )
        result = await run_agent(run, lead_spec, parent=parent)
        if members:
            # Members still working may answer the lead's last message; then they go.
            await asyncio.wait(members, timeout=team.grace_seconds)
    finally:
        for member in members:
            member.cancel()
        await asyncio.gather(*members, return_exceptions=True)
        if subagents is not None:
            await subagents.shutdown()
    return result


def member_spec(
    team: Team,
    agent: Agent,
    role: str,
    task: str | None = None,
    extra: Sequence[AgentTool] = (),
) -> AgentSpec:
    """How ``agent`` of ``team`` runs: its prompt, first turn (``task`` for the lead when
    given), tools (``extra`` added) and the team's messaging tools."""
    first = task if agent.name == team.lead and task is not None else agent.task
    return AgentSpec(
        name=agent.name,
        role=role,
        system=team_system_prompt(agent, team),
        first_user_turn=first if first is not None else DEFAULT_MEMBER_TASK,
        tools=(*agent.agent_tools, *extra),
        messaging=len(team.agents) > 1 or bool(team.templates),
        model=agent.model,
        max_turns=agent.max_turns,
        max_tokens=agent.max_tokens,
        stream=agent.stream,
    )


def scripts_of(team: Team) -> dict[str, Script]:
    """Every agent's and template's offline script, by name."""
    return {a.name: a.script for a in team.every_agent() if a.script is not None}


def unscripted(team: Team) -> list[str]:
    """Names of the agents and templates that have no offline script."""
    return [a.name for a in team.every_agent() if a.script is None]


def check_scripted_model(team: Team, model: object) -> None:
    """Raise :class:`ConfigurationError` if ``model`` is a :class:`ScriptedModel` with
    ``scripts`` that leave out an agent or template of ``team`` (that agent would crash with
    a ``KeyError`` at its first call, while the run still completes)."""
    from runtime.scripted import ScriptedModel

    if not isinstance(model, ScriptedModel):
        return
    roles = [(a.name, "lead" if a.name == team.lead else "member") for a in team.agents]
    missing = model.unscripted([*roles, *((t.name, t.name) for t in team.templates)])
    if missing:
        raise ConfigurationError(
            f"team {team.name!r}: the ScriptedModel has no script for {', '.join(missing)}; "
            "add them to ScriptedModel(scripts={...}) (a ScriptedModel passed to run() or "
            "override() replaces every Agent(script=...), it does not add to them)"
        )


TeamFactory = Callable[[], Team]


def fingerprint(team: Team) -> str:
    """A digest of what ``team`` is: its agents' and templates' names, instructions, tasks
    and settings, their tools' schemas and code, their scripts — so that the processes of
    a run can tell they loaded the same team. A worker whose file was edited, or is another
    file with a team of the same name, does not match."""

    def code(value: object) -> str:
        function = getattr(value, "func", None) or getattr(value, "handler", None) or value
        try:
            return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()  # type: ignore[arg-type]
        except (OSError, TypeError):
            return f"{type(function).__module__}.{getattr(function, '__qualname__', '?')}"

    def described(agent: Agent) -> dict[str, object]:
        script = agent.script
        return {
            "name": agent.name,
            "instructions": agent.instructions,
            "task": agent.task,
            "settings": [agent.model, agent.max_turns, agent.max_tokens, agent.stream],
            "tools": [[t.name, t.schema, code(t)] for t in agent.agent_tools],
            "script": (
                None
                if script is None
                else code(script)
                if callable(script)
                else [repr(reply) for reply in script]
            ),
        }

    document = {
        "name": team.name,
        "lead": team.lead_agent.name,
        "agents": [described(a) for a in team.agents],
        "templates": [described(t) for t in team.templates],
        "grace_seconds": team.grace_seconds,
    }
    encoded = json.dumps(document, sort_keys=True, default=repr).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]
