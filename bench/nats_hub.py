"""The in-process hub next to the hub on NATS JetStream, on this machine.

``python -m bench.nats_hub --hub nats://127.0.0.1:4222 [--out FILE]`` (start a broker
first: ``nats-server -js -sd /tmp/nats``) measures

* **messaging**: 100 agents in pairs, each sending ``--messages`` messages to its partner
  while reading its own, send → receive latency from the envelope's ``sent_at`` to the
  drain that hands it to the agent (all at once: queueing included); then one pair
  exchanging the same number one at a time (one message in flight: the hop itself).
  In-process: one hub in one process. NATS: two
  processes of 50 agents each, every message crossing from one to the other through the
  broker (publish acknowledged by the broker, fetched, acknowledged after the drain);
* **a CPU-bound run**: ``bench/cpu_team.py`` (a lead and eight members, each burning CPU
  in a tool) in one process, and split over a lead and two ``orchestrace worker``
  processes pinning four members each: the run command's wall time, workers already up.

Timings only; nothing is asserted. Results go to stdout and, as JSON, to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

from runtime.hub import Envelope, Hub

AGENTS: Final = 100
ROOT: Final = Path(__file__).resolve().parent.parent
CPU_TEAM: Final = str(ROOT / "bench" / "cpu_team.py")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _pair_traffic(
    hub: Hub, mine: list[str], partner: dict[str, str], count: int
) -> list[float]:
    """Each of ``mine`` sends ``count`` messages to its partner and reads ``count``;
    the send → receive latencies (seconds) of what ``mine`` received."""
    latencies: list[float] = []

    async def agent(name: str) -> None:
        async def sender() -> None:
            for n in range(count):
                await hub.send(
                    Envelope(f"{name}-{n}", name, partner[name], "x" * 100, time.time_ns())
                )
                await asyncio.sleep(0)  # let the readers in, as agents between calls would

        async def reader() -> None:
            got = 0
            while got < count:
                await hub.wait(name, 120)
                envelopes = hub.drain(name)
                now = time.time_ns()
                latencies.extend((now - e.sent_at_ns) / 1e9 for e in envelopes)
                got += len(envelopes)

        await asyncio.gather(sender(), reader())

    await asyncio.gather(*(agent(n) for n in mine))
    return latencies


async def _ping_pong(hub: Hub, me: str, peer: str, count: int, serve: bool) -> list[float]:
    """One message in flight at a time: ``me`` sends and waits for the answer (or, with
    ``serve``, answers each message); the one-way latencies ``me`` measured. A pair of
    its own: the pairs' readers must not take its messages."""
    latencies: list[float] = []
    for n in range(count):
        if not serve:
            await hub.send(Envelope(f"{me}-ping-{n}", me, peer, "ping", time.time_ns()))
        got: list[Envelope] = []
        while not got:
            await hub.wait(me, 120)
            got = hub.drain(me)
        now = time.time_ns()
        latencies.extend((now - e.sent_at_ns) / 1e9 for e in got)
        if serve:
            await hub.send(Envelope(f"{me}-pong-{n}", me, peer, "pong", time.time_ns()))
    return latencies


def _pairs() -> tuple[list[str], list[str], dict[str, str]]:
    left = [f"a{i}" for i in range(AGENTS // 2)]
    right = [f"b{i}" for i in range(AGENTS // 2)]
    partner = dict(zip(left, right, strict=True)) | dict(zip(right, left, strict=True))
    return left, right, partner


async def in_process(count: int) -> dict[str, Any]:
    """Messaging through the in-process hub."""
    left, right, partner = _pairs()
    hub = Hub()
    for name in [*left, *right, "pinger", "ponger"]:
        hub.register(name)
    started = time.perf_counter()
    latencies = await _pair_traffic(hub, left + right, partner, count)
    wall = time.perf_counter() - started
    figures = _figures(latencies, wall)
    pings = await asyncio.gather(
        _ping_pong(hub, "pinger", "ponger", count, serve=False),
        _ping_pong(hub, "ponger", "pinger", count, serve=True),
    )
    figures["one_in_flight_p50_ms"] = _percentile([*pings[0], *pings[1]], 0.5) * 1000
    return figures


def _figures(latencies: list[float], wall: float) -> dict[str, Any]:
    return {
        "messages": len(latencies),
        "wall_s": wall,
        "messages_per_s": len(latencies) / wall,
        "latency_p50_ms": _percentile(latencies, 0.5) * 1000,
        "latency_p99_ms": _percentile(latencies, 0.99) * 1000,
    }


async def nats_side(url: str, run_id: str, side: str, count: int, lead: bool) -> dict[str, Any]:
    """One process of the NATS measurement: host one side's 50 agents."""
    from runtime.nats_hub import NatsHub, connect

    left, right, partner = _pairs()
    mine = left if side == "a" else right
    client = await connect(url, name=f"bench-{side}")
    hub = NatsHub(client, run_id, host=f"bench-{side}", lead=lead)
    try:
        if lead:
            await hub.open()
        else:
            while True:  # the other side creates the run's stream and registry
                try:
                    await hub.open()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
        me, peer = ("pinger", "ponger") if side == "a" else ("ponger", "pinger")
        for name in [*mine, me]:
            hub.register(name)
        await hub.knows({*left, *right, me, peer})
        started = time.perf_counter()
        latencies = await _pair_traffic(hub, mine, partner, count)
        wall = time.perf_counter() - started
        pings = await _ping_pong(hub, me, peer, count, serve=side == "b")
        await hub.flush()
    finally:
        await hub.close()
        await client.close()
    return {"latencies": latencies, "wall_s": wall, "pings": pings}


def across_processes(url: str, count: int) -> dict[str, Any]:
    """Messaging through the broker between two processes of 50 agents each."""
    run_id = uuid.uuid4().hex
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.nats_hub",
                "--hub",
                url,
                "--side",
                side,
                "--run-id",
                run_id,
                "--messages",
                str(count),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for side in ("a", "b")
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"bench side exited {proc.returncode}")
        results.append(json.loads(out))
    latencies = [x for r in results for x in r["latencies"]]
    figures = _figures(latencies, max(r["wall_s"] for r in results))
    pings = [x for r in results for x in r["pings"]]
    figures["one_in_flight_p50_ms"] = _percentile(pings, 0.5) * 1000
    return figures


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OTEL_"))}
    return env | {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}


def cpu_run(url: str | None) -> float:
    """Wall time of ``orchestrace run bench/cpu_team.py`` (split over two workers with
    ``url``), workers already up."""
    cli = [sys.executable, "-m", "runtime.cli"]
    pace = ["--latency", "0", "--time-scale", "0", "--spans-file", ""]
    workers = []
    try:
        if url is not None:
            for members in ("m1,m2,m3,m4", "m5,m6,m7,m8"):
                proc = subprocess.Popen(
                    [*cli, "worker", "--hub", url, CPU_TEAM, "--agents", members, "--once", *pace],
                    cwd=ROOT,
                    env=_env(),
                    stdout=subprocess.PIPE,
                    text=True,
                )
                workers.append(proc)
                assert proc.stdout is not None
                proc.stdout.readline()  # ready
        hub = ["--hub", url] if url is not None else []
        started = time.perf_counter()
        subprocess.run(
            [*cli, "run", *hub, CPU_TEAM, "--quiet", *pace],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=600,
        )
        wall = time.perf_counter() - started
        for proc in workers:
            proc.communicate(timeout=600)
        return wall
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nats_hub", description=__doc__)
    parser.add_argument("--hub", required=True, help="a running nats-server -js")
    parser.add_argument("--messages", type=int, default=100, help="per agent (100)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians (3)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--side", choices=["a", "b"], help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side is not None:
        result = asyncio.run(
            nats_side(args.hub, args.run_id, args.side, args.messages, lead=args.side == "a")
        )
        json.dump(result, sys.stdout)
        return
    runs: dict[str, list[dict[str, Any]]] = {"in-process": [], "nats": []}
    cpu: dict[str, list[float]] = {"one process": [], "lead + 2 workers": []}
    for _ in range(args.repeat):
        runs["in-process"].append(asyncio.run(in_process(args.messages)))
        runs["nats"].append(across_processes(args.hub, args.messages))
        cpu["one process"].append(cpu_run(None))
        cpu["lead + 2 workers"].append(cpu_run(args.hub))
    report: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "agents": AGENTS,
        "messages_per_agent": args.messages,
        "messaging": {
            hub: {k: statistics.median(r[k] for r in results) for k in results[0]}
            for hub, results in runs.items()
        },
        "cpu_run_wall_s": {k: statistics.median(v) for k, v in cpu.items()},
        "cpu_run_walls_s": cpu,
    }
    lines = [
        f"{AGENTS} agents in pairs, {args.messages} messages each way per pair; "
        f"medians of {args.repeat}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        f"{'hub':<12} {'messages/s':>11} {'p50 ms':>8} {'p99 ms':>8}  one in flight: p50 ms",
    ]
    for hub, m in report["messaging"].items():
        lines.append(
            f"{hub:<12} {m['messages_per_s']:>11,.0f} {m['latency_p50_ms']:>8.2f} "
            f"{m['latency_p99_ms']:>8.2f}  {m['one_in_flight_p50_ms']:.2f}"
        )
    lines.append("CPU-bound run (bench/cpu_team.py), wall time of the run command:")
    for how, wall in report["cpu_run_wall_s"].items():
        lines.append(f"  {how:<18} {wall:6.2f} s")
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
