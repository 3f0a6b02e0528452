"""The instrument table: every declared histogram and counter exists once per provider."""

from __future__ import annotations

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from telemetry.metrics import DeferredHistogram, Instruments, Tally, _Histogram, _Tally


def declared() -> dict[str, _Histogram | _Tally]:
    return {
        name: spec
        for name, spec in vars(Instruments).items()
        if isinstance(spec, _Histogram | _Tally)
    }


def test_each_declaration_is_an_instrument_of_its_kind_with_a_unique_name() -> None:
    specs = declared()
    assert len(specs) >= 20
    assert len({s.name for s in specs.values()}) == len(specs)
    instruments = Instruments(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    for attr, spec in specs.items():
        made = getattr(instruments, attr)
        if isinstance(spec, _Histogram):
            assert isinstance(made, DeferredHistogram), attr  # an SDK provider: deferred
            assert made.histogram.name == spec.name
        else:
            assert isinstance(made, Tally), attr
            assert made.keys == spec.keys


def test_a_no_op_provider_records_histograms_directly() -> None:
    instruments = Instruments(NoOpMeterProvider())
    assert instruments.pending is None
    assert not isinstance(instruments.tool_duration, DeferredHistogram)


def test_every_declared_instrument_is_exported() -> None:
    """A declared counter or histogram that records once reaches the reader, by its name."""
    reader = InMemoryMetricReader()
    instruments = Instruments(MeterProvider(metric_readers=[reader]))
    for attr, spec in declared().items():
        made = getattr(instruments, attr)
        if isinstance(spec, _Histogram):
            made.record(1.0)
        else:
            made.add(1, *("x" for _ in spec.keys))
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {s.name for s in declared().values()} <= names
