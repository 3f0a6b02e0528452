"""structlog lines carry trace context; metrics are recorded with bounded labels."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from support import Traced, run_traced

from runtime.agent import RunConfig
from runtime.scenarios import run_scenario
from runtime.scripted import ScriptedModel
from telemetry.logs import configure_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield stream
    structlog.reset_defaults()


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_log_lines_are_json_with_trace_span_and_agent(
    traced: Traced, log_stream: io.StringIO
) -> None:
    await run_traced(traced, "spawn")
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    ended = [e for e in lines if e["event"] == "agent ended"]
    assert {e["agent"] for e in ended} == {"lead", "helper1", "helper2", "helper3"}
    (root,) = traced.named("invoke_workflow spawn")
    trace_id = format(root.context.trace_id, "032x")
    for event in ended:
        assert event["trace_id"] == trace_id
        assert len(event["span_id"]) == 16
        assert event["level"] == "debug"
    lead = next(e for e in ended if e["agent"] == "lead")
    (lead_span,) = traced.named("invoke_agent lead")
    assert lead["span_id"] == format(lead_span.context.span_id, "016x")


def _points(traced: Traced) -> dict[str, list[tuple[dict[str, object], object]]]:
    data = traced.metrics.get_metrics_data()
    out: dict[str, list[tuple[dict[str, object], object]]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = getattr(point, "count", None)
                    out.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return out


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_metrics_follow_the_run_with_role_labels(traced: Traced) -> None:
    await run_traced(traced, "spawn", model=ScriptedModel(), config=RunConfig(model="m"))
    points = _points(traced)
    assert {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "orchestrace.model.cache_tokens",
        "gen_ai.execute_tool.duration",
        "gen_ai.invocation.duration",
        "gen_ai.invoke_agent.inference_calls",
        "gen_ai.invoke_agent.tool_calls",
        "orchestrace.model.attempts",
        "orchestrace.messages.sent",
        "orchestrace.messages.received",
        "orchestrace.message.delivery.latency",
        "orchestrace.agents",
        "orchestrace.agent.turns",
        "orchestrace.agent.wait.duration",
        "orchestrace.runs",
    } <= set(points)
    # no per-agent names on any metric: cardinality stays bounded by role
    for name, series in points.items():
        for attrs, _ in series:
            assert "gen_ai.agent.name" not in attrs, name
            assert not any(str(v).startswith("helper") and v != "helper" for v in attrs.values())
    sent = {a["orchestrace.message.outcome"]: v for a, v in points["orchestrace.messages.sent"]}
    assert sent == {"delivered": 3}
    agents = {
        (a["orchestrace.agent.role"], a["orchestrace.agent.state"]): v
        for a, v in points["orchestrace.agents"]
    }
    # every agent passed through its states, and the finished run left none behind
    assert {("helper", "killed"), ("lead", "done"), ("helper", "idling")} <= set(agents)
    assert set(agents.values()) == {0}
    token_types = {a["gen_ai.token.type"] for a, _ in points["gen_ai.client.token.usage"]}
    assert token_types == {"input", "output"}
    assert [v for a, v in points["orchestrace.runs"]] == [1]
    # One run and one invocation per agent; each agent's own calls, by role.
    invocations = {
        (a["gen_ai.operation.name"], a.get("orchestrace.agent.role")): v
        for a, v in points["gen_ai.invocation.duration"]
    }
    assert invocations[("invoke_workflow", None)] == 1
    assert invocations[("invoke_agent", "lead")] == 1
    chats = sum(v for _, v in points["gen_ai.client.operation.duration"])
    calls = sum(v for _, v in points["gen_ai.invoke_agent.inference_calls"])
    assert calls == invocations[("invoke_agent", "lead")] + invocations[("invoke_agent", "helper")]
    assert chats == sum(v for _, v in points["orchestrace.model.attempts"])  # no retries here


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_latest_conventions_rename_the_model_call_metrics(traced: Traced) -> None:
    """OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: inference metrics and token
    counters instead of the default layout's, never both; the rest unchanged."""
    run = traced.context(model=ScriptedModel(), config=RunConfig(model="m"))
    run.telemetry.latest = True
    await run_scenario("spawn", run)
    points = _points(traced)
    assert {
        "gen_ai.client.inference.duration",
        "gen_ai.client.inference.usage.input_tokens",
        "gen_ai.client.inference.usage.output_tokens",
        "gen_ai.execute_tool.duration",
        "gen_ai.invocation.duration",
        "orchestrace.messages.sent",
    } <= set(points)
    assert not {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "orchestrace.model.cache_tokens",
    } & set(points)
    inputs = points["gen_ai.client.inference.usage.input_tokens"]
    assert {a["gen_ai.token.modality"] for a, _ in inputs} == {"text"}
