"""``python -m orchestrace ...``: the ``orchestrace`` command, where its script is not on PATH."""

import sys

from runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
