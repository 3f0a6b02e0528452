"""orchestrace: observability-first multi-agent runs on Claude, one trace per run.

Define agents and their tools, put them in a team, run it::

    from orchestrace import Agent, Team, run_sync, tool

    NOTES = {"span links": "A span link ties a span to the one that caused it."}

    @tool
    def lookup(topic: str) -> str:
        \"\"\"Look a topic up in the notes.\"\"\"
        return NOTES.get(topic, "nothing found")

    planner = Agent("planner", "Ask the researcher, then answer in one sentence.")
    researcher = Agent("researcher", "Answer with the lookup tool.", tools=[lookup])
    team = Team("research", [planner, researcher])   # the first agent leads
    result = run_sync(team, task="What is a span link?")   # on Claude: ANTHROPIC_API_KEY
    print(result.text)

Offline (no API key), each agent plays its ``script``: a list of ``Reply.call(tool,
**input)`` / ``Reply.say(text)``, or a function of the ``Conversation`` — see the README's
"Build your own" for the same team with scripts, and ``help(orchestrace.run)``.

Every model call, tool call and message between agents is an OpenTelemetry span, and a
message's ``receive`` span links to the ``send`` that caused it. Everything in ``__all__``
is the public API; other names (and the ``runtime`` and ``telemetry`` packages) are
internal and may change.
"""

from __future__ import annotations

from runtime.agent import AgentResult
from runtime.errors import ConfigurationError, MalformedResponseError, OrchestraceError, ToolError
from runtime.hub import AgentState, UnknownAgentError
from runtime.limits import LimitExceeded, RunLimits
from runtime.models import AnthropicModel, ModelClient, ModelRequest
from runtime.runner import RunResult, override, run, run_sync
from runtime.scripted import Conversation, Reply, Script, ScriptedModel
from runtime.teams import Agent, Team
from runtime.tools import FunctionTool, Tool, ToolCall, ToolContext, tool
from telemetry.version import __version__

__all__ = [
    "Agent",
    "AgentResult",
    "AgentState",
    "AnthropicModel",
    "ConfigurationError",
    "Conversation",
    "FunctionTool",
    "LimitExceeded",
    "MalformedResponseError",
    "ModelClient",
    "ModelRequest",
    "OrchestraceError",
    "Reply",
    "RunLimits",
    "RunResult",
    "Script",
    "ScriptedModel",
    "Team",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "UnknownAgentError",
    "__version__",
    "override",
    "run",
    "run_sync",
    "tool",
]
