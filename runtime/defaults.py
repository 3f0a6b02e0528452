"""Names and defaults the command line needs before anything heavy is imported.

``orchestrace summary`` must start fast: it never needs the anthropic SDK (about 1.5 s to
import here). The parser takes its choices and defaults from this module; the modules that
implement them re-export and check them (see ``runtime.scenarios`` and ``runtime.models``).
"""

from __future__ import annotations

import os
from typing import Final

DEFAULT_MODEL: Final = "claude-opus-4-8"
MODEL_ENV: Final = "ORCHESTRACE_MODEL"

#: The seed's two runs; ``runtime.scenarios.SCENARIOS`` maps each to its function.
SCENARIO_NAMES: Final = ("spawn", "team")


def default_model() -> str:
    """The model named by ``ORCHESTRACE_MODEL``, else the seed's default."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL
