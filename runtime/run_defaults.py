"""The run defaults the command line needs before anything heavy is imported.

``orchestrace summary`` must start fast: it never needs the anthropic SDK (about 1.5 s to
import here). The parser takes its choices and defaults from this module; the modules that
implement them re-export and check them (see ``runtime.scenarios`` and ``runtime.models``).
"""

from __future__ import annotations

from typing import Final

from telemetry import settings

DEFAULT_MODEL: Final = settings.MODEL.default
MODEL_ENV: Final = settings.MODEL.name

#: The built-in runs; ``runtime.scenarios.SCENARIOS`` maps each to its Team.
SCENARIO_NAMES: Final = ("spawn", "team")

#: The spans file a run writes (the command's default; ``orchestrace.run``'s when it sets
#: telemetry up itself).
DEFAULT_SPANS_FILE: Final = "orchestrace-spans.jsonl"


def default_model() -> str:
    """The model named by ``ORCHESTRACE_MODEL``, else the default model."""
    return settings.MODEL.get()
