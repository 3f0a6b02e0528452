"""The telemetry configurations compared, built through the project's own ``setup_telemetry``.

Each configuration is a set of standard ``OTEL_*`` variables (plus the spans file), so the
benchmark measures exactly what a user gets from the environment:

* ``off`` — ``OTEL_SDK_DISABLED=true``: no-op providers;
* ``otlp`` — spans and metrics over OTLP/HTTP (protobuf) to the benchmark's receiver;
* ``otlp+file`` — the same, and the OTLP/JSON-lines spans file as well.

A :class:`SpanTally` processor counts spans as they start and end, the "created" side of the
created-versus-exported check.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from telemetry.setup import Telemetry, setup_telemetry
from telemetry.spans import RunTelemetry


class Config(StrEnum):
    """A telemetry configuration under test."""

    OFF = "off"
    OTLP = "otlp"
    OTLP_FILE = "otlp+file"


CONFIGS: Final = (Config.OFF, Config.OTLP, Config.OTLP_FILE)

#: How long closing a pipeline may take: generous, the benchmark must see every span arrive.
SHUTDOWN_TIMEOUT: Final = 300.0


def config_env(config: Config, endpoint: str) -> dict[str, str]:
    """The ``OTEL_*`` variables that select ``config`` (``endpoint``: the receiver's URL)."""
    if config is Config.OFF:
        return {"OTEL_SDK_DISABLED": "true"}
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }


@contextmanager
def otel_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Replace every ``OTEL_*`` variable by ``values`` for the duration of the block."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("OTEL_")]:
            del os.environ[key]
        os.environ.update(saved)


class SpanTally(SpanProcessor):
    """Counts spans started and ended (spans start and end on the event loop's thread)."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Count one started span."""
        with self._lock:
            self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        """Count one ended span."""
        with self._lock:
            self.ended += 1

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True


@dataclass
class Pipeline:
    """One configuration's providers, opened for one run."""

    config: Config
    telemetry: Telemetry
    tally: SpanTally
    spans_file: Path | None

    def run_telemetry(self, run_id: str) -> RunTelemetry:
        """The span helpers of a run on this pipeline's providers."""
        return RunTelemetry(
            run_id=run_id,
            tracer_provider=self.telemetry.tracer_provider,
            meter_provider=self.telemetry.meter_provider,
            content=self.telemetry.content,
        )

    def close(self) -> tuple[float, list[str]]:
        """Flush and shut down; returns the seconds it took and any export problems."""
        started = time.perf_counter()
        done = self.telemetry.shutdown(SHUTDOWN_TIMEOUT)
        seconds = time.perf_counter() - started
        problems = self.telemetry.export_problems() if self.telemetry.enabled else []
        if not done:
            problems.append(f"shutdown did not finish within {SHUTDOWN_TIMEOUT:g}s")
        return seconds, problems


def open_pipeline(config: Config, endpoint: str, workdir: Path) -> Pipeline:
    """Build ``config``'s providers (a fresh spans file in ``workdir`` for ``otlp+file``)."""
    spans_file = workdir / "spans.jsonl" if config is Config.OTLP_FILE else None
    tally = SpanTally()
    with otel_environment(config_env(config, endpoint)):
        telemetry = setup_telemetry(spans_file=spans_file, processors=[tally], set_global=False)
    return Pipeline(config, telemetry, tally, spans_file)


def count_file_spans(path: Path) -> int:
    """How many spans an OTLP/JSON-lines file holds (parsed independently of the reader)."""
    total = 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            for resource_spans in json.loads(line).get("resourceSpans", ()):
                for scope_spans in resource_spans.get("scopeSpans", ()):
                    total += len(scope_spans.get("spans", ()))
    return total
