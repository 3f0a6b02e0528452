"""Interpreter settings for a process whose job is running agents.

The cyclic garbage collector's young generation is collected every 700 container
allocations by default, and every tenth young collection scans the middle generation too.
An agent run allocates constantly (messages, spans, their attributes, queued exports) and
keeps a large live heap (every agent's conversation, the span queue), so with Python's
defaults much of tracing's cost — and of the runtime's — is the collector walking objects
that are still alive. Raised thresholds collect less often; the garbage is the same, so
memory moves little (measured in ``bench/``).

The thread switch interval: a thread waiting for the GIL asks its holder to drop it only
after this long (Python: 5 ms). The agents' event loop shares the GIL with the exporter and
metrics threads; when a model reply or a message is due while an exporter is encoding a
batch, the agent waits up to the interval; a shorter interval hands the GIL back sooner.
What both settings buy is measured by ``python -m bench`` (README, "Performance").

The ``orchestrace`` command applies :func:`tune_process` (both settings) at start.
Importing the packages as a library changes nothing: an application embedding the runtime
owns its interpreter and may call :func:`tune_process` itself.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple, TypeVar

from telemetry import settings

log = logging.getLogger(__name__)

T = TypeVar("T")

GC_THRESHOLD_ENV: Final = "ORCHESTRACE_GC_THRESHOLD"
#: Young generation every 50,000 allocations (Python: 700); the older two as Python's
#: ratios scaled for that (20 young collections per middle, 100 middle per full).
DEFAULT_GC_THRESHOLD: Final = (50_000, 20, 100)
#: Values of ``ORCHESTRACE_GC_THRESHOLD`` that leave Python's own settings alone.
KEEP_PYTHONS: Final = frozenset({"python", "default", "off"})


SWITCH_INTERVAL_ENV: Final = "ORCHESTRACE_SWITCH_INTERVAL"
#: Seconds (Python: 0.005).
DEFAULT_SWITCH_INTERVAL: Final = 0.001


class GcSettingError(ValueError):
    """``ORCHESTRACE_GC_THRESHOLD`` is not a threshold."""


class SwitchIntervalError(ValueError):
    """``ORCHESTRACE_SWITCH_INTERVAL`` is not a positive number of seconds."""


def parse_gc_threshold(raw: str) -> tuple[int, ...] | None:
    """``"50000,20,100"`` → ``(50000, 20, 100)``; ``""`` → the default; ``"python"`` → None.

    One to three non-negative integers, as :func:`gc.set_threshold` takes them (a first
    value of 0 disables automatic collection: allowed, at the user's risk).
    """
    text = raw.strip().lower()
    if not text:
        return DEFAULT_GC_THRESHOLD
    if text in KEEP_PYTHONS:
        return None
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise GcSettingError(
            f"{GC_THRESHOLD_ENV}={raw!r}: expected one to three non-negative integers "
            f"separated by commas (e.g. {','.join(map(str, DEFAULT_GC_THRESHOLD))}), "
            f"or one of {', '.join(sorted(KEEP_PYTHONS))} to keep Python's "
            f"{','.join(map(str, gc.get_threshold()))}"
        )
    return tuple(int(p) for p in parts)


def _tune(
    environ: Mapping[str, str] | None,
    name: str,
    parse: Callable[[str], T | None],
    apply: Callable[[T], object],
    what: str,
) -> T | None:
    """Parse ``name`` from the environment and apply it; a malformed value is a warning."""
    env = os.environ if environ is None else environ
    try:
        value = parse(env.get(name, ""))
    except ValueError as exc:
        log.warning("%s; keeping Python's %s", exc, what)
        return None
    if value is not None:
        apply(value)
    return value


def tune_gc(environ: Mapping[str, str] | None = None) -> tuple[int, ...] | None:
    """Apply ``ORCHESTRACE_GC_THRESHOLD`` (default :data:`DEFAULT_GC_THRESHOLD`).

    Returns the thresholds applied, or None when Python's are kept — also when the value
    is malformed, which is logged as a warning rather than stopping a run over a tuning
    knob.
    """
    return _tune(
        environ,
        GC_THRESHOLD_ENV,
        parse_gc_threshold,
        lambda threshold: gc.set_threshold(*threshold),
        "garbage-collector settings",
    )


def parse_switch_interval(raw: str) -> float | None:
    """``"0.002"`` → 0.002 seconds; ``""`` → the default; ``"python"`` → None (keep)."""
    text = raw.strip().lower()
    if not text:
        return DEFAULT_SWITCH_INTERVAL
    if text in KEEP_PYTHONS:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise SwitchIntervalError(
            f"{SWITCH_INTERVAL_ENV}={raw!r}: expected a positive number of seconds "
            f"(e.g. {DEFAULT_SWITCH_INTERVAL:g}), or one of {', '.join(sorted(KEEP_PYTHONS))} "
            f"to keep Python's {sys.getswitchinterval():g}"
        )
    return seconds


def tune_switch_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Apply ``ORCHESTRACE_SWITCH_INTERVAL`` (default :data:`DEFAULT_SWITCH_INTERVAL`).

    Returns the interval applied, or None when Python's is kept (also when the value is
    malformed: logged as a warning).
    """
    return _tune(
        environ,
        SWITCH_INTERVAL_ENV,
        parse_switch_interval,
        sys.setswitchinterval,
        "thread switch interval",
    )


# In the table of every setting (telemetry.settings), with this module's parsers; a bad
# value keeps Python's own setting (see _tune).
for _env, _parse, _accepts, _default, _doc in (
    (
        GC_THRESHOLD_ENV,
        parse_gc_threshold,
        "one to three whole numbers >= 0 separated by commas, or python / default / off",
        ",".join(map(str, DEFAULT_GC_THRESHOLD)),
        "the garbage collector's thresholds for the command (python: Python's 700,10,10)",
    ),
    (
        SWITCH_INTERVAL_ENV,
        parse_switch_interval,
        "a number of seconds > 0, or python / default / off",
        f"{DEFAULT_SWITCH_INTERVAL:g}",
        "seconds a thread waits for the GIL before asking for it (python: Python's 0.005)",
    ),
):
    settings.register(
        settings.Setting(
            _env,
            _parse,
            _accepts,
            None,
            settings.OnBad.WARN,
            _doc,
            group="process",
            default_text=_default,
            bad_text="warning, Python's own kept",
        )
    )


class ProcessSettings(NamedTuple):
    """What :func:`tune_process` applied (None: Python's setting kept)."""

    gc_threshold: tuple[int, ...] | None
    switch_interval: float | None


def tune_process(environ: Mapping[str, str] | None = None) -> ProcessSettings:
    """Apply both interpreter settings the ``orchestrace`` command runs with."""
    return ProcessSettings(tune_gc(environ), tune_switch_interval(environ))
