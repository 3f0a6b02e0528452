"""OTLP protobuf encoding of finished spans, written straight to the wire format.

The SDK's exporters build an ``ExportTraceServiceRequest`` message object by object
(``opentelemetry-exporter-otlp-proto-common``), spending CPU on the export thread while it
holds the GIL, so the agents' event loop waits for it.
:func:`encode_spans_protobuf` writes the same request as bytes, tag by tag, caching the
encoded attribute keys: the output is byte for byte what ``encode_spans(spans)
.SerializeToString()`` gives (the tests compare the two over generated spans), at a
fraction of the cost (``bench/`` measures both).

Anything the fast path does not handle exactly like the SDK (an attribute value of a type
the SDK rejects, an integer out of int64 range) raises :class:`Unencodable`;
:class:`FastEncoder` (used by :mod:`telemetry.otlp_grpc` and :mod:`telemetry.otlp_http`)
then hands the batch to the SDK's own encoder, so the result is always the SDK's.

Field numbers are those of ``opentelemetry/proto/trace/v1/trace.proto``,
``common/v1/common.proto`` and ``resource/v1/resource.proto``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import Attributes

from telemetry.otlp_json import INT64_MAX, INT64_MIN

__all__ = ["FastEncoder", "Unencodable", "encode_spans_protobuf"]

log = logging.getLogger(__name__)


class Unencodable(ValueError):
    """A span holds something only the SDK's encoder knows how to treat."""


_FIXED64: Final = struct.Struct("<Q").pack
_FIXED32: Final = struct.Struct("<I").pack
_DOUBLE: Final = struct.Struct("<d").pack
_SMALL: Final = tuple(bytes((n,)) for n in range(128))
_UINT64_MASK: Final = (1 << 64) - 1

# Span flags (trace.proto SpanFlags): the parent's is_remote is known, and whether it is set.
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200
_LOCAL_FLAGS: Final = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE)  # field 16, fixed32
_REMOTE_FLAGS: Final = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)
_LINK_LOCAL_FLAGS: Final = b"\x35" + _FIXED32(_HAS_IS_REMOTE)  # Link field 6, fixed32
_LINK_REMOTE_FLAGS: Final = b"\x35" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)

#: Encoded ``KeyValue.key`` fields by attribute key; cleared when it grows past the bound.
_KEYS: dict[str, bytes] = {}
_KEYS_BOUND: Final = 4096
#: Encoded ``KeyValue`` bodies by (key, string value): agent names, operations, models
#: repeat on every span. Values longer than this are encoded each time; the cache is
#: cleared when it grows past its bound.
_STRING_PAIRS: dict[tuple[str, str], bytes] = {}
_CACHED_VALUE_CHARS: Final = 64
_PAIRS_BOUND: Final = 16384


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: ``tag``, the length of ``body``, ``body``."""
    size = len(body)
    return tag + (_SMALL[size] if size < 0x80 else _varint(size)) + body


def _text(tag: bytes, value: str) -> bytes:
    return _field(tag, value.encode("utf-8"))


def _int(value: int) -> bytes:
    if not INT64_MIN <= value <= INT64_MAX:
        raise Unencodable(f"integer {value} is outside int64")
    return _varint(value & _UINT64_MASK)


def _any_value(value: object) -> bytes:
    """The body of an ``AnyValue`` (its oneof field is always written, even when zero)."""
    kind = type(value)
    if kind is str:
        return _text(b"\x0a", value)  # type: ignore[arg-type]
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + _int(value)  # type: ignore[arg-type]
    if kind is float:
        return b"\x21" + _DOUBLE(value)
    if value is None:
        return b""
    if kind is tuple or kind is list:
        return _field(
            b"\x2a",
            b"".join(_field(b"\x0a", _any_value(v)) for v in value),  # type: ignore[attr-defined]
        )
    if kind is bytes:
        return _field(b"\x3a", value)  # type: ignore[arg-type]
    # Subclasses, other sequences and mappings: rare; the SDK's encoder decides.
    raise Unencodable(f"attribute value of type {kind.__name__}")


def _key(key: str) -> bytes:
    encoded = _KEYS.get(key)
    if encoded is None:
        if type(key) is not str:
            raise Unencodable(f"attribute key of type {type(key).__name__}")
        if len(_KEYS) >= _KEYS_BOUND:
            _KEYS.clear()
        encoded = _KEYS[key] = _text(b"\x0a", key) if key else b""
    return encoded


def _key_value(key: str, value: object) -> bytes:
    """The body of a ``KeyValue``; those with short string values are cached."""
    if type(value) is str and len(value) <= _CACHED_VALUE_CHARS:
        cached = _STRING_PAIRS.get((key, value))
        if cached is None:
            if len(_STRING_PAIRS) >= _PAIRS_BOUND:
                _STRING_PAIRS.clear()
            cached = _STRING_PAIRS[(key, value)] = _key(key) + _field(b"\x12", _any_value(value))
        return cached
    return _key(key) + _field(b"\x12", _any_value(value))


def _attributes(tag: bytes, attributes: Attributes | Mapping[str, object]) -> bytes:
    """Every ``KeyValue`` of ``attributes`` as repeated field ``tag``."""
    if not attributes:
        return b""
    return b"".join(_field(tag, _key_value(key, value)) for key, value in attributes.items())


def _span(span: ReadableSpan) -> bytes:
    ctx = span.context
    if ctx is None:
        raise Unencodable("span without a context")
    parts = [
        b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
    ]
    state = ctx.trace_state
    if state:
        parts.append(_text(b"\x1a", state.to_header()))
    parent = span.parent
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_text(b"\x2a", span.name))
    parts.append(b"\x30" + _SMALL[span.kind.value + 1])  # proto kinds start at UNSPECIFIED=0
    if span.start_time:
        parts.append(b"\x39" + _FIXED64(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _FIXED64(span.end_time))
    parts.append(_attributes(b"\x4a", span.attributes))
    if span.dropped_attributes:
        parts.append(b"\x50" + _varint(span.dropped_attributes))
    for event in span.events:
        body = b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _text(b"\x12", event.name)
        body += _attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        parts.append(_field(b"\x5a", body))
    if span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    for link in span.links:
        linked = link.context
        body = (
            b"\x0a\x10"
            + linked.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + linked.span_id.to_bytes(8, "big")
            + _attributes(b"\x22", link.attributes)
        )
        if link.dropped_attributes:
            body += b"\x28" + _varint(link.dropped_attributes)
        parts.append(
            _field(b"\x6a", body + (_LINK_REMOTE_FLAGS if linked.is_remote else _LINK_LOCAL_FLAGS))
        )
    if span.dropped_links:
        parts.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    body = _text(b"\x12", status.description) if status.description else b""
    if status.status_code.value:
        body += b"\x18" + _SMALL[status.status_code.value]
    parts.append(_field(b"\x7a", body))
    parts.append(_REMOTE_FLAGS if parent is not None and parent.is_remote else _LOCAL_FLAGS)
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    body = _text(b"\x0a", scope.name) if scope.name else b""
    if scope.version:
        body += _text(b"\x12", scope.version)
    return body + _attributes(b"\x1a", scope.attributes)


def encode_spans_protobuf(spans: Sequence[ReadableSpan]) -> bytes:
    """``spans`` as a serialized ``ExportTraceServiceRequest``, grouped like the SDK does.

    Raises :class:`Unencodable` for anything the SDK's encoder must treat (see above).
    """
    groups: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        by_scope = groups.get(span.resource)
        if by_scope is None:
            by_scope = groups[span.resource] = {}
        scope = span.instrumentation_scope or None
        encoded = by_scope.get(scope)
        if encoded is None:
            encoded = by_scope[scope] = []
        encoded.append(_field(b"\x12", _span(span)))
    out = []
    for resource, by_scope in groups.items():
        body = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        for scope, encoded in by_scope.items():
            scope_spans = _field(b"\x0a", _scope(scope)) + b"".join(encoded)
            if scope is not None and scope.schema_url:
                scope_spans += _text(b"\x1a", scope.schema_url)
            body += _field(b"\x12", scope_spans)
        if resource.schema_url:
            body += _text(b"\x1a", resource.schema_url)
        out.append(_field(b"\x0a", body))
    return b"".join(out)


class FastEncoder:
    """Encodes batches with :func:`encode_spans_protobuf`; counts the ones it hands to the
    SDK's encoder instead and logs the first."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes | None:
        """The encoded request, or None: the SDK's encoder must take this batch."""
        try:
            return encode_spans_protobuf(spans)
        except Exception as exc:  # any surprise: the SDK's encoder decides
            self._fell_back(exc)
            return None

    def _fell_back(self, exc: Exception) -> None:
        self.count += 1
        if self.count == 1:
            log.warning(
                "%s: a span batch was encoded by the SDK's encoder instead (%s: %s); "
                "further fallbacks are counted, not logged",
                self.label,
                type(exc).__name__,
                exc,
            )
