"""What orchestrace emits under ``gen_ai.*`` is in the GenAI conventions' registry.

The registries are vendored under ``tests/semconv_registry/`` (see its README for the
repositories and pinned commits): ``v1.41/`` is the layout orchestrace emits by default (the
GenAI conventions as last released in open-telemetry/semantic-conventions), ``genai/`` the
current open-telemetry/semantic-conventions-genai registry, which
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` switches to.

Both built-in runs (``spawn``, ``team``) and a user-defined example team run in each mode;
every ``gen_ai.*`` key on their spans, span events and metric points must be registered with
the right type (an enum's value registered too), and every ``gen_ai.*`` metric must be a
registered metric of the same instrument type and unit. The latest mode is checked against
the current registry alone; the default layout against v1.41, and, for what v1.41 does not
define (``gen_ai.workflow.name``, the agent and tool metrics), against the current registry.
Nothing orchestrace names itself may use the ``gen_ai.`` prefix: every such string in
``telemetry/semconv.py`` is a registered attribute or metric.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum
from support import Traced, run_traced
from test_examples import run_example

from telemetry import semconv as sc

REGISTRY = Path(__file__).resolve().parent / "semconv_registry"
LATEST = "gen_ai_latest_experimental"


@dataclass(frozen=True)
class Attribute:
    key: str
    type: str  # string, int, double, boolean, string[], any, template[string], enum
    values: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Metric:
    name: str
    instrument: str  # histogram, counter, updowncounter, gauge
    unit: str


@dataclass
class Registry:
    attributes: dict[str, Attribute]
    metrics: dict[str, Metric]

    def attribute(self, key: str) -> Attribute | None:
        found = self.attributes.get(key)
        if found is not None:
            return found
        # template[...] attributes register a prefix: gen_ai.prompt.variable.<name>
        for prefix, attr in self.attributes.items():
            if attr.type.startswith("template[") and key.startswith(prefix + "."):
                return attr
        return None


def _attribute(key: str, spec: Mapping[str, Any]) -> Attribute:
    kind = spec["type"]
    if isinstance(kind, dict):
        return Attribute(key, "enum", frozenset(str(m["value"]) for m in kind["members"]))
    return Attribute(key, str(kind))


def load(*folders: str) -> Registry:
    """Attributes and metrics of the YAML files under ``folders`` (both model formats: the
    ``groups:`` one of semantic-conventions v1.41 and ``file_format: definition/2``)."""
    registry = Registry({}, {})
    for folder in folders:
        for path in sorted((REGISTRY / folder).rglob("*.yaml")):
            model = yaml.safe_load(path.read_text(encoding="utf-8"))
            for spec in model.get("attributes") or ():
                registry.attributes[spec["key"]] = _attribute(spec["key"], spec)
            for spec in model.get("metrics") or ():
                registry.metrics[spec["name"]] = Metric(
                    spec["name"], spec["instrument"], spec["unit"]
                )
            for group in model.get("groups") or ():
                if group.get("type") == "metric":
                    name = group["metric_name"]
                    registry.metrics[name] = Metric(name, group["instrument"], group["unit"])
                for spec in group.get("attributes") or ():
                    if "id" in spec and "type" in spec:
                        registry.attributes[spec["id"]] = _attribute(spec["id"], spec)
    return registry


V141 = load("v1.41")
CURRENT = load("genai", "v1.41/error", "v1.41/server")


def definition(key: str, latest: bool) -> Attribute | None:
    if latest:
        return CURRENT.attribute(key)
    return V141.attribute(key) or CURRENT.attribute(key)


def metric_definition(name: str, latest: bool) -> Metric | None:
    if latest:
        return CURRENT.metrics.get(name)
    return V141.metrics.get(name) or CURRENT.metrics.get(name)


def type_problem(attr: Attribute, value: object) -> str | None:
    """Why ``value`` does not fit ``attr``, or None."""
    ok = {
        "string": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "double": isinstance(value, float),
        "boolean": isinstance(value, bool),
        "string[]": isinstance(value, tuple | list) and all(isinstance(v, str) for v in value),
        "any": True,  # structured; recorded as a JSON string where OTLP has no map
        "template[string]": isinstance(value, str),
        "enum": isinstance(value, str) and value in attr.values,
    }.get(attr.type)
    if ok is None:
        return f"unknown registry type {attr.type}"
    if not ok:
        allowed = f" (registered: {sorted(attr.values)})" if attr.type == "enum" else ""
        return f"{value!r} is not a {attr.type}{allowed}"
    return None


# --- what the runs emit -----------------------------------------------------------------------
def keyed_values(traced: Traced) -> Iterator[tuple[str, str, object]]:
    """(where, key, value) of every attribute on spans, span events and metric points."""
    for span in traced.spans:
        for key, value in (span.attributes or {}).items():
            yield f"span {span.name!r}", key, value
        for event in span.events:
            for key, value in (event.attributes or {}).items():
                yield f"event {event.name!r} on {span.name!r}", key, value
    for metric in metrics(traced):
        for point in metric.data.data_points:
            for key, value in (point.attributes or {}).items():
                yield f"metric {metric.name}", key, value


def metrics(traced: Traced) -> list[Any]:
    data = traced.metrics.get_metrics_data()
    assert data is not None
    return [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def instrument_of(metric: Any) -> str:
    data = metric.data
    if isinstance(data, Histogram):
        return "histogram"
    if isinstance(data, Sum):
        return "counter" if data.is_monotonic else "updowncounter"
    assert isinstance(data, Gauge), metric.name
    return "gauge"


async def run_all(traced: Traced) -> None:
    """Both built-in runs and a user-defined example team, into one set of providers."""
    await run_traced(traced, "spawn")
    await run_traced(traced, "team")
    await run_example("research_team", traced, offline=True)


@pytest.fixture(params=[False, True], ids=["default-layout", LATEST])
def latest(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param:
        monkeypatch.setenv(sc.SEMCONV_OPT_IN_ENV, f"http,{LATEST}")  # a list, as the spec has
    else:
        monkeypatch.delenv(sc.SEMCONV_OPT_IN_ENV, raising=False)
    monkeypatch.delenv("ORCHESTRACE_MODEL", raising=False)
    return bool(request.param)


# --- tests ------------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.looptime
async def test_every_gen_ai_attribute_is_registered_with_its_type(
    traced: Traced, latest: bool
) -> None:
    await run_all(traced)
    problems = set()
    seen = set()
    for where, key, value in keyed_values(traced):
        if not key.startswith("gen_ai."):
            continue
        seen.add(key)
        attr = definition(key, latest)
        problem = "not in the registry" if attr is None else type_problem(attr, value)
        if problem:
            problems.add(f"{where}: {key}: {problem}")
    assert not problems, "\n".join(sorted(problems))
    # the check saw the runs' conventions at work, not an empty run
    assert {"gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.tool.name"} <= seen


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_every_gen_ai_metric_is_registered_with_its_instrument_and_unit(
    traced: Traced, latest: bool
) -> None:
    await run_all(traced)
    names = set()
    for metric in metrics(traced):
        if not metric.name.startswith("gen_ai."):
            assert metric.name.startswith("orchestrace."), metric.name
            continue
        names.add(metric.name)
        registered = metric_definition(metric.name, latest)
        assert registered is not None, f"{metric.name} is not in the registry"
        assert (instrument_of(metric), metric.unit) == (
            registered.instrument,
            registered.unit,
        ), metric.name
    layout = (
        {"gen_ai.client.inference.duration", "gen_ai.client.inference.usage.input_tokens"}
        if latest
        else {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"}
    )
    assert (
        layout
        | {
            "gen_ai.invocation.duration",
            "gen_ai.invoke_agent.inference_calls",
            "gen_ai.invoke_agent.tool_calls",
            "gen_ai.execute_tool.duration",
        }
        <= names
    )


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_layouts_differ_only_where_the_conventions_renamed(
    traced: Traced, latest: bool
) -> None:
    await run_all(traced)
    keys = {key for where, key, _ in keyed_values(traced) if where.startswith("span ")}
    names = {m.name for m in metrics(traced)}
    default_only = {"gen_ai.conversation.id", "gen_ai.agent.id"}
    latest_only = {sc.RUN_ID, sc.GEN_AI_INVOCATION_IS_NESTED}
    if latest:
        # an agent's span totals its own calls' tokens (not its helpers')
        for agent in traced.named("invoke_agent "):
            own = [
                s
                for s in traced.named("chat ")
                if s.parent is not None and s.parent.span_id == agent.context.span_id
            ]
            assert (agent.attributes or {})["gen_ai.usage.input_tokens"] == sum(
                int((s.attributes or {}).get("gen_ai.usage.input_tokens", 0)) for s in own
            ), agent.name
        assert any(
            (a.attributes or {})["gen_ai.usage.input_tokens"] for a in traced.named("invoke_agent ")
        )
        assert latest_only <= keys
        assert not default_only & keys
        assert "gen_ai.client.operation.duration" not in names
    else:
        assert default_only <= keys
        assert not latest_only & keys
        assert "gen_ai.client.inference.duration" not in names
    # a spawned agent names its caller (spawn: helper1-3 by the lead); the lead has none
    callers = {
        ((s.attributes or {}).get(sc.GEN_AI_AGENT_NAME), (s.attributes or {}).get(sc.AGENT_CALLER))
        for s in traced.named("invoke_agent ")
    }
    assert {("lead", None), ("helper1", "lead"), ("helper2", "lead")} <= callers


def _semconv_strings() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(sc).items()
        if name.isupper() and isinstance(value, str) and value.startswith("gen_ai.")
    }


@pytest.mark.parametrize(("name", "value"), sorted(_semconv_strings().items()))
def test_no_invented_name_uses_the_gen_ai_prefix(name: str, value: str) -> None:
    """Every ``gen_ai.*`` name in telemetry/semconv.py is a registered attribute or metric
    (of v1.41, the default layout, or of the current registry)."""
    registered = (
        set(V141.attributes) | set(CURRENT.attributes) | set(V141.metrics) | set(CURRENT.metrics)
    )
    assert value in registered, f"{name} = {value!r} is not in the registry: name it orchestrace.*"


def test_the_registries_are_the_vendored_files() -> None:
    """The loader reads what the README says is vendored (a guard against an empty load)."""
    assert "gen_ai.client.token.usage" in V141.metrics
    assert "gen_ai.invocation.duration" in CURRENT.metrics
    assert "gen_ai.client.inference.usage.input_tokens" in CURRENT.metrics
    assert CURRENT.attributes["gen_ai.operation.name"].values >= {
        "chat",
        "invoke_agent",
        "invoke_workflow",
        "execute_tool",
    }
    assert "gen_ai.token.type" in V141.attributes
    assert "gen_ai.token.type" not in CURRENT.attributes
    assert "error.type" in CURRENT.attributes


# --- spans against the span definitions (genai/gen-ai/spans.yaml) -----------------------------
SPANS_MODEL = yaml.safe_load(
    (REGISTRY / "genai" / "gen-ai" / "spans.yaml").read_text(encoding="utf-8")
)
#: The registry's span type for each operation orchestrace records.
SPAN_TYPES = {
    "chat": "gen_ai.client.inference",
    "invoke_agent": "gen_ai.invocation.internal",
    "invoke_workflow": "gen_ai.invocation.internal",
    "execute_tool": "gen_ai.execute_tool.internal",
}


def _required(
    attributes: list[dict[str, Any]], groups: dict[str, list[dict[str, Any]]]
) -> set[str]:
    """Keys with requirement_level ``required``, through ref_groups; a later ref of the same
    key (a span's own override) wins over a group's."""
    levels: dict[str, object] = {}
    for item in attributes:
        if "ref_group" in item:
            for key in _required(groups[item["ref_group"]], groups):
                levels.setdefault(key, "required")
        elif "requirement_level" in item:
            levels[item["ref"]] = item["requirement_level"]
    return {key for key, level in levels.items() if level == "required"}


def span_definitions() -> dict[str, tuple[str, set[str]]]:
    """Span type → (kind, required attribute keys)."""
    groups = {g["id"]: g["attributes"] for g in SPANS_MODEL["attribute_groups"]}
    return {
        span["type"]: (span["kind"], _required(span["attributes"], groups))
        for span in SPANS_MODEL["spans"]
    }


def expected_name(attributes: Mapping[str, Any]) -> str:
    """The span name the registry gives each span type."""
    op = attributes["gen_ai.operation.name"]
    target = (
        {
            "chat": attributes.get("gen_ai.request.model"),
            "execute_tool": attributes.get("gen_ai.tool.name"),
        }.get(op)
        or attributes.get("gen_ai.workflow.name")
        or attributes.get("gen_ai.agent.name")
    )
    return f"{op} {target}" if target else op


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_gen_ai_spans_have_the_registry_s_name_kind_and_required_attributes(
    traced: Traced, latest: bool
) -> None:
    await run_all(traced)
    definitions = span_definitions()
    checked = set()
    for span in traced.spans:
        attributes = dict(span.attributes or {})
        op = attributes.get("gen_ai.operation.name")
        if op is None:
            continue
        kind, required = definitions[SPAN_TYPES[op]]
        assert span.kind.name.lower() == kind, span.name
        assert span.name == expected_name(attributes)
        assert required <= set(attributes), (span.name, required - set(attributes))
        checked.add(op)
    assert checked == set(SPAN_TYPES)
