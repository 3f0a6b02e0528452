"""The summary of a run in an OTLP/JSON-lines spans file: one streaming pass, or several
processes over the parts of a big file, merged in file order."""

from __future__ import annotations

import os

from telemetry.records import ReadNotes
from telemetry.scan import parallel_parts, reader_pool, scan_spans_file
from telemetry.summary import SUMMARY_KEYS, PartsOverlapError, SummaryBuilder, summarize


def _scan_part(path: str, start: int, end: int) -> SummaryBuilder:
    return SummaryBuilder().add_all(scan_spans_file(path, SUMMARY_KEYS, start=start, end=end))


def summarize_file(
    path: str | os.PathLike[str],
    trace_id: str | None = None,
    *,
    workers: int | None = None,
    notes: ReadNotes | None = None,
) -> str:
    """The rendered summary of one trace of an OTLP/JSON-lines spans file (``-``: stdin).

    One streaming pass that decodes only the attributes the summary reads. A regular file of
    :data:`telemetry.scan.PARALLEL_BYTES` or more is split at line boundaries and its parts are
    read by ``workers`` processes (default: one per available CPU, at most 4); their aggregates
    are merged in file order, so the result is the same as one pass. With ``notes``, a last line
    cut short is skipped rather than an error, and what was left out (that line, spans read
    twice) is counted there.
    """
    name = os.fspath(path)
    parts = parallel_parts(name, workers)

    def one_pass() -> str:
        return summarize(scan_spans_file(name, SUMMARY_KEYS, notes=notes), trace_id, notes)

    if len(parts) < 2:
        return one_pass()
    try:
        with reader_pool(len(parts)) as pool:
            starts, ends = [a for a, _ in parts], [b for _, b in parts]
            builders = list(pool.map(_scan_part, [name] * len(parts), starts, ends))
        merged = builders[0]
        for later in builders[1:]:
            merged.merge(later)
    except (ValueError, PartsOverlapError):
        # A malformed (or cut) line: read again in one pass, whose error names the line
        # number; the same span in two parts: one pass counts it once.
        return one_pass()
    if notes is not None:
        notes.duplicates += merged.duplicates
    return merged.summary(trace_id).render()
