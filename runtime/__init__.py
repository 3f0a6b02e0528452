"""orchestrace's runtime: the hub, the agent loop, tools, models and the seed's scenarios."""

from runtime.agent import AgentResult, AgentSpec, RunConfig, RunContext, run_agent
from runtime.errors import ConfigurationError, OrchestraceError, ToolError
from runtime.hub import AgentState, DeliveryOutcome, Envelope, Hub, PostResult, WakeReason
from runtime.models import AnthropicModel, ModelClient, ModelRequest
from runtime.scenarios import SCENARIOS, ScenarioResult, run_scenario, run_spawn, run_team
from runtime.scripted import ScriptedModel
from runtime.subagents import Subagents, sleep_tool
from runtime.tools import Tool, ToolCall, ToolOutcome

__all__ = [
    "SCENARIOS",
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
    "run_spawn",
    "run_team",
    "sleep_tool",
]
