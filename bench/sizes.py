"""How big each part of the benchmark is at each ``--size``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.nats_hub import NatsRun
from bench.pipeline import Config
from bench.workloads import Exchange, Ring

#: Scripted model latency of the latency-bound workload, and of the scale ring's turns.
LATENCY_BOUND_S: Final = 0.020
SCALE_LATENCY_S: Final = 0.010


@dataclass(frozen=True)
class Size:
    """One size: repetitions and the dimensions of every workload."""

    name: str
    repetitions: int
    warmup: bool
    latency_bound: Exchange
    cpu_bound: Exchange
    scale: Ring
    scale_configs: tuple[Config, ...]
    floor_spans: int
    step_costs: int
    throughput_spans: int
    summary_spans: int
    #: The run each chunk of the generated spans file copies (peers, messages each).
    summary_template: tuple[int, int]
    #: Spans in the file ``orchestrace profile`` reads (made like the summary's).
    profile_spans: int
    #: The in-process hub next to the hub on NATS (bench/nats_hub.py).
    nats: NatsRun


SIZES: Final = {
    "tiny": Size(
        name="tiny",
        repetitions=1,
        warmup=False,
        latency_bound=Exchange("latency-bound", helpers=3, rounds=1, latency=LATENCY_BOUND_S),
        cpu_bound=Exchange("cpu-bound", helpers=5, rounds=1, latency=0.0),
        scale=Ring("scale", agents=20, messages=5, latency=SCALE_LATENCY_S),
        scale_configs=(Config.OTLP_FILE,),
        floor_spans=2_000,
        step_costs=500,
        throughput_spans=4_000,
        summary_spans=10_000,
        summary_template=(5, 20),
        profile_spans=5_000,
        nats=NatsRun(messages=5, repetitions=1, cpu_rounds=10_000),
    ),
    "small": Size(
        name="small",
        repetitions=3,
        warmup=True,
        latency_bound=Exchange("latency-bound", helpers=10, rounds=2, latency=LATENCY_BOUND_S),
        cpu_bound=Exchange("cpu-bound", helpers=100, rounds=1, latency=0.0),
        scale=Ring("scale", agents=200, messages=10, latency=SCALE_LATENCY_S),
        scale_configs=(Config.OFF, Config.OTLP_FILE),
        floor_spans=20_000,
        step_costs=4_000,
        throughput_spans=40_000,
        summary_spans=100_000,
        summary_template=(10, 100),
        profile_spans=100_000,
        nats=NatsRun(messages=100, repetitions=3, cpu_rounds=300_000),
    ),
    "full": Size(
        name="full",
        repetitions=5,
        warmup=True,
        latency_bound=Exchange("latency-bound", helpers=10, rounds=5, latency=LATENCY_BOUND_S),
        cpu_bound=Exchange("cpu-bound", helpers=100, rounds=3, latency=0.0),
        scale=Ring("scale", agents=1_000, messages=100, latency=SCALE_LATENCY_S),
        scale_configs=(Config.OFF, Config.OTLP_FILE),
        floor_spans=50_000,
        step_costs=5_000,
        throughput_spans=100_000,
        summary_spans=1_000_000,
        summary_template=(10, 100),
        # the 1,000-agent scale run's file holds ~400,000 spans
        profile_spans=400_000,
        nats=NatsRun(messages=200, repetitions=5, cpu_rounds=300_000),
    ),
}
