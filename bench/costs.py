"""Per-span CPU costs measured in isolation, next to the OpenTelemetry SDK's own floor.

* **SDK floor** — a bare span (``tracer.start_span(name).end()``, no attributes) through a
  ``BatchSpanProcessor`` with a null exporter: the least any traced step can cost.
* **the same spans, straight through the SDK** — the spans of one orchestrace step (below),
  recorded once and replayed with ``start_span``/``end``: same names, kinds, parents,
  attributes and link, none of orchestrace's code. What the SDK charges for spans that
  carry semantic-convention attributes; the difference to the floor is not ours to cut.
* **orchestrace step, null exporter** — one agent step's spans made by the real span helpers
  (``chat`` with its response, ``execute_tool send_message``, ``send``, ``receive`` with one
  link) through the same processor, with metrics off and on: what the helpers themselves
  add over the floor, before any exporter runs.

Each figure is process CPU time (every thread, so the batch processor's worker is included)
per span, and the part of it spent on the calling thread (the agent's path).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

from anthropic.types import Message, TextBlock, ToolUseBlock, Usage
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Tracer

from runtime.hub import Envelope
from telemetry.spans import ContentPolicy, RunTelemetry

#: The batch processor sizes orchestrace's setup uses (telemetry/setup.py's defaults).
QUEUE_SIZE: Final = 65536
BATCH_SIZE: Final = 2048
SCHEDULE_DELAY_MS: Final = 500
#: Spans per step of :func:`orchestrace_step`.
STEP_SPANS: Final = 4


class NullExporter(SpanExporter):
    """Accepts every batch and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Drop ``spans``."""
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


def null_pipeline() -> TracerProvider:
    """A tracer provider with one batch processor (orchestrace's sizes) and a null exporter."""
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            NullExporter(),
            max_queue_size=QUEUE_SIZE,
            max_export_batch_size=BATCH_SIZE,
            schedule_delay_millis=SCHEDULE_DELAY_MS,
        )
    )
    return provider


@dataclass(frozen=True)
class SpanCost:
    """CPU microseconds per span: all threads, and the calling thread alone."""

    name: str
    spans: int
    cpu_us: float
    caller_us: float


def _measure(
    name: str,
    spans_per_call: int,
    calls: int,
    make: Callable[[], Callable[[], None]],
    provider: TracerProvider,
    flush: Callable[[], object] = lambda: None,
) -> SpanCost:
    """CPU per span of ``calls`` steps; the clock stops once ``provider`` and ``flush``
    (deferred metric measurements) have handed everything on, so no queued work escapes."""
    step = make()
    for _ in range(min(calls, 200)):  # warm caches (attribute keys, metric streams)
        step()
    provider.force_flush()
    gc.collect()
    cpu, caller = time.process_time(), time.thread_time()
    for _ in range(calls):
        step()
    caller = time.thread_time() - caller
    provider.force_flush()
    flush()
    cpu = time.process_time() - cpu
    spans = spans_per_call * calls
    return SpanCost(name, spans, cpu / spans * 1e6, caller / spans * 1e6)


def sdk_floor(spans: int) -> SpanCost:
    """The bare-span floor through a batch processor and a null exporter."""
    provider = null_pipeline()
    tracer = provider.get_tracer("bench")

    def make() -> Callable[[], None]:
        def step() -> None:
            tracer.start_span("bare").end()

        return step

    try:
        return _measure("SDK floor (bare span)", 1, spans, make, provider)
    finally:
        provider.shutdown()


_RESPONSE: Final = Message(
    id="msg_bench",
    type="message",
    role="assistant",
    model="claude-opus-4-8",
    content=[
        TextBlock(type="text", text="Sending the report."),
        ToolUseBlock(
            type="tool_use",
            id="toolu_bench",
            name="send_message",
            input={"recipient_ids": ["lead"], "content": "report"},
        ),
    ],
    stop_reason="tool_use",
    stop_sequence=None,
    usage=Usage(
        input_tokens=900,
        output_tokens=40,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=300,
    ),
)


def orchestrace_step(tel: RunTelemetry) -> Callable[[], None]:
    """One agent step's spans through the real helpers: chat, execute_tool, send, receive."""
    arguments = {"recipient_ids": ["lead"], "content": "report 1 from helper1: all good"}
    counter = iter(range(10**12))

    def step() -> None:
        n = next(counter)
        with tel.chat("helper1", "helper", model="claude-opus-4-8", max_tokens=2048) as call:
            call.record_queue(0.0)
            call.record_response(_RESPONSE)
        with tel.tool(
            "helper1", "helper", name="send_message", call_id=f"toolu_{n}", arguments=arguments
        ) as tool:
            with tel.send(
                "helper1", "helper", recipient="lead", message_id=f"msg-{n}", content="report"
            ) as send:
                envelope = Envelope(
                    f"msg-{n}", "helper1", "lead", "report", time.time_ns(), send.traceparent
                )
                send.record_outcome("delivered")
            tool.record_result("delivered to ['lead']")
        tel.receive("lead", "lead", [envelope], via="wait_for_message")

    return step


def recorded_steps(steps: int) -> list[ReadableSpan]:
    """The finished spans of ``steps`` calls of :func:`orchestrace_step`, in start order."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tel = RunTelemetry(
        run_id="bench",
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),
        content=ContentPolicy(0),
    )
    step = orchestrace_step(tel)
    for _ in range(steps):
        step()
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    provider.shutdown()
    return spans


def sdk_replay_step(tracer: Tracer, spans: Sequence[ReadableSpan]) -> Callable[[], None]:
    """A step that makes ``spans`` again with the bare SDK (children under their parents)."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in by_id else None
        children.setdefault(parent, []).append(s)

    def make(span: ReadableSpan) -> None:
        links = [Link(link.context, dict(link.attributes or {})) for link in span.links]
        started = tracer.start_span(
            span.name, kind=span.kind, attributes=dict(span.attributes or {}), links=links
        )
        kids = children.get(span.context.span_id if span.context else None, [])
        if kids:
            with trace.use_span(started):
                for kid in kids:
                    make(kid)
        started.end()

    roots = children.get(None, [])

    def step() -> None:
        for root in roots:
            make(root)

    return step


def sdk_same_spans(steps: int) -> SpanCost:
    """The orchestrace step's spans replayed straight through the SDK (null exporter)."""
    recorded = recorded_steps(1)
    provider = null_pipeline()
    tracer = provider.get_tracer("bench")
    try:
        return _measure(
            "the same spans, SDK only",
            len(recorded),
            steps,
            partial(sdk_replay_step, tracer, recorded),
            provider,
        )
    finally:
        provider.shutdown()


def step_costs(steps: int) -> list[SpanCost]:
    """The orchestrace step's per-span cost: the SDK alone, then metrics off and on."""
    out = [sdk_same_spans(steps)]
    for label, with_metrics in (
        ("orchestrace spans, no metrics", False),
        ("orchestrace spans + metrics", True),
    ):
        provider = null_pipeline()
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader]) if with_metrics else NoOpMeterProvider()
        tel = RunTelemetry(
            run_id="bench",
            tracer_provider=provider,
            meter_provider=meters,
            content=ContentPolicy(0),
        )
        pending = tel.instruments.pending
        flush = pending.drain if pending is not None else lambda: None
        try:
            out.append(
                _measure(label, STEP_SPANS, steps, partial(orchestrace_step, tel), provider, flush)
            )
        finally:
            provider.shutdown()
            if isinstance(meters, MeterProvider):
                meters.shutdown()
    return out
