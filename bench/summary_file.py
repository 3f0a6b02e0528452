"""The summary benchmark: ``orchestrace summary`` over a generated spans file of any size.

The file is one run's trace, as the spans-file exporter writes it. It is made from a real
template run (a small ring of peers on the scripted model, encoded by
``telemetry.export.encode_spans_json``), repeated under new span ids and agent names until
the file holds the spans asked for: many agents, each with a realistic mix of ``chat``,
``execute_tool``, ``send`` and ``receive`` spans (with links), under one root span.

``orchestrace summary FILE`` then runs in a child process; a small launcher process between
it and the benchmark measures its wall time and peak RSS (``getrusage`` of its children).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.costs import BATCH_SIZE
from bench.receiver import REPO, child_env
from bench.workloads import MODEL, UNLIMITED, Ring, _drive
from runtime.agent import RunConfig, RunContext
from runtime.hub import Hub
from runtime.scripted import ScriptedModel
from telemetry.otlp_json import encode_spans_json
from telemetry.spans import ContentPolicy, RunTelemetry

#: Ids of the template's spans are ``00000000`` + a sequence number; each copy of the
#: template replaces the ``00000000`` with its own number. The root keeps its own id.
_CHUNK_PREFIX: Final = "00000000"
_ROOT_ID: Final = "ffffffff00000001"
_ID_FIELD: Final = re.compile(r'"(spanId|parentSpanId)":"([0-9a-f]{16})"')
_SPANS_HEADER: Final = re.compile(r" (\d+) spans ")


def _template_spans(agents: int, messages: int) -> list[ReadableSpan]:
    """The finished spans of one small ring run, content-free as the file exporter writes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "orchestrace"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    workload = Ring("summary", agents, messages, 0.0)
    run = RunContext(
        hub=Hub(),
        model=ScriptedModel(latency=0.0, policy=workload.policy()),
        telemetry=RunTelemetry(
            run_id="bench-summary",
            tracer_provider=provider,
            meter_provider=NoOpMeterProvider(),
            content=ContentPolicy(0),
        ),
        config=RunConfig(model=MODEL, max_turns=workload.max_turns),
        limits=UNLIMITED,
    )
    asyncio.run(_drive(run, workload.name, workload.specs()))
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return spans


def _template_lines(agents: int, messages: int) -> tuple[str, list[str], int]:
    """The root's line, the other spans' lines (with chunk-prefixed ids), their span count."""
    spans = _template_spans(agents, messages)
    root = next(s for s in spans if s.parent is None)
    rest = [s for s in spans if s is not root]
    ids: dict[str, str] = {f"{root.context.span_id:016x}": _ROOT_ID}
    for n, span in enumerate(rest, start=1):
        ids[f"{span.context.span_id:016x}"] = f"{_CHUNK_PREFIX}{n:08x}"

    def renumber(line: str) -> str:
        return _ID_FIELD.sub(lambda m: f'"{m.group(1)}":"{ids.get(m.group(2), m.group(2))}"', line)

    root_line = renumber(encode_spans_json([root]))
    lines = [
        renumber(encode_spans_json(rest[i : i + BATCH_SIZE]))
        for i in range(0, len(rest), BATCH_SIZE)
    ]
    return root_line, lines, len(rest)


def generate_spans_file(path: Path, spans: int, agents: int = 10, messages: int = 100) -> int:
    """Write a one-run spans file of about ``spans`` spans; returns the exact count.

    Each chunk of the file copies a ring run of ``agents`` peers sending ``messages`` each.
    """
    root_line, lines, per_chunk = _template_lines(agents, messages)
    written = 1
    with open(path, "w", encoding="utf-8") as out:
        out.write(root_line + "\n")
        chunk = 0
        while written < spans:
            # Each copy gets its own span ids and agent names (peer0001 -> c3.peer0001).
            prefix = f"{chunk:08x}"
            for line in lines:
                if chunk:
                    line = (
                        line.replace('"spanId":"' + _CHUNK_PREFIX, '"spanId":"' + prefix)
                        .replace('"parentSpanId":"' + _CHUNK_PREFIX, '"parentSpanId":"' + prefix)
                        .replace("peer0", f"c{chunk}.peer0")
                    )
                out.write(line + "\n")
            written += per_chunk
            chunk += 1
    return written


@dataclass(frozen=True)
class SummaryTiming:
    """``orchestrace summary`` over a generated file: size, time, peak RSS, what it said."""

    spans: int
    file_mb: float
    generate_s: float
    seconds: float
    peak_rss_mb: float
    exit_code: int
    spans_reported: int | None
    error: str = ""


#: Runs the command given as its arguments and reports its wall time and peak RSS. A child
#: started straight from the benchmark would report the benchmark's own peak as its own
#: (Linux carries the parent's memory high-water mark into a vforked child's ``ru_maxrss``
#: at exec); a small launcher in between keeps the figure the summary's alone.
_LAUNCHER: Final = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[1:])
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write("\\nbench-launcher " + json.dumps([code, seconds, peak]) + "\\n")
"""


def time_summary(path: Path, spans: int, generate_s: float) -> SummaryTiming:
    """Run ``orchestrace summary path`` in a child process and measure it."""
    command = [sys.executable, "-c", _LAUNCHER, *_summary_command(path)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        subprocess.run(command, cwd=REPO, env=child_env(), stdout=out, stderr=err, check=True)
        out.seek(0)
        header = out.readline().decode("utf-8", "replace")
        err.seek(0)
        error, _, measured = err.read().decode("utf-8", "replace").rpartition("bench-launcher ")
    exit_code, seconds, peak_kib = json.loads(measured)
    match = _SPANS_HEADER.search(header)
    return SummaryTiming(
        spans=spans,
        file_mb=path.stat().st_size / 1e6,
        generate_s=generate_s,
        seconds=seconds,
        peak_rss_mb=peak_kib / 1024,
        exit_code=exit_code,
        spans_reported=int(match.group(1)) if match else None,
        error=error.strip()[-2000:],
    )


def _summary_command(path: Path) -> list[str]:
    script = shutil.which("orchestrace", path=str(Path(sys.executable).parent))
    if script is not None:
        return [script, "summary", str(path)]
    return [sys.executable, "-m", "runtime.cli", "summary", str(path)]
