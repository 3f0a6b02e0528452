"""Logging: orchestrace's loggers go through the standard ``logging`` module.

Code that users import logs through :func:`get_logger`: structlog loggers bound to a
``logging.Logger`` named ``orchestrace.*``, so the host application decides where the lines
go (by default Python shows warnings and errors on stderr and drops the rest). Nothing is
printed to stdout and no handler is installed. The ``orchestrace`` command calls
:func:`configure_logging`, which renders every line (structlog's and the standard library's)
as JSON, or for a terminal as console text, with ``trace_id``, ``span_id`` and ``agent``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from telemetry.redact import redact


def add_trace_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace and span ids, as hex."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def redact_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no secret in any string value (see :mod:`telemetry.redact`)."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def _as_message(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
    """``event key=value ...``: a plain line for whatever handler the application has."""
    text = str(event.pop("event", ""))
    rest = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in event.items())
    return f"{text} {rest}" if rest else text


#: What a library logger does when nobody configured structlog.
_LIBRARY_PROCESSORS: tuple[structlog.types.Processor, ...] = (
    structlog.contextvars.merge_contextvars,
    add_trace_context,
    redact_event,
    _as_message,
)


def _process(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """Run structlog's configured processors if the application (or the CLI) configured
    structlog, else the library's own short chain (never structlog's stdout default).

    Secrets are masked first, whatever chain follows: an application's own structlog
    configuration knows nothing of orchestrace's redaction.
    """
    processors = (
        structlog.get_config()["processors"] if structlog.is_configured() else _LIBRARY_PROCESSORS
    )
    value: Any = redact_event(logger, method, event)
    for processor in processors:
        value = processor(logger, method, value)
    return value


def get_logger(name: str) -> Any:
    """A structlog logger writing to the standard library logger ``name``."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[_process],
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
    )


@contextmanager
def bound_agent(name: str) -> Iterator[None]:
    """Every log line written inside carries ``agent=name`` (per task: contextvars)."""
    with structlog.contextvars.bound_contextvars(agent=name):
        yield


def _asyncio_ssl_noise(record: logging.LogRecord) -> bool:
    """False for asyncio's warning that a stream protocol over TLS returned True from
    ``eof_received`` (the NATS client's does, each time a TLS connection to a broker
    ends): it says nothing to a user and nothing can be done about it."""
    return not (
        record.name == "asyncio"
        and record.getMessage().startswith("returning true from eof_received()")
    )


def configure_logging(level: str = "WARNING", stream: TextIO | None = None) -> None:
    """For the command line: render all logging on ``stream`` (stderr) at ``level``.

    structlog's events and the standard library's records are rendered alike: JSON lines,
    or console text on a terminal, each with ``level``, ``timestamp``, ``trace_id``,
    ``span_id`` and the ``agent`` bound by :func:`bound_agent`.
    """
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if out.isatty()
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.addFilter(_asyncio_ssl_noise)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_event,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_orchestrace", False)]:
        root.removeHandler(old)
    handler._orchestrace = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
