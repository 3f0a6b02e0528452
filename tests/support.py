"""Test support: a traced run on the scripted model, collected in memory."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import opentelemetry.metrics._internal as otel_metrics
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from structlog.testing import capture_logs

from runtime.agent import RunConfig, RunContext
from runtime.hub import Hub
from runtime.limits import RunLimits
from runtime.models import ModelClient
from runtime.scenarios import ScenarioResult, run_scenario
from runtime.scripted import Conversation, Reply, ScriptedModel
from telemetry.live import LiveView, SummaryProcessor
from telemetry.records import SpanRecord, from_readable_span
from telemetry.setup import Telemetry
from telemetry.spans import ContentPolicy, RunTelemetry


@dataclass
class Traced:
    """A run's providers and what they collected."""

    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    metrics: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    live_out: io.StringIO = field(default_factory=io.StringIO)
    summary: SummaryProcessor = field(default_factory=SummaryProcessor)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(LiveView(self.live_out))
        self.tracer_provider.add_span_processor(self.summary)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def context(
        self,
        model: ModelClient | None = None,
        config: RunConfig | None = None,
        content: ContentPolicy | None = None,
    ) -> RunContext:
        return make_run(self, model=model, config=config, content=content)

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    @property
    def records(self) -> list[SpanRecord]:
        return [from_readable_span(s) for s in self.spans]

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name.startswith(prefix)]


async def run_traced(traced: Traced, scenario: str, **kwargs: object) -> ScenarioResult:
    """Run ``scenario`` on the scripted model (or ``model=``) with ``traced``'s providers."""
    run = traced.context(**kwargs)  # type: ignore[arg-type]
    return await run_scenario(scenario, run)


#: The attributes a span-tree snapshot keeps (ids, timestamps and token estimates vary).
SNAPSHOT_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.agent.name",
    "gen_ai.tool.name",
    "gen_ai.request.model",
    "gen_ai.response.finish_reasons",
    "orchestrace.agent.role",
    "orchestrace.agent.caller",
    "orchestrace.agent.state",
    "orchestrace.agent.end_reason",
    "orchestrace.tool.is_error",
    "orchestrace.tool.cancelled",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.batch.message_count",
    "orchestrace.message.outcome",
    "orchestrace.delivery.via",
    "error.type",
)


def span_tree(spans: list[ReadableSpan]) -> list[dict[str, object]]:
    """The spans as a normalized tree: names, kinds, status, key attributes, links by name.

    Children are ordered by start time (ties by name); a link is shown as the linked span's
    name and the agent that sent it, so the tree compares equal across runs.
    """
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None else None
        children.setdefault(parent if parent in by_id else None, []).append(s)

    def node(s: ReadableSpan) -> dict[str, object]:
        attrs = s.attributes or {}
        out: dict[str, object] = {
            "name": s.name,
            "kind": s.kind.name,
            "attributes": {k: _plain(attrs[k]) for k in SNAPSHOT_KEYS if k in attrs},
        }
        if s.status.status_code.name != "UNSET":
            out["status"] = s.status.status_code.name
        if s.links:
            out["links"] = [
                f"{by_id[link.context.span_id].name} by "
                f"{(by_id[link.context.span_id].attributes or {}).get('gen_ai.agent.name')}"
                if link.context.span_id in by_id
                else "<dangling>"
                for link in s.links
            ]
        kids = sorted(
            children.get(s.context.span_id, []), key=lambda c: (c.start_time or 0, c.name)
        )
        if kids:
            out["children"] = [node(c) for c in kids]
        return out

    roots = sorted(children.get(None, []), key=lambda c: (c.start_time or 0, c.name))
    return [node(r) for r in roots]


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def make_run(
    providers: Traced | Telemetry | TracerProvider | None,
    *,
    model: ModelClient | None = None,
    config: RunConfig | None = None,
    limits: RunLimits | None = None,
    content: ContentPolicy | None = None,
    hub: Hub | None = None,
    run_id: str = "run-test",
    latest: bool | None = None,
) -> RunContext:
    """The one way tests build a run: a fresh hub (unless given), the scripted model (unless
    given), and run telemetry on ``providers`` — a :class:`Traced`, what ``setup_telemetry``
    returned (its content policy too, unless ``content`` is given), a bare tracer provider,
    or None for the global providers. ``latest``: the GenAI conventions' layout (None: as
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` says)."""
    meter_provider = None
    if isinstance(providers, Traced | Telemetry):
        tracer_provider: Any = providers.tracer_provider
        meter_provider = providers.meter_provider
        if content is None and isinstance(providers, Telemetry):
            content = providers.content
    else:
        tracer_provider = providers
    return RunContext(
        hub=hub if hub is not None else Hub(),
        model=model if model is not None else ScriptedModel(),
        telemetry=RunTelemetry(
            run_id=run_id,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            content=content,
            latest=latest,
        ),
        config=config if config is not None else RunConfig(model="claude-opus-4-8"),
        limits=limits if limits is not None else RunLimits(),
    )


@contextmanager
def logs_captured() -> Iterator[list[dict[str, Any]]]:
    """structlog events at every level, whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


class Recorder:
    """A scripted-model policy: one script per agent (``"*"`` for any other), replayed turn
    by turn (the last reply repeats), keeping every request each agent sent (``seen``; the
    last one is ``last``), copied as it was sent."""

    def __init__(self, scripts: dict[str, list[Reply]]) -> None:
        self.scripts = scripts
        self.seen: dict[str, list[list[dict[str, Any]]]] = {}

    @property
    def last(self) -> dict[str, list[dict[str, Any]]]:
        """Each agent's last request's messages."""
        return {agent: requests[-1] for agent, requests in self.seen.items()}

    def __call__(self, conv: Conversation) -> Reply:
        # the agent keeps appending to its message list: keep a copy as it was sent
        self.seen.setdefault(conv.request.agent, []).append(list(conv.request.messages))
        script = self.scripts.get(conv.request.agent) or self.scripts["*"]
        return script[min(conv.turn, len(script) - 1)]

    def last_user_blocks(self, agent: str) -> list[dict[str, Any]]:
        """The content blocks of the agent's last request's last (user) message."""
        content = self.seen[agent][-1][-1]["content"]
        return content if isinstance(content, list) else [{"type": "text", "text": content}]

    def tool_results(self, agent: str) -> list[dict[str, Any]]:
        """The tool_result blocks of the agent's last request."""
        return [
            block
            for m in self.last[agent]
            if m["role"] == "user" and isinstance(m["content"], list)
            for block in m["content"]
            if block.get("type") == "tool_result"
        ]

    def results(self, agent: str) -> list[str]:
        """Every tool-result and delivered-turn text the agent's model was given."""
        texts: list[str] = []
        for message in self.last[agent][1:]:
            if message["role"] != "user":
                continue
            content = message["content"]
            if isinstance(content, str):
                texts.append(content)
            else:
                texts += [str(b.get("content") or b.get("text")) for b in content]
        return texts


@contextmanager
def no_global_providers() -> Iterator[None]:
    """No global tracer or meter provider while inside (the previous ones are put back):
    ``orchestrace.run`` then sets telemetry up itself, writing its ``spans_file``, whatever
    an earlier test left installed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trace, "_TRACER_PROVIDER", None)
        patch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
        patch.setattr(otel_metrics, "_METER_PROVIDER", None)
        patch.setattr(otel_metrics, "_METER_PROVIDER_SET_ONCE", Once())
        yield
