"""The ``orchestrace`` console script.

Importing the command takes a moment (structlog, OpenTelemetry): Ctrl-C then ends it
quietly with 130, as it does once the command runs (see :func:`runtime.cli.main`), instead
of a traceback from inside an import.
"""

from __future__ import annotations

import signal


def main() -> int:
    """Import the command and run it; 130 if interrupted while importing (or between the
    two, before the command's own handling begins)."""
    try:
        from runtime.cli import main as command

        return command()
    except KeyboardInterrupt:
        return 128 + int(signal.SIGINT)
