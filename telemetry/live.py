"""A live run's console: the lines printed as spans end, and the summary kept for the exit.

:class:`LiveView` prints the original cookbook's lines as spans end:
``[helper1] sleep({'seconds': 1}) → slept 1s`` when an ``execute_tool`` span ends, and
``[lead] ← received from helper1: done, slept 1s`` for each message a ``receive`` span
delivered. It reads the content attributes that the exporters strip, so the console can
show snippets while exported spans carry no content. :class:`SummaryProcessor` folds each
span into the run's summary as it ends.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from telemetry import semconv as sc
from telemetry.records import facts_of_readable_span
from telemetry.redact import for_terminal
from telemetry.summary import SummaryBuilder, TraceSummary

SNIP: int = 60


def snip(value: object, n: int = SNIP) -> str:
    """The original cookbook's ``_snip``: one line, cut at ``n`` characters with an ellipsis."""
    s = str(value).replace("\n", " ")
    return s if len(s) <= n else s[:n] + "…"


def _arguments(raw: Any) -> object:
    # The original cookbook printed the tool input dict's repr; spans carry it as JSON.
    if not isinstance(raw, str):
        return {}
    try:
        return json.loads(raw)
    except ValueError:  # clipped JSON: show it as it is
        return raw


class LiveView(SpanProcessor):
    """Prints tool calls and deliveries to ``stream`` as their spans end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        """Print the lines for a finished tool or receive span."""
        attrs = span.attributes or {}
        op = attrs.get(sc.GEN_AI_OPERATION_NAME) or attrs.get(sc.MESSAGING_OPERATION_TYPE)
        agent = attrs.get(sc.GEN_AI_AGENT_NAME)
        if op == sc.OP_TOOL:
            if attrs.get(sc.TOOL_CANCELLED):
                return
            args = _arguments(attrs.get(sc.GEN_AI_TOOL_CALL_ARGUMENTS))
            result = attrs.get(sc.GEN_AI_TOOL_CALL_RESULT, "")
            line = f"  [{agent}] {attrs.get(sc.GEN_AI_TOOL_NAME)}({snip(args)}) → {snip(result)}"
            self._write([line])
        elif op == sc.OP_RECEIVE:
            lines = []
            for link in span.links:
                la = link.attributes or {}
                content = la.get(sc.MESSAGE_CONTENT, "")
                lines.append(
                    f"  [{agent}] ← received from {la.get(sc.MESSAGE_SENDER)}: {snip(content)}"
                )
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        # Model-written text and names: no secret, no terminal control sequence.
        text = "".join(for_terminal(line, newlines=False) + "\n" for line in lines)
        with self._lock:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):  # a closed console must not break the run
                pass


class SummaryProcessor(SpanProcessor):
    """Collects a live run's spans as they end, for the summary printed at exit."""

    def __init__(self) -> None:
        self._builder = SummaryBuilder()
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        """Fold the finished span into the summary."""
        record = facts_of_readable_span(span)
        with self._lock:
            self._builder.add(record)

    def summary(self, trace_id: str | None = None) -> TraceSummary:
        """The aggregate of ``trace_id`` (or the latest run) so far."""
        with self._lock:
            return self._builder.summary(trace_id)
