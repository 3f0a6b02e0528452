"""Benchmarks: what tracing costs and how far orchestrace scales, measured side by side.

Run ``python -m bench --size small|full`` (``tiny`` is for the test that keeps it working).
Sections: tracing overhead (latency-bound and CPU-bound workloads under telemetry off,
OTLP/HTTP, and OTLP + spans file, repetitions interleaved, medians), scale (a thousand
concurrent agents), export throughput, ``orchestrace summary`` and ``orchestrace profile``
over a large spans file, and the hub on NATS JetStream next to the in-process hub (on a
``nats-server -js`` the section starts; skipped without one).
"""
