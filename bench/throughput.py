"""Export throughput: spans per second the exporter path sustains without dropping any.

Two measurements per exporter (OTLP/HTTP to the receiver, and the spans file):

* **end to end** — spans made by the real span helpers as fast as one thread can make them,
  through ``setup_telemetry``'s pipeline (batch processor, redaction, counting, exporter).
  The producer applies back-pressure (it pauses while more than half the queue is waiting),
  so the figure is what the export side sustains, and nothing may be dropped;
* **exporter alone** — the same spans, already finished, handed to the exporter in batches
  of the pipeline's batch size on the calling thread: encoding plus transport, nothing else.

And the OTLP protobuf encoding on its own, the export thread's largest cost: the SDK's
``encode_spans(...).SerializeToString()`` next to orchestrace's encoder
(:mod:`telemetry.otlp_proto`, which the exporters use) over the same batches — CPU per
span, and whether both wrote the same bytes.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan

from bench.costs import BATCH_SIZE, QUEUE_SIZE, STEP_SPANS, orchestrace_step, recorded_steps
from bench.pipeline import (
    SHUTDOWN_TIMEOUT,
    Config,
    SpanTally,
    config_env,
    count_file_spans,
    otel_environment,
)
from bench.receiver import ReceiverProcess
from telemetry import semconv as sc
from telemetry.export import OTLPJsonLinesExporter, RedactingSpanExporter
from telemetry.otlp_proto import encode_spans_protobuf
from telemetry.setup import otlp_span_exporter, setup_telemetry
from telemetry.spans import RunTelemetry

#: The producer pauses while more than this many spans wait in the queue.
HIGH_WATER: Final = QUEUE_SIZE // 2


@dataclass(frozen=True)
class Throughput:
    """One exporter's sustained rate, end to end and alone."""

    exporter: str
    spans: int
    seconds: float
    spans_per_s: float
    exported: int
    dropped: int
    alone_spans_per_s: float
    alone_us_per_span: float


@dataclass(frozen=True)
class EncodingCost:
    """CPU per span of the SDK's protobuf encoder and of orchestrace's, on the same spans."""

    spans: int
    sdk_us_per_span: float
    orchestrace_us_per_span: float
    same_bytes: bool


def encoding_cost(spans: list[ReadableSpan], repetitions: int = 5) -> EncodingCost:
    """Median CPU per span of both encoders over ``spans`` in batches of the batch size."""
    batches = [spans[i : i + BATCH_SIZE] for i in range(0, len(spans), BATCH_SIZE)]
    same = all(encode_spans_protobuf(b) == encode_spans(b).SerializeToString() for b in batches)
    timings: dict[str, list[float]] = {"sdk": [], "orchestrace": []}
    for _ in range(repetitions):
        for name in timings:  # interleaved
            gc.collect()
            started = time.process_time()
            for batch in batches:
                if name == "sdk":
                    encode_spans(batch).SerializeToString()
                else:
                    encode_spans_protobuf(batch)
            timings[name].append((time.process_time() - started) / len(spans) * 1e6)
    sdk, ours = (sorted(t)[len(t) // 2] for t in timings.values())
    return EncodingCost(len(spans), sdk, ours, same)


def _finished_spans(count: int) -> list[ReadableSpan]:
    """``count`` (rounded up to whole steps) finished spans from the real span helpers."""
    return recorded_steps(-(-count // STEP_SPANS))


def _end_to_end(
    kind: str, spans: int, receiver: ReceiverProcess, workdir: Path
) -> tuple[float, int, int]:
    """Seconds to make and export ``spans`` spans, how many arrived, how many were dropped."""
    spans_file = workdir / "throughput.jsonl" if kind == "file" else None
    env = config_env(Config.OTLP, receiver.endpoint) if kind == "otlp" else {}
    tally = SpanTally()
    receiver.clear()
    with otel_environment(env):
        telemetry = setup_telemetry(spans_file=spans_file, processors=[tally], set_global=False)
    counter = telemetry.counters[0]
    tel = RunTelemetry(
        run_id="bench",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=NoOpMeterProvider(),
        content=telemetry.content,
    )
    step = orchestrace_step(tel)
    gc.collect()
    started = time.perf_counter()
    for n in range(-(-spans // STEP_SPANS)):
        step()
        if n % 64 == 0:
            while tally.ended - counter.exported - counter.failed > HIGH_WATER:
                time.sleep(0.001)
    telemetry.shutdown(SHUTDOWN_TIMEOUT)
    seconds = time.perf_counter() - started
    if spans_file is not None:
        arrived = count_file_spans(spans_file)
        spans_file.unlink()
    else:
        arrived = receiver.stats().spans
    return seconds, arrived, tally.ended - arrived


def _alone(kind: str, spans: list[ReadableSpan], receiver: ReceiverProcess, workdir: Path) -> float:
    """Seconds for the exporter alone to export ``spans`` in batches."""
    path = workdir / "alone.jsonl"
    if kind == "otlp":
        with otel_environment(config_env(Config.OTLP, receiver.endpoint)):
            inner = otlp_span_exporter()
    else:
        inner = OTLPJsonLinesExporter(path)
    exporter = RedactingSpanExporter(inner, sc.CONTENT_KEYS)
    receiver.clear()
    gc.collect()
    started = time.perf_counter()
    for i in range(0, len(spans), BATCH_SIZE):
        exporter.export(spans[i : i + BATCH_SIZE])
    seconds = time.perf_counter() - started
    exporter.shutdown()
    path.unlink(missing_ok=True)
    return seconds


def export_throughput(
    spans: int, receiver: ReceiverProcess, workdir: Path
) -> tuple[list[Throughput], EncodingCost]:
    """The OTLP/HTTP and spans-file exporters' throughput, and the encoders' cost."""
    finished = _finished_spans(min(spans, 20 * BATCH_SIZE))
    out = []
    for kind in ("otlp", "file"):
        seconds, arrived, dropped = _end_to_end(kind, spans, receiver, workdir)
        alone = _alone(kind, finished, receiver, workdir)
        out.append(
            Throughput(
                exporter="OTLP/HTTP" if kind == "otlp" else "spans file",
                spans=arrived + dropped,
                seconds=seconds,
                spans_per_s=(arrived + dropped) / seconds,
                exported=arrived,
                dropped=dropped,
                alone_spans_per_s=len(finished) / alone,
                alone_us_per_span=alone / len(finished) * 1e6,
            )
        )
    return out, encoding_cost(finished)
