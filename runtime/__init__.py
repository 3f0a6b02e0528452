"""orchestrace's runtime (internal; users import ``orchestrace``): the hub, the agent loop,
tools, teams, models and the built-in runs.

Names are imported on first use (PEP 562), so ``import runtime.cli`` for ``orchestrace
summary`` does not load the anthropic SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.agent import AgentResult, AgentSpec, RunConfig, RunContext, run_agent
    from runtime.errors import ConfigurationError, OrchestraceError, ToolError
    from runtime.hub import AgentState, DeliveryOutcome, Envelope, Hub, PostResult, WakeReason
    from runtime.models import AnthropicModel, ModelClient, ModelRequest
    from runtime.scenarios import SCENARIOS, SPAWN, TEAM, ScenarioResult, run_scenario
    from runtime.scripted import ScriptedModel
    from runtime.subagents import Subagents, sleep_tool
    from runtime.tools import Tool, ToolCall, ToolOutcome

_HOMES: dict[str, str] = {
    "AgentResult": "runtime.agent",
    "AgentSpec": "runtime.agent",
    "RunConfig": "runtime.agent",
    "RunContext": "runtime.agent",
    "run_agent": "runtime.agent",
    "ConfigurationError": "runtime.errors",
    "OrchestraceError": "runtime.errors",
    "ToolError": "runtime.errors",
    "AgentState": "runtime.hub",
    "DeliveryOutcome": "runtime.hub",
    "Envelope": "runtime.hub",
    "Hub": "runtime.hub",
    "PostResult": "runtime.hub",
    "WakeReason": "runtime.hub",
    "AnthropicModel": "runtime.models",
    "ModelClient": "runtime.models",
    "ModelRequest": "runtime.models",
    "SCENARIOS": "runtime.scenarios",
    "ScenarioResult": "runtime.scenarios",
    "run_scenario": "runtime.scenarios",
    "SPAWN": "runtime.scenarios",
    "TEAM": "runtime.scenarios",
    "ScriptedModel": "runtime.scripted",
    "Subagents": "runtime.subagents",
    "sleep_tool": "runtime.subagents",
    "Tool": "runtime.tools",
    "ToolCall": "runtime.tools",
    "ToolOutcome": "runtime.tools",
}

__all__ = [
    "SCENARIOS",
    "SPAWN",
    "TEAM",
    "AgentResult",
    "AgentSpec",
    "AgentState",
    "AnthropicModel",
    "ConfigurationError",
    "DeliveryOutcome",
    "Envelope",
    "Hub",
    "ModelClient",
    "ModelRequest",
    "OrchestraceError",
    "PostResult",
    "RunConfig",
    "RunContext",
    "ScenarioResult",
    "ScriptedModel",
    "Subagents",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolOutcome",
    "WakeReason",
    "run_agent",
    "run_scenario",
    "sleep_tool",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
