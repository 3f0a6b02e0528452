"""Every reliance on what the OpenTelemetry SDK, its OTLP exporters and the anthropic SDK
do not promise: private names, containers' attributes, model internals.

Each assumption is one name here, and ``tests/test_compat.py`` has a test per assumption
that fails loudly (naming it) when a release changes it; ``.ci/newest`` runs the suite
against the newest releases, so such a release is seen the day it ships. Where an
assumption no longer holds at run time, the code that uses it falls back to the SDK's
public behaviour (slower, or counting less), never to an error.

Tested with the versions ``pyproject.toml`` allows (lower bounds: the versions tested).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.util import BoundedList
    from opentelemetry.util.types import Attributes

T = TypeVar("T")

# --- anthropic ----------------------------------------------------------------------------


def given_fields(model: object) -> Mapping[str, Any]:
    """The fields an anthropic (pydantic) model was built with, as given.

    Assumption: the anthropic SDK builds responses with ``model_construct`` (no
    validation), so the fields present in the body are in the instance's ``__dict__`` as
    they were sent (a number where a block was expected, a negative count); a field the
    body lacks is not there, or None. Anything without a ``__dict__`` (a number in a
    content list) has no fields.
    """
    fields = getattr(model, "__dict__", None)
    return fields if isinstance(fields, dict) else {}


# --- OTLP/HTTP span exporter (opentelemetry-exporter-otlp-proto-http) ---------------------

#: Attributes of the SDK's ``OTLPSpanExporter`` (HTTP) the fast path uses: the session
#: wrapper whose ``export(bytes)`` answers ``.success`` / ``.error`` / ``.status_code``, the
#: exporter's own metrics (``export_operation(count)``), its size limit and shutdown flag.
HTTP_EXPORTER_INTERNALS: Final = ("_client", "_metrics", "_max_request_size", "_shutdown")


@functools.cache
def http_size_check() -> tuple[type[Exception], Callable[[bytes, int], bool]] | None:
    """The SDK's private request-size check of the HTTP exporter: the error it records and
    the test (``_common.RequestPayloadTooLargeError``, ``_common._is_request_too_large``);
    None if this SDK has neither (the fast path is then off)."""
    try:
        from opentelemetry.exporter.otlp.proto.http._common import (
            RequestPayloadTooLargeError,
            _is_request_too_large,
        )
    except ImportError:
        return None
    return RequestPayloadTooLargeError, _is_request_too_large


def http_fast_path(exporter: object) -> bool:
    """Whether the HTTP exporter has everything the fast path relies on."""
    return http_size_check() is not None and all(
        hasattr(exporter, name) for name in HTTP_EXPORTER_INTERNALS
    )


# --- OTLP/gRPC span exporter (opentelemetry-exporter-otlp-proto-grpc) ---------------------

#: The method of the SDK's gRPC ``OTLPSpanExporter`` that turns a batch into the request
#: it sends; overriding it swaps the encoder and keeps the rest of ``export``.
GRPC_TRANSLATE: Final = "_translate_data"


# --- the batch span processor (opentelemetry-sdk) -----------------------------------------

#: The methods of the batch processor's metrics hook: ``drop_items`` is called only when
#: it discards spans, ``finish_items`` once per batch.
DROP_HOOK_METHODS: Final = ("drop_items", "finish_items", "register_queue_size")


def batch_drop_hook(processor: object) -> Any | None:
    """The hook a ``BatchSpanProcessor`` reports its drops to
    (``processor._batch_processor._metrics``), or None if this SDK has none."""
    batch = getattr(processor, "_batch_processor", None)
    hook = getattr(batch, "_metrics", None)
    if batch is None or not all(callable(getattr(hook, m, None)) for m in DROP_HOOK_METHODS):
        return None
    return hook


def replace_batch_drop_hook(processor: object, hook: object) -> None:
    """Put ``hook`` where :func:`batch_drop_hook` found the SDK's."""
    processor._batch_processor._metrics = hook  # type: ignore[attr-defined]


# --- span containers (opentelemetry-api / -sdk) -------------------------------------------


def counted_attributes(attributes: dict[str, Any], dropped: int) -> Attributes:
    """``attributes`` carrying a dropped-attributes count, for a ``ReadableSpan``, an
    ``Event`` or a ``Link`` built anew (the exporters send that count).

    Assumption: ``BoundedAttributes.dropped`` is a settable attribute that the span, event
    and link report as ``dropped_attributes``.
    """
    if not dropped:
        return attributes
    from opentelemetry.attributes import BoundedAttributes

    bounded = BoundedAttributes(attributes=attributes)
    bounded.dropped = dropped
    return bounded


def counted_list(items: Iterable[T], dropped: int) -> BoundedList[T]:
    """``items`` as the SDK's ``BoundedList`` with a dropped count, for a ``ReadableSpan``'s
    events or links built anew.

    Assumption: ``BoundedList(None)`` is unbounded, ``BoundedList.dropped`` is settable, and
    ``ReadableSpan`` reports it as ``dropped_events`` / ``dropped_links``.
    """
    from opentelemetry.sdk.util import BoundedList

    bounded: BoundedList[T] = BoundedList(None)
    bounded.extend(list(items))
    bounded.dropped = dropped
    return bounded


# --- metric exporters (opentelemetry-sdk) -------------------------------------------------


def metric_preferences(exporter: object) -> tuple[Any, Any]:
    """A metric exporter's preferred temporality and aggregation, as given to its
    constructor (``_preferred_temporality``, ``_preferred_aggregation``; None if absent)."""
    return (
        getattr(exporter, "_preferred_temporality", None),
        getattr(exporter, "_preferred_aggregation", None),
    )
