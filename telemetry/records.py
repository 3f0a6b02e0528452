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
import binascii
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import Attributes

#: An attribute value: str, bool, int, float, or a tuple of those.
AttrValue: TypeAlias = str | bool | int | float | tuple["AttrValue", ...]

#: OTLP ``SpanKind`` enum values (their index) and names (``SPAN_KIND_`` + name).
_KINDS: Final = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
#: OTLP ``Status.code`` enum values (their index) and names (``STATUS_CODE_`` + name).
_STATUS: Final = ("UNSET", "OK", "ERROR")

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
def _json_native(value: object) -> object:
    """``value`` as plain JSON data (for mapping attributes, which become JSON text)."""
    if value is None or value.__class__ in _PLAIN:
        return value
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
    if isinstance(value, Mapping):
        return {str(k): _json_native(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_json_native(v) for v in value]
    return str(value)


def _kvlist_text(mapping: object) -> str:
    return json.dumps(mapping, ensure_ascii=False, separators=(",", ":"))


def _sdk_value(value: object) -> AttrValue | None:
    """One SDK attribute value as an :data:`AttrValue` (``None`` if empty)."""
    if value is None:
        return None
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
    if isinstance(value, Mapping):
        return _kvlist_text(_json_native(value))
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


# --- OTLP/JSON ---------------------------------------------------------------------------
def _json_any(value: Mapping[str, Any]) -> object:
    """An OTLP/JSON ``AnyValue`` as plain JSON data (inside key/value lists)."""
    for key, inner in value.items():
        if key == "stringValue":
            return str(inner)
        if key == "intValue":
            return int(inner)
        if key == "boolValue":
            return bool(inner)
        if key == "doubleValue":
            return float(inner)
        if key == "arrayValue":
            return [_json_any(v) for v in (inner or {}).get("values") or ()]
        if key == "kvlistValue":
            return {
                str(kv["key"]): _json_any(kv.get("value") or {})
                for kv in (inner or {}).get("values") or ()
            }
        if key == "bytesValue":
            return str(inner)
    return None


def _otlp_value(value: Mapping[str, Any]) -> AttrValue | None:
    """An OTLP/JSON ``AnyValue`` as an :data:`AttrValue` (``None`` if empty)."""
    for key, inner in value.items():
        if key == "stringValue":
            return str(inner)
        if key == "intValue":  # a decimal string per the spec; some producers write numbers
            return int(inner)
        if key == "boolValue":
            return bool(inner)
        if key == "doubleValue":  # a number, or "NaN" / "Infinity" / "-Infinity"
            return float(inner)
        if key == "arrayValue":
            items = (_otlp_value(v) for v in (inner or {}).get("values") or ())
            return tuple("" if v is None else v for v in items)
        if key == "kvlistValue":
            return _kvlist_text(_json_any(value))
        if key == "bytesValue":
            return str(inner)
    return None


def _otlp_attributes(items: Iterable[Mapping[str, Any]] | None) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    if items:
        for kv in items:
            value = kv.get("value")
            if not value:
                continue
            text = value.get("stringValue")  # by far the most common: no call needed
            if text.__class__ is str:
                out[kv["key"]] = text
                continue
            converted = _otlp_value(value)
            if converted is not None:
                out[kv["key"]] = converted
    return out


def _otlp_id(value: Any, digits: int) -> str:
    """A trace or span id as lowercase hex; protobuf's base64 form is accepted too."""
    if not value:
        return ""
    text = str(value)
    if len(text) != digits:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) * 2 == digits:
            return raw.hex()
    return text.lower()


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> str:
    if isinstance(value, int):
        return names[value] if 0 <= value < len(names) else names[0]
    if isinstance(value, str):
        name = value.removeprefix(prefix)
        if name in names:
            return name
        if name.isdigit():
            return _enum(int(name), names, prefix)
    return names[0]


def _enum_table(names: tuple[str, ...], prefix: str) -> dict[object, str]:
    """Every spelling of the enum: its number, its OTLP name, the bare name."""
    table: dict[object, str] = {}
    for number, name in enumerate(names):
        table[number] = table[prefix + name] = table[name] = name
    return table


_KIND_OF: Final = _enum_table(_KINDS, "SPAN_KIND_")
_KIND_OF[0] = _KIND_OF["SPAN_KIND_UNSPECIFIED"] = _KIND_OF["UNSPECIFIED"] = "INTERNAL"
_STATUS_OF: Final = _enum_table(_STATUS, "STATUS_CODE_")


def _otlp_span(s: Mapping[str, Any], resource: Mapping[str, AttrValue]) -> SpanRecord:
    status = s.get("status") or {}
    kind = s.get("kind", 0)
    code = status.get("code", 0)
    parent = s.get("parentSpanId")
    links = s.get("links")
    events = s.get("events")
    return SpanRecord(
        trace_id=_otlp_id(s.get("traceId"), 32),
        span_id=_otlp_id(s.get("spanId"), 16),
        parent_span_id=_otlp_id(parent, 16) if parent else None,
        name=str(s.get("name", "")),
        kind=_KIND_OF.get(kind) or _KIND_OF[_enum(kind, _KINDS, "SPAN_KIND_")],
        start_ns=int(s.get("startTimeUnixNano") or 0),
        end_ns=int(s.get("endTimeUnixNano") or 0),
        status=_STATUS_OF.get(code) or _enum(code, _STATUS, "STATUS_CODE_"),
        status_message=str(status.get("message") or ""),
        attributes=_otlp_attributes(s.get("attributes")),
        links=tuple(
            [
                LinkRecord(
                    _otlp_id(link.get("traceId"), 32),
                    _otlp_id(link.get("spanId"), 16),
                    _otlp_attributes(link.get("attributes")),
                )
                for link in links
            ]
        )
        if links
        else (),
        events=tuple(
            [
                EventRecord(
                    str(e.get("name", "")),
                    int(e.get("timeUnixNano") or 0),
                    _otlp_attributes(e.get("attributes")),
                )
                for e in events
            ]
        )
        if events
        else (),
        resource=resource,
    )


def iter_otlp_json(resource_spans: Iterable[Mapping[str, Any]]) -> Iterator[SpanRecord]:
    """The spans of OTLP/JSON ``resourceSpans`` entries.

    Accepts what the OTLP/JSON spec defines (hex ids, integer enums, 64-bit integers as
    decimal strings) and the common variations: enum names (``"SPAN_KIND_CLIENT"``,
    ``"STATUS_CODE_ERROR"``), numbers for 64-bit integers, base64 ids (protobuf's generic
    JSON mapping) and the pre-1.0 ``instrumentationLibrarySpans`` key.
    """
    for rs in resource_spans:
        resource: Mapping[str, AttrValue] = MappingProxyType(
            _otlp_attributes((rs.get("resource") or {}).get("attributes"))
        )
        scopes = rs.get("scopeSpans")
        if scopes is None:
            scopes = rs.get("instrumentationLibrarySpans")
        for ss in scopes or ():
            for s in ss.get("spans") or ():
                yield _otlp_span(s, resource)


def _document_resource_spans(document: Any) -> Any:
    """The ``resourceSpans`` list of one OTLP/JSON document (bare or Jaeger-wrapped)."""
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, found {type(document).__name__}")
    if "resourceSpans" in document:
        return document["resourceSpans"] or ()
    result = document.get("result")
    if isinstance(result, dict):
        return result.get("resourceSpans") or ()
    return ()  # another signal's line (resourceMetrics, resourceLogs) in a shared file


def iter_spans_file(path: str | os.PathLike[str]) -> Iterator[SpanRecord]:
    """Stream the spans of an OTLP/JSON-lines file, one line at a time.

    Each line is one ``{"resourceSpans": [...]}`` object (the Collector's ``file`` exporter
    and :class:`telemetry.export.OTLPJsonLinesExporter` write this; a Jaeger
    ``{"result": {...}}`` object is accepted too). Memory is bounded by the longest line,
    not the file. Blank lines are skipped; a malformed line raises :class:`ValueError`
    naming the file and the line number.
    """
    name = os.fspath(path)
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records = list(iter_otlp_json(_document_resource_spans(json.loads(line))))
            except (ValueError, AttributeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{name!s}: line {number}: malformed OTLP/JSON line: {exc}"
                ) from exc
            yield from records
