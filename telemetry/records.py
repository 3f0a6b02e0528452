"""A neutral span record, and readers that produce it from SDK spans and OTLP/JSON.

The summary and the live view read :class:`SpanRecord` only, whatever the source: a live
run's ``ReadableSpan`` (:func:`from_readable_span`), a spans file — one OTLP/JSON
``ExportTraceServiceRequest`` per line, the Collector's ``file``-exporter format
(:func:`iter_spans_file`) — or Jaeger's v3 API, which returns the same OTLP/JSON under
``{"result": {"resourceSpans": [...]}}`` (:func:`iter_otlp_json`).

Attribute values are normalised identically by both readers, so a span read back from a
file compares equal to the record made from the live span:

* ``str``, ``bool``, ``int`` and ``float`` stay as they are (subclasses such as enums
  become the plain base type);
* arrays become tuples (an empty element inside an array becomes ``""``);
* bytes become their base64 text (protobuf's JSON form of ``bytesValue``);
* a key/value list (``kvlistValue``, or a mapping attribute) becomes compact JSON text;
* an attribute whose value is empty (``None`` in the SDK, ``{}`` in OTLP/JSON) is omitted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import Attributes

#: An attribute value: str, bool, int, float, or a tuple of those.
AttrValue: TypeAlias = str | bool | int | float | tuple["AttrValue", ...]


_KIND_NAME: Final[dict[SpanKind, str]] = {kind: kind.name for kind in SpanKind}
_STATUS_NAME: Final[dict[StatusCode, str]] = {code: code.name for code in StatusCode}
_PLAIN: Final = frozenset({str, int, float, bool})
_EMPTY: Final[Mapping[str, AttrValue]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A span link: the linked span's ids (lowercase hex) and the link's attributes."""

    trace_id: str
    span_id: str
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A span event: its name, time (ns since the epoch) and attributes."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span, independent of where it was read from.

    Ids are lowercase hex (32 digits for traces, 16 for spans); ``parent_span_id`` is
    ``None`` for a root span. ``kind`` is ``INTERNAL``, ``SERVER``, ``CLIENT``,
    ``PRODUCER`` or ``CONSUMER``; ``status`` is ``UNSET``, ``OK`` or ``ERROR``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: Mapping[str, AttrValue]
    links: tuple[LinkRecord, ...]
    events: tuple[EventRecord, ...]
    resource: Mapping[str, AttrValue]


class SpanFacts(NamedTuple):
    """The fields of a span the summary reads: what the spans-file scan yields, and what
    the live summary keeps of each finished span.

    A named tuple, not a :class:`SpanRecord`: the frozen thirteen-field record is several
    times costlier to build per span. The fields mean the same as the record's.
    """

    trace_id: str
    start_ns: int
    end_ns: int
    status: str
    attributes: Mapping[str, AttrValue]
    #: As written in the file (hex or base64): the key that counts a span read twice once.
    span_id: str = ""


class ReadNotes:
    """What a reader of spans left out, for the warnings the command prints.

    Given to a reader, it makes it lenient where a broken file is still worth reading: a
    last line cut short by a killed writer is skipped (its number kept in
    :attr:`cut_line`), and a span read again (a file concatenated with itself, a collector
    that retried a batch) is counted once (:attr:`duplicates`). Without one, a cut line is
    an error.
    """

    def __init__(self) -> None:
        self.cut_line: int | None = None
        self.duplicates = 0

    def warnings(self) -> list[str]:
        """One sentence per thing left out."""
        found = []
        if self.cut_line is not None:
            found.append(
                f"the last line ({self.cut_line}) was cut short (was its writer killed?); "
                "read without it"
            )
        if self.duplicates:
            found.append(
                f"{self.duplicates} span(s) appeared more than once (a file concatenated "
                "with itself, or a collector that retried); each was counted once"
            )
        return found


# --- SDK spans ---------------------------------------------------------------------------
def _scalar(value: object) -> AttrValue | None:
    """A bool, str, int or float (or a subclass) as the plain type, bytes as base64 text;
    None for anything else."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return None


def _json_native(value: object) -> object:
    """``value`` as plain JSON data (for mapping attributes, which become JSON text)."""
    if value is None or value.__class__ in _PLAIN:
        return value
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, Mapping):
        return {str(k): _json_native(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_json_native(v) for v in value]
    return str(value)


def kvlist_text(mapping: object) -> str:
    return json.dumps(mapping, ensure_ascii=False, separators=(",", ":"))


def _sdk_value(value: object) -> AttrValue | None:
    """One SDK attribute value as an :data:`AttrValue` (``None`` if empty)."""
    if value is None:
        return None
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, Mapping):
        return kvlist_text(_json_native(value))
    if isinstance(value, Sequence):
        items = (_sdk_value(v) for v in value)
        return tuple("" if v is None else v for v in items)
    return str(value)


def _sdk_attributes(attributes: Attributes) -> Mapping[str, AttrValue]:
    """A private copy of SDK attributes, normalised only when a value is not plain."""
    if not attributes:
        return {}
    # ``copy()`` is a C-level dict copy for the SDK's ``BoundedAttributes`` (and, through
    # ``MappingProxyType.copy``, for ``ReadableSpan.attributes``): much faster than ``dict()``.
    out: Any = None
    copier = getattr(attributes, "copy", None)
    if copier is not None:
        try:
            out = copier()
        except AttributeError:  # a proxy over a mapping without ``copy``
            out = None
    if type(out) is not dict:
        out = dict(attributes)
    plain: dict[str, AttrValue] = out
    if _PLAIN.issuperset(map(type, plain.values())):
        return plain
    empty: list[str] = []
    for key, value in plain.items():
        cls = value.__class__
        if cls in _PLAIN or (cls is tuple and _PLAIN.issuperset(map(type, value))):  # type: ignore[arg-type]
            continue
        converted = _sdk_value(value)
        if converted is None:
            empty.append(key)
        else:
            plain[key] = converted  # same keys: replacing values while iterating is safe
    for key in empty:
        del plain[key]
    return plain


# Resource attributes are the same object for every span of a provider: convert once.
_resource_cache: dict[int, tuple[Resource, Mapping[str, AttrValue]]] = {}


def _resource_attributes(resource: Resource | None) -> Mapping[str, AttrValue]:
    if resource is None:
        return _EMPTY
    cached = _resource_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    converted: Mapping[str, AttrValue] = MappingProxyType(
        dict(_sdk_attributes(resource.attributes))
    )
    if len(_resource_cache) >= 64:
        _resource_cache.clear()
    _resource_cache[id(resource)] = (resource, converted)
    return converted


def facts_of_readable_span(span: ReadableSpan) -> SpanFacts:
    """What the summary reads of a finished SDK span (the live summary's per-span cost)."""
    ctx = span.context
    return SpanFacts(
        ctx.trace_id.to_bytes(16, "big").hex() if ctx is not None else "",
        span.start_time or 0,
        span.end_time or 0,
        _STATUS_NAME[span.status.status_code],
        _sdk_attributes(span.attributes),
    )


def from_readable_span(span: ReadableSpan) -> SpanRecord:
    """Convert a finished SDK span, every field: its :func:`facts_of_readable_span` and
    the rest."""
    facts = facts_of_readable_span(span)
    ctx = span.context
    parent = span.parent
    events = span.events
    links = span.links
    # Positional arguments and ``int.to_bytes().hex()``: measurably cheaper.
    return SpanRecord(
        facts.trace_id,
        ctx.span_id.to_bytes(8, "big").hex() if ctx is not None else "",
        parent.span_id.to_bytes(8, "big").hex() if parent is not None else None,
        span.name,
        _KIND_NAME[span.kind],
        facts.start_ns,
        facts.end_ns,
        facts.status,
        span.status.description or "",
        facts.attributes,
        tuple(
            [
                LinkRecord(
                    link.context.trace_id.to_bytes(16, "big").hex(),
                    link.context.span_id.to_bytes(8, "big").hex(),
                    _sdk_attributes(link.attributes),
                )
                for link in links
            ]
        )
        if links
        else (),
        tuple([EventRecord(e.name, e.timestamp, _sdk_attributes(e.attributes)) for e in events])
        if events
        else (),
        _resource_attributes(span.resource),
    )
