"""Scale: a thousand concurrent agents in a ring, each sending a hundred messages.

Each scale run is its own child process (``python -m bench.scale``), so its peak RSS is
that run's alone. The child runs the :class:`~bench.workloads.Ring` workload under one
configuration, exporting to the parent's receiver, and prints its :class:`RunResult` and
peak RSS as JSON; the parent then asks the receiver what arrived and reads the delivery
latencies off the exported receive spans' links (``orchestrace.message.wait_seconds``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.pipeline import Config
from bench.receiver import REPO, ReceiverProcess, child_env
from bench.workloads import Ring, RunResult, run_workload
from runtime.process import tune_process
from telemetry.logs import configure_logging


@dataclass
class ScaleResult:
    """One scale run: the run's own figures, its peak RSS, and delivery latency."""

    run: RunResult
    peak_rss_mb: float
    messages_expected: int
    delivery_p50_s: float | None
    delivery_p99_s: float | None
    delivery_max_s: float | None


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_scale(workload: Ring, config: Config, receiver: ReceiverProcess) -> ScaleResult:
    """Run ``workload`` under ``config`` in a child process; check it at the receiver."""
    receiver.clear()
    command = [
        sys.executable,
        "-m",
        "bench.scale",
        f"--agents={workload.agents}",
        f"--messages={workload.messages}",
        f"--latency={workload.latency}",
        f"--config={config}",
        f"--endpoint={receiver.endpoint}",
    ]
    done = subprocess.run(
        command, cwd=REPO, env=child_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scale run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    reply = json.loads(done.stdout)
    run = RunResult(**reply["run"])
    waits: list[float] = []
    if config is not Config.OFF:
        stats = receiver.stats()
        run.record_receiver(stats)
        waits = stats.waits
    return ScaleResult(
        run=run,
        peak_rss_mb=reply["peak_rss_mb"],
        messages_expected=workload.expected_messages,
        delivery_p50_s=percentile(waits, 0.50),
        delivery_p99_s=percentile(waits, 0.99),
        delivery_max_s=max(waits) if waits else None,
    )


def peak_rss_mb() -> float:
    """This process's peak RSS since it started its program.

    ``VmHWM`` is the high-water mark of this program's own memory; ``ru_maxrss`` would also
    carry the parent's mark into a (v)forked child at exec, so it is only the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """The child: run one scale workload, print the result and peak RSS as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--latency", type=float, required=True)
    parser.add_argument("--config", type=Config, required=True)
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()
    tune_process()  # the interpreter settings the orchestrace command runs with
    configure_logging("ERROR")
    workload = Ring("scale", args.agents, args.messages, args.latency)
    with tempfile.TemporaryDirectory(prefix="orchestrace-bench-") as workdir:
        result = run_workload(workload, args.config, args.endpoint, Path(workdir))
    json.dump({"run": asdict(result), "peak_rss_mb": peak_rss_mb()}, sys.stdout)


if __name__ == "__main__":
    main()
