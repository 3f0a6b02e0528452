"""Shared fixtures."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator

import opentelemetry.metrics._internal as otel_metrics
import pytest
import structlog
from nats_broker import Broker, running_broker
from opentelemetry import trace
from opentelemetry.util._once import Once
from support import Traced


@pytest.fixture(autouse=True)
def _no_global_provider_outlives_a_test() -> Iterator[None]:
    """An in-process ``orchestrace run`` sets the global providers (once per process, as the
    command does); put back what was there, so that a later test of ``orchestrace.run``
    sees the process as a fresh application would, whatever ran before it."""
    tracer, meter = trace._TRACER_PROVIDER, otel_metrics._METER_PROVIDER
    yield
    if trace._TRACER_PROVIDER is not tracer:
        trace._TRACER_PROVIDER = tracer
        if tracer is None:
            trace._TRACER_PROVIDER_SET_ONCE = Once()
    if otel_metrics._METER_PROVIDER is not meter:
        otel_metrics._METER_PROVIDER = meter
        if meter is None:
            otel_metrics._METER_PROVIDER_SET_ONCE = Once()


@pytest.fixture
def traced() -> Iterator[Traced]:
    """Providers that collect a run's spans, metrics, live lines and summary in memory."""
    t = Traced()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


@pytest.fixture
def command_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An offline environment, and the process as it was once the command has run."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    # The command sets the global providers (once per process): give it a fresh slot and
    # put back whatever was there.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(otel_metrics, "_METER_PROVIDER", None)
    monkeypatch.setattr(otel_metrics, "_METER_PROVIDER_SET_ONCE", Once())
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog_configured, structlog_config = structlog.is_configured(), structlog.get_config()
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    path, modules = list(sys.path), set(sys.modules)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    if structlog_configured:
        structlog.configure(**structlog_config)
    else:
        structlog.reset_defaults()
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(interval)
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real ``nats-server -js`` shared by one test module (skips without a server)."""
    with running_broker(tmp_path_factory.mktemp("nats")) as running:
        yield running


@pytest.fixture
def collect_garbage() -> Iterator[None]:
    """Collect garbage after the test, so an object it left unclosed is reported in it."""
    yield
    gc.collect()
