"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import Traced


@pytest.fixture
def traced() -> Iterator[Traced]:
    """Providers that collect a run's spans, metrics, live lines and summary in memory."""
    t = Traced()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()
