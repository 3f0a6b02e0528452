"""Fast, streaming reads of OTLP/JSON spans files for the summary.

:func:`telemetry.records.iter_spans_file` turns every span into a full
:class:`~telemetry.records.SpanRecord` (links, events, every attribute, the resource): right
for tests and tools, but a million-span file then costs a million dicts of dicts. The
summary needs a dozen attributes and the times of each span, so :func:`scan_spans_file`
decodes each line with `msgspec <https://jcristharif.com/msgspec/>`_ into typed structs that
declare only those fields (the decoder skips everything else without building it) and
keeps only the attributes asked for.

The result is the same as :func:`~telemetry.records.iter_spans_file` restricted to
``keys``: the same OTLP/JSON variations are accepted (enum names, numbers or strings for
64-bit integers, base64 ids, Jaeger's ``{"result": ...}`` wrapper, lines of other signals,
the pre-1.0 ``instrumentationLibrarySpans`` key), and a line the typed decoder does not
accept is read again by the general parser. (Only for malformed values, such as an
``AnyValue`` with two kinds set, can the two readers differ; and a malformed value of an
attribute the summary does not read is skipped here, never decoded.)

Structs are declared ``gc=False`` (they hold no reference cycles, and a million-span file
makes tens of millions of them) and attribute values stay raw JSON until a wanted key is
found (``python -m bench --only summary`` measures the whole read).
"""

from __future__ import annotations

import itertools
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import BinaryIO, Final, Generic, TypeVar

import msgspec

from telemetry.otlp_json import (
    KIND_OF,
    KINDS,
    STATUS_OF,
    STATUSES,
    document_resource_spans,
    enum_name,
    iter_otlp_json,
    otlp_id,
    otlp_value,
)
from telemetry.records import AttrValue, LinkRecord, ReadNotes, SpanFacts

_ABSENT: Final = msgspec.Raw()

#: The file name that means standard input (``orchestrace summary -``).
STDIN: Final = "-"


@contextmanager
def open_spans(path: str | os.PathLike[str], start: int = 0) -> Iterator[BinaryIO]:
    """``path`` opened for reading lines from byte ``start``; ``-`` is standard input.

    A pipe (``/dev/stdin``, ``-``) cannot seek: it is read from its start.
    """
    if os.fspath(path) == STDIN:
        yield sys.stdin.buffer
        return
    with open(path, "rb") as handle:
        if start:
            handle.seek(start)
        yield handle


def ignore_interrupts() -> None:
    """A reader's child process leaves Ctrl-C to its parent (which ends quietly): no
    traceback from each child."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def splittable_size(path: str | os.PathLike[str]) -> int:
    """The size of ``path`` if it is a regular file (which can be read in parts), else 0."""
    if os.fspath(path) == STDIN:
        return 0
    info = os.stat(path)
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _cut_short(line: bytes, number: int, notes: ReadNotes | None) -> bool:
    """Whether a line that failed to decode is the file's last one, cut by a killed writer
    (no newline at its end), to be skipped and noted."""
    if notes is None or line.endswith(b"\n"):
        return False
    notes.cut_line = number
    return True


class _AnyValue(msgspec.Struct, frozen=True, gc=False):
    stringValue: str | None = None
    intValue: int | str | None = None
    boolValue: bool | None = None
    doubleValue: float | str | None = None
    arrayValue: msgspec.Raw = _ABSENT
    kvlistValue: msgspec.Raw = _ABSENT
    bytesValue: str | None = None


class _KeyValue(msgspec.Struct, frozen=True, gc=False):
    key: str
    #: Left undecoded: only the few attributes the summary reads are decoded (by
    #: :data:`_VALUE_DECODER`), the dozen others per span are skipped without building them.
    value: msgspec.Raw = _ABSENT


class _Status(msgspec.Struct, frozen=True, gc=False):
    code: int | str | None = None


class _Span(msgspec.Struct, frozen=True, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    startTimeUnixNano: int | str | None = None
    endTimeUnixNano: int | str | None = None
    status: _Status | None = None
    attributes: list[_KeyValue] | None = None


#: The span struct a document is decoded into: each read declares only the fields it uses
#: (msgspec skips the others without building them).
S = TypeVar("S")


class _ScopeSpans(msgspec.Struct, Generic[S], frozen=True, gc=False):
    spans: list[S] | None = None


class _ResourceSpans(msgspec.Struct, Generic[S], frozen=True, gc=False):
    scopeSpans: list[_ScopeSpans[S]] | None = None
    instrumentationLibrarySpans: list[_ScopeSpans[S]] | None = None


class _Traces(msgspec.Struct, Generic[S], frozen=True, gc=False):
    resourceSpans: list[_ResourceSpans[S]] | None = None


class _Document(msgspec.Struct, Generic[S], frozen=True, gc=False):
    """One line of the Collector's file format, or one answer of Jaeger's v3 API
    (``{"result": ...}``)."""

    resourceSpans: list[_ResourceSpans[S]] | None = None
    result: _Traces[S] | None = None


def _spans_of(document: _Document[S]) -> Iterator[S]:
    """Every span of ``document``, under either key the format has had for scopes."""
    resource_spans = document.resourceSpans
    if resource_spans is None and document.result is not None:
        resource_spans = document.result.resourceSpans
    for rs in resource_spans or ():
        scopes = rs.scopeSpans
        if scopes is None:
            scopes = rs.instrumentationLibrarySpans
        for ss in scopes or ():
            yield from ss.spans or ()


_DECODER: Final = msgspec.json.Decoder(_Document[_Span])
_VALUE_DECODER: Final = msgspec.json.Decoder(_AnyValue | None)


def _value(value: _AnyValue) -> AttrValue | None:
    """The same conversion as :func:`telemetry.records._otlp_value`."""
    if value.stringValue is not None:
        return value.stringValue
    if value.intValue is not None:
        return int(value.intValue)
    if value.boolValue is not None:
        return value.boolValue
    if value.doubleValue is not None:
        return float(value.doubleValue)
    if value.arrayValue:
        return otlp_value({"arrayValue": msgspec.json.decode(value.arrayValue)})
    if value.kvlistValue:
        return otlp_value({"kvlistValue": msgspec.json.decode(value.kvlistValue)})
    if value.bytesValue is not None:
        return value.bytesValue
    return None


class _Reader:
    """Turns decoded structs into lean span records; caches the normalized trace ids."""

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys
        self.trace_ids: dict[str | None, str] = {}

    def trace_id(self, raw: str | None) -> str:
        found = self.trace_ids.get(raw)
        if found is None:
            found = self.trace_ids[raw] = otlp_id(raw, 32)
        return found

    def spans(self, document: _Document[_Span]) -> Iterator[SpanFacts]:
        keys = self.keys
        for s in _spans_of(document):
            attributes: dict[str, AttrValue] = {}
            for kv in s.attributes or ():
                if kv.key in keys and kv.value:
                    value = _VALUE_DECODER.decode(kv.value)
                    converted = None if value is None else _value(value)
                    if converted is not None:
                        attributes[kv.key] = converted
            code = s.status.code if s.status is not None else None
            yield SpanFacts(
                self.trace_id(s.traceId),
                int(s.startTimeUnixNano or 0),
                int(s.endTimeUnixNano or 0),
                STATUS_OF.get(code or 0) or enum_name(code, STATUSES, "STATUS_CODE_"),
                attributes,
                s.spanId or "",
            )


def _general(line: bytes, keys: frozenset[str]) -> list[SpanFacts]:
    """A line the typed decoder refused, read by the general parser (same result)."""
    return [
        SpanFacts(
            r.trace_id,
            r.start_ns,
            r.end_ns,
            r.status,
            {k: v for k, v in r.attributes.items() if k in keys},
            r.span_id,
        )
        for r in iter_otlp_json(document_resource_spans(msgspec.json.decode(line)))
    ]


def scan_spans_file(
    path: str | os.PathLike[str],
    keys: frozenset[str],
    *,
    start: int = 0,
    end: int | None = None,
    notes: ReadNotes | None = None,
) -> Iterator[SpanFacts]:
    """Stream the spans of an OTLP/JSON-lines file with only the attributes in ``keys``.

    Each :class:`SpanFacts` carries trace id, start and end time, status and those
    attributes — what the summary reads, and nothing it does not. Memory is bounded by the
    longest line. ``start`` and ``end`` restrict the scan to the lines that begin in that
    byte range (``start`` must be the beginning of a line; see :func:`split_lines`). A
    malformed line raises :class:`ValueError` naming the file and the line (counted from
    ``start``) — except, with ``notes``, a last line cut short (see
    :class:`~telemetry.records.ReadNotes`). ``-`` reads standard input.
    """
    reader = _Reader(keys)

    def typed(line: bytes) -> list[SpanFacts]:
        return list(reader.spans(_DECODER.decode(line)))

    return _scan_lines(path, typed, lambda line: _general(line, keys), start, end, notes)


R = TypeVar("R")


def _scan_lines(
    path: str | os.PathLike[str],
    typed: Callable[[bytes], list[R]],
    general: Callable[[bytes], list[R]],
    start: int,
    end: int | None,
    notes: ReadNotes | None,
) -> Iterator[R]:
    """The records of each line beginning in ``[start, end)``: from ``typed`` (the fast
    decode of the usual shape), else ``general`` (any shape the format allows); errors as
    :func:`scan_spans_file` says."""
    name = os.fspath(path)
    position = start
    with open_spans(path, start) as handle:
        for number, line in enumerate(handle, 1):
            if end is not None and position >= end:
                break
            position += len(line)
            if not line.strip():
                continue
            try:
                try:
                    records = typed(line)
                except (msgspec.ValidationError, ValueError, TypeError):
                    records = general(line)
            except (msgspec.DecodeError, ValueError, AttributeError, KeyError, TypeError) as exc:
                if _cut_short(line, number, notes):
                    break
                raise ValueError(
                    f"{name!s}: line {number}: malformed OTLP/JSON line: {exc}"
                ) from exc
            yield from records


#: Files at least this big are read by several processes at once (one per CPU, at most 4).
PARALLEL_BYTES: Final = 32 * 1024 * 1024


def cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_parts(path: str, workers: int | None = None) -> list[tuple[int, int]]:
    """The line-aligned parts in which ``path`` is read by ``workers`` processes (default:
    one per available CPU, at most 4, for a regular file of :data:`PARALLEL_BYTES` or more;
    else one). Fewer than two parts: read the file in one pass."""
    if workers is None:
        workers = min(4, cpus()) if splittable_size(path) >= PARALLEL_BYTES else 1
    return split_lines(path, workers) if workers > 1 else []


def reader_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` reader processes: spawned (safe whatever threads the caller
    runs; the children import little), each leaving Ctrl-C to the parent."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=ignore_interrupts)


def split_lines(path: str | os.PathLike[str], parts: int) -> list[tuple[int, int]]:
    """Up to ``parts`` byte ranges that cover the file, each starting at a line's start."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as handle:
        for i in range(1, parts):
            handle.seek(max(cuts[-1], size * i // parts))
            handle.readline()  # to the start of the next line
            cuts.append(min(handle.tell(), size))
    cuts.append(size)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


# --- the profile's read: ids, names, kinds and links too ----------------------------------
class TreeFacts(msgspec.Struct, frozen=True, gc=False):
    """The fields of a span the profile reads: what :func:`scan_span_tree` yields.

    A :class:`~telemetry.records.SpanRecord` without its events, status message and
    resource, and with only the attributes (of the span and of its links) asked for; the
    fields mean the same as the record's, so code that reads those fields takes either. A
    struct, not a record or a named tuple: it is made ten times sooner.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    attributes: Mapping[str, AttrValue]
    links: tuple[LinkRecord, ...]


class _TreeKeyValue(msgspec.Struct, frozen=True, gc=False):
    key: str
    #: Decoded with the span: the profile reads about half of a span's attributes, and one
    #: decode of the whole line is then cheaper than a second decode per value wanted.
    value: _AnyValue | None = None


class _Link(msgspec.Struct, frozen=True, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    attributes: list[_TreeKeyValue] | None = None


class _TreeSpan(msgspec.Struct, frozen=True, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    parentSpanId: str | None = None
    name: str = ""
    kind: int | str | None = 0
    startTimeUnixNano: int | str | None = None
    endTimeUnixNano: int | str | None = None
    status: _Status | None = None
    attributes: list[_TreeKeyValue] | None = None
    links: list[_Link] | None = None


_TREE_DECODER: Final = msgspec.json.Decoder(_Document[_TreeSpan])


class _TreeReader(_Reader):
    """Turns decoded structs into :class:`TreeFacts`.

    Names, attribute keys and text values repeat from span to span (a run has a few dozen
    span names and agents): each is kept once, so a big file's records share them.
    """

    def __init__(
        self, keys: frozenset[str], link_keys: frozenset[str], trace_id: str | None
    ) -> None:
        super().__init__(keys)
        self.span_keys = {k: k for k in keys}
        self.link_keys = {k: k for k in link_keys}
        self.wanted = trace_id
        self.texts: dict[str, str] = {}

    def attributes(
        self, items: list[_TreeKeyValue] | None, keys: dict[str, str]
    ) -> dict[str, AttrValue]:
        attributes: dict[str, AttrValue] = {}
        if items:
            texts = self.texts
            for kv in items:
                key = keys.get(kv.key)
                value = kv.value
                if key is None or value is None:
                    continue
                text = value.stringValue  # by far the most common: no call needed
                if text is not None:
                    attributes[key] = texts.setdefault(text, text)
                else:
                    converted = _value(value)
                    if converted is not None:
                        attributes[key] = converted
        return attributes

    def tree_spans(self, document: _Document[_TreeSpan]) -> list[TreeFacts]:
        """The spans of one decoded line (the per-span work inlined: it is most of a read)."""
        out: list[TreeFacts] = []
        trace_ids, wanted, texts = self.trace_ids, self.wanted, self.texts
        span_keys = self.span_keys
        for s in _spans_of(document):
            trace = trace_ids.get(s.traceId) or self.trace_id(s.traceId)
            if wanted is not None and trace != wanted:
                continue
            attributes: dict[str, AttrValue] = {}
            for kv in s.attributes or ():
                key = span_keys.get(kv.key)
                value = kv.value
                if key is None or value is None:
                    continue
                text = value.stringValue
                if text is not None:
                    attributes[key] = texts.setdefault(text, text)
                else:
                    converted = _value(value)
                    if converted is not None:
                        attributes[key] = converted
            span_id = s.spanId
            parent = s.parentSpanId
            code = s.status.code if s.status is not None else None
            kind = s.kind
            links = s.links
            out.append(
                TreeFacts(
                    trace,
                    span_id.lower()
                    if span_id is not None and len(span_id) == 16
                    else otlp_id(span_id, 16),
                    self.parent_id(parent) if parent else None,
                    texts.setdefault(s.name, s.name),
                    KIND_OF.get(kind) or KIND_OF[enum_name(kind, KINDS, "SPAN_KIND_")],
                    int(s.startTimeUnixNano or 0),
                    int(s.endTimeUnixNano or 0),
                    STATUS_OF.get(code or 0) or enum_name(code, STATUSES, "STATUS_CODE_"),
                    attributes,
                    self.links(links) if links else (),
                )
            )
        return out

    def parent_id(self, raw: str) -> str:
        """A parent span id: many spans share one, so one copy of each is kept."""
        parent = raw.lower() if len(raw) == 16 else otlp_id(raw, 16)
        return self.texts.setdefault(parent, parent)

    def links(self, links: list[_Link]) -> tuple[LinkRecord, ...]:
        return tuple(
            [
                LinkRecord(
                    self.trace_id(link.traceId),
                    otlp_id(link.spanId, 16),
                    self.attributes(link.attributes, self.link_keys),
                )
                for link in links
            ]
        )

    def general(self, line: bytes) -> list[TreeFacts]:
        """A line the typed decoder refused, read by the general parser (same result)."""
        keys, link_keys, wanted = self.span_keys, self.link_keys, self.wanted
        return [
            TreeFacts(
                r.trace_id,
                r.span_id,
                r.parent_span_id,
                r.name,
                r.kind,
                r.start_ns,
                r.end_ns,
                r.status,
                {k: v for k, v in r.attributes.items() if k in keys},
                tuple(
                    LinkRecord(
                        link.trace_id,
                        link.span_id,
                        {k: v for k, v in link.attributes.items() if k in link_keys},
                    )
                    for link in r.links
                ),
            )
            for r in iter_otlp_json(document_resource_spans(msgspec.json.decode(line)))
            if wanted is None or r.trace_id == wanted
        ]


def scan_span_tree(
    path: str | os.PathLike[str],
    keys: frozenset[str],
    link_keys: frozenset[str] = frozenset(),
    *,
    trace_id: str | None = None,
    start: int = 0,
    end: int | None = None,
    notes: ReadNotes | None = None,
) -> Iterator[TreeFacts]:
    """Stream the spans of an OTLP/JSON-lines file as :class:`TreeFacts` (for the profile).

    The same spans as :func:`~telemetry.records.iter_spans_file`, without their events,
    status messages and resources, with only the span attributes in ``keys`` and the link
    attributes in ``link_keys``, and with ``trace_id`` only that trace's spans. ``start``,
    ``end``, ``notes``, memory and errors as for :func:`scan_spans_file`.
    """
    reader = _TreeReader(keys, link_keys, trace_id)

    def typed(line: bytes) -> list[TreeFacts]:
        return reader.tree_spans(_TREE_DECODER.decode(line))

    return _scan_lines(path, typed, reader.general, start, end, notes)
