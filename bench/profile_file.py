"""The profile benchmark: ``orchestrace profile`` (text, then ``--json``) over a generated
spans file of any size.

The file is made as the summary benchmark's is (:func:`bench.summary_file.generate_spans_file`:
one run's trace, a real ring run repeated under new span ids and agent names): at 400,000
spans it holds about 1,300 agents of ~300 spans each, the shape of the 1,000-agent scale
run's file. Each command runs in a child process behind the same launcher, which measures
its wall time and peak RSS (the largest of the command and the processes it starts: the
reader of the file's second part, the forked writer of half a long JSON list). Its output
goes to a file, as ``orchestrace profile FILE > report`` would, and is checked: the agents
the text report shows, and the agents and spans ``--json`` lists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.receiver import REPO, child_env
from bench.summary_file import _LAUNCHER

#: In ``--json``: one line per span (the span list's last key before ``attributes``) and one
#: per agent (only agent entries have a role), at the indentation ``json.dump`` gives them.
_JSON_SPAN: Final = b'\n      "on_critical_path": '
_JSON_AGENT: Final = b'\n      "role": '
#: The text report's timeline: one line per agent under this heading, then a blank line.
_TIMELINE: Final = re.compile(rb"^Each agent's time.*\n((?:  .*\n)*)", re.MULTILINE)


@dataclass(frozen=True)
class ProfileTiming:
    """One ``orchestrace profile`` over a generated file: size, time, peak RSS, what it
    reported."""

    output: str  # "text" or "json"
    spans: int
    file_mb: float
    generate_s: float
    seconds: float
    peak_rss_mb: float
    exit_code: int
    output_mb: float
    #: Agents in the text report's timeline, or in ``--json``'s agent list.
    agents_reported: int | None
    #: Spans in ``--json``'s span list (None for text).
    spans_reported: int | None
    error: str = ""


def time_profile(path: Path, spans: int, generate_s: float, *, as_json: bool) -> ProfileTiming:
    """Run ``orchestrace profile path`` (``--json`` with ``as_json``) in a child process and
    measure it."""
    command = [sys.executable, "-c", _LAUNCHER, *_profile_command(path, as_json)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        subprocess.run(command, cwd=REPO, env=child_env(), stdout=out, stderr=err, check=True)
        out.seek(0)
        report = out.read()
        err.seek(0)
        error, _, measured = err.read().decode("utf-8", "replace").rpartition("bench-launcher ")
    exit_code, seconds, peak_kib = json.loads(measured)
    if as_json:
        agents: int | None = report.count(_JSON_AGENT)
        spans_reported: int | None = report.count(_JSON_SPAN)
    else:
        match = _TIMELINE.search(report)
        agents = match.group(1).count(b"\n") if match else None
        spans_reported = None
    return ProfileTiming(
        output="json" if as_json else "text",
        spans=spans,
        file_mb=path.stat().st_size / 1e6,
        generate_s=generate_s,
        seconds=seconds,
        peak_rss_mb=peak_kib / 1024,
        exit_code=exit_code,
        output_mb=len(report) / 1e6,
        agents_reported=agents,
        spans_reported=spans_reported,
        error=error.strip()[-2000:],
    )


def _profile_command(path: Path, as_json: bool) -> list[str]:
    flags = ["--json"] if as_json else []
    script = shutil.which("orchestrace", path=str(Path(sys.executable).parent))
    if script is not None:
        return [script, "profile", str(path), *flags]
    return [sys.executable, "-m", "runtime.cli", "profile", str(path), *flags]
