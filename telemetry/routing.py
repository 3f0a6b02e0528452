"""Hand the spans of one trace to a processor, on a tracer provider orchestrace does not own.

When an application already has a TracerProvider, ``orchestrace.run`` records into it and
still needs the run's spans for its summary. Adding a processor per run would grow the
provider's list forever, so one :class:`TraceRouter` is added per provider, once, and each
run registers for its own trace id while it lasts.
"""

from __future__ import annotations

import threading
import weakref

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import TracerProvider

_ROUTERS: weakref.WeakKeyDictionary[SdkTracerProvider, TraceRouter] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class TraceRouter(SpanProcessor):
    """Passes each ended span to the processor registered for its trace id, if any."""

    def __init__(self) -> None:
        self._routes: dict[int, SpanProcessor] = {}

    def route(self, trace_id: int, processor: SpanProcessor) -> None:
        """Send the spans of ``trace_id`` that end from now on to ``processor``."""
        self._routes[trace_id] = processor

    def unroute(self, trace_id: int) -> None:
        """Stop routing ``trace_id``."""
        self._routes.pop(trace_id, None)

    def on_end(self, span: ReadableSpan) -> None:
        """Hand ``span`` to its trace's processor."""
        context = span.context
        processor = self._routes.get(context.trace_id) if context is not None else None
        if processor is not None:
            processor.on_end(span)


def router_for(provider: TracerProvider) -> TraceRouter | None:
    """The provider's router (added on first use); None for a provider that is not the
    SDK's (a no-op provider records nothing to route)."""
    if not isinstance(provider, SdkTracerProvider):
        return None
    with _LOCK:
        router = _ROUTERS.get(provider)
        if router is None:
            router = _ROUTERS[provider] = TraceRouter()
            provider.add_span_processor(router)
    return router
