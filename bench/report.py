"""Aggregating repetitions into medians, judging figures, rendering the table and the JSON."""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from bench.costs import SpanCost
from bench.nats_hub import NatsResult
from bench.nats_hub import lines as nats_lines
from bench.pipeline import Config
from bench.profile_file import ProfileTiming
from bench.scale import ScaleResult
from bench.summary_file import SummaryTiming
from bench.throughput import EncodingCost, Throughput
from bench.workloads import RunResult

#: The issue's bars: a figure past one of these is reported as a finding.
MAX_LATENCY_RATIO: Final = 1.03
MAX_FLOOR_MULTIPLE: Final = 2.0
MAX_SUMMARY_S: Final = 10.0
MAX_PROFILE_S: Final = 10.0
MAX_PROFILE_RSS_MB: Final = 1024.0


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "anthropic"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
        # the interpreter's, as runtime.process.tune_process set them (as the CLI does)
        "gc_threshold": list(gc.get_threshold()),
        "switch_interval_s": sys.getswitchinterval(),
    }


@dataclass
class ConfigFigures:
    """One configuration of one workload: medians over the repetitions, and ratios to off."""

    config: str
    runs: int
    wall_s: float
    cpu_s: float
    loop_cpu_s: float
    flush_s: float
    model_calls: int
    spans: int
    spans_exported: int | None
    spans_dropped: int
    wall_ratio: float
    cpu_ratio: float
    telemetry_cpu_us_per_step: float | None
    telemetry_cpu_us_per_span: float | None
    loop_cpu_us_per_span: float | None
    problems: list[str] = field(default_factory=list)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def config_figures(
    runs_by_config: dict[str, list[RunResult]], expected_messages: int
) -> list[ConfigFigures]:
    """Medians per configuration; telemetry CPU is each configuration's excess over off."""
    off = runs_by_config[Config.OFF]
    off_wall = _median([r.wall_s for r in off])
    off_cpu = _median([r.cpu_s for r in off])
    off_loop = _median([r.loop_cpu_s for r in off])
    out = []
    for config, runs in runs_by_config.items():
        wall = _median([r.wall_s for r in runs])
        cpu = _median([r.cpu_s for r in runs])
        loop = _median([r.loop_cpu_s for r in runs])
        calls = round(_median([r.model_calls for r in runs]))
        spans = round(_median([r.spans_created for r in runs]))
        exported = [r.spans_exported for r in runs if r.spans_exported is not None]
        traced = config != Config.OFF and spans > 0
        out.append(
            ConfigFigures(
                config=config,
                runs=len(runs),
                wall_s=wall,
                cpu_s=cpu,
                loop_cpu_s=loop,
                flush_s=_median([r.flush_s for r in runs]),
                model_calls=calls,
                spans=spans,
                spans_exported=min(exported) if exported else None,
                spans_dropped=max(r.spans_dropped for r in runs),
                wall_ratio=wall / off_wall,
                cpu_ratio=cpu / off_cpu,
                telemetry_cpu_us_per_step=(cpu - off_cpu) / calls * 1e6 if traced else None,
                telemetry_cpu_us_per_span=(cpu - off_cpu) / spans * 1e6 if traced else None,
                loop_cpu_us_per_span=(loop - off_loop) / spans * 1e6 if traced else None,
                problems=sorted({p for r in runs for p in r.problems(expected_messages)}),
            )
        )
    return out


@dataclass
class Report:
    """Everything one ``python -m bench`` run measured."""

    size: str
    command: str
    seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=machine)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    overhead: dict[str, list[ConfigFigures]] = field(default_factory=dict)
    runs: dict[str, list[RunResult]] = field(default_factory=dict)
    sdk_floor: list[SpanCost] = field(default_factory=list)
    step_costs: list[SpanCost] = field(default_factory=list)
    scale: list[ScaleResult] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    encoding: EncodingCost | None = None
    summary: SummaryTiming | None = None
    #: ``orchestrace profile``, text then ``--json``.
    profile: list[ProfileTiming] = field(default_factory=list)
    #: The in-process hub next to the hub on NATS (None when the section did not run).
    nats: NatsResult | None = None
    #: Sections asked for but not run, and why (not a failure).
    skipped: dict[str, str] = field(default_factory=dict)

    def floor_us(self) -> float | None:
        """The median SDK floor, CPU microseconds per bare span."""
        return _median([c.cpu_us for c in self.sdk_floor]) if self.sdk_floor else None

    def step_cost_groups(self) -> dict[str, list[float]]:
        """CPU µs per span (all threads) of every isolated cost, by name, in report order."""
        groups: dict[str, list[float]] = {}
        for c in [*self.sdk_floor, *self.step_costs]:
            groups.setdefault(c.name, []).append(c.cpu_us)
        return groups

    def problems(self) -> list[str]:
        """Correctness failures: counts that do not match, drops, failed runs."""
        out = []
        for workload, figures in self.overhead.items():
            out += [f"{workload} {f.config}: {p}" for f in figures for p in f.problems]
            out += [
                f"{workload} {f.config}: {f.spans_dropped} spans dropped"
                for f in figures
                if f.spans_dropped
            ]
        for s in self.scale:
            out += [f"scale {s.run.config}: {p}" for p in s.run.problems(s.messages_expected)]
        for t in self.throughput:
            if t.dropped:
                out.append(f"throughput {t.exporter}: {t.dropped} of {t.spans} spans dropped")
        if self.encoding is not None and not self.encoding.same_bytes:
            out.append("orchestrace's OTLP encoder wrote other bytes than the SDK's")
        if self.summary is not None:
            if self.summary.exit_code != 0:
                out.append(f"summary exited {self.summary.exit_code}: {self.summary.error}")
            elif self.summary.spans_reported != self.summary.spans:
                out.append(
                    f"summary reported {self.summary.spans_reported} spans of {self.summary.spans}"
                )
        out += self._profile_problems()
        if self.nats is not None:
            out += [f"nats: {p}" for p in self.nats.problems]
        return out

    def _profile_problems(self) -> list[str]:
        out = []
        for p in self.profile:
            if p.exit_code != 0:
                out.append(f"profile ({p.output}) exited {p.exit_code}: {p.error}")
            elif p.agents_reported is None or p.agents_reported == 0:
                out.append(f"profile ({p.output}) reported no agents")
            elif p.spans_reported is not None and p.spans_reported != p.spans:
                out.append(f"profile --json listed {p.spans_reported} spans of {p.spans}")
        agents = {p.agents_reported for p in self.profile if p.agents_reported is not None}
        if len(agents) > 1:
            out.append(f"profile text and --json disagree on the agents: {sorted(agents)}")
        return out

    def findings(self) -> list[str]:
        """Figures past the issue's bars (performance, not correctness)."""
        out = []
        floor = self.floor_us()
        for workload, figures in self.overhead.items():
            for f in figures:
                if f.config == Config.OFF:
                    continue
                if workload == "latency-bound" and f.wall_ratio > MAX_LATENCY_RATIO:
                    out.append(
                        f"latency-bound {f.config}: wall ratio {f.wall_ratio:.3f} "
                        f"> {MAX_LATENCY_RATIO}"
                    )
                per_span = f.telemetry_cpu_us_per_span
                if (
                    workload == "cpu-bound"
                    and floor
                    and per_span
                    and per_span > MAX_FLOOR_MULTIPLE * floor
                ):
                    out.append(
                        f"cpu-bound {f.config}: {per_span:.1f} µs telemetry CPU per span "
                        f"(all threads, export encoding included) = {per_span / floor:.1f}× "
                        f"the SDK floor ({floor:.1f} µs, null exporter)"
                    )
        costs = {name: _median(values) for name, values in self.step_cost_groups().items()}
        for name, cpu in costs.items():
            if floor and name.startswith("orchestrace") and cpu > MAX_FLOOR_MULTIPLE * floor:
                sdk = costs.get("the same spans, SDK only")
                out.append(
                    f"{name} (null exporter): {cpu:.1f} µs per span = {cpu / floor:.1f}× the "
                    f"SDK floor"
                    + (
                        f"; the SDK alone makes the same spans for {sdk / floor:.1f}×"
                        if sdk
                        else ""
                    )
                )
        if self.summary is not None and self.summary.seconds > MAX_SUMMARY_S:
            out.append(
                f"summary of {self.summary.spans:,} spans: {self.summary.seconds:.1f} s "
                f"> {MAX_SUMMARY_S:g} s"
            )
        for p in self.profile:
            command = "profile" + (" --json" if p.output == "json" else "")
            if p.seconds > MAX_PROFILE_S:
                out.append(
                    f"{command} of {p.spans:,} spans: {p.seconds:.1f} s > {MAX_PROFILE_S:g} s"
                )
            if p.peak_rss_mb > MAX_PROFILE_RSS_MB:
                out.append(
                    f"{command} of {p.spans:,} spans: peak RSS {p.peak_rss_mb:.0f} MB "
                    f"> {MAX_PROFILE_RSS_MB:g} MB"
                )
        return out

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        data = asdict(self)
        data["sdk_floor_us"] = self.floor_us()
        data["problems"] = self.problems()
        data["findings"] = self.findings()
        return data


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for row in (header, *rows):
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def render(report: Report) -> str:
    """The human-readable table."""
    m = report.machine
    v = m["versions"]
    lines = [
        f"orchestrace bench · size {report.size} · {report.seconds:.0f} s · `{report.command}`",
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model'] or '?'}) · Python {m['python']} · "
        f"opentelemetry-sdk {v['opentelemetry-sdk']} · anthropic {v['anthropic']} · "
        f"gc threshold {','.join(map(str, m['gc_threshold']))} · switch interval "
        f"{m['switch_interval_s'] * 1000:g} ms (set as the orchestrace command does, from "
        "ORCHESTRACE_GC_THRESHOLD and ORCHESTRACE_SWITCH_INTERVAL)",
        "",
    ]
    floor = report.floor_us()
    reps = next(iter(report.overhead.values()))[0].runs if report.overhead else 0
    if report.overhead:
        lines.append(
            f"1. Tracing overhead — median of {reps} interleaved runs per configuration; "
            "ratio = wall / wall with telemetry off"
        )
    for workload, figures in report.overhead.items():
        dims = report.workloads[workload]
        lines.append(f"  {workload}: {dims['description']}")
        rows = [
            [
                f.config,
                f"{f.wall_s:.3f} s",
                f"{f.wall_ratio:.3f}",
                f"{f.cpu_s:.3f} s",
                f"{f.cpu_ratio:.2f}",
                str(f.model_calls),
                str(f.spans),
                _fmt(f.spans_exported, "d"),
                str(f.spans_dropped),
                _fmt(f.telemetry_cpu_us_per_step, ".0f"),
                _fmt(f.telemetry_cpu_us_per_span, ".1f"),
                _fmt(f.loop_cpu_us_per_span, ".1f"),
                f"{f.flush_s * 1000:.0f} ms",
            ]
            for f in figures
        ]
        lines += _table(
            [
                "  config",
                "wall",
                "ratio",
                "cpu",
                "cpu ratio",
                "calls",
                "spans",
                "exported",
                "dropped",
                "tel µs/step",
                "tel µs/span",
                "on-path µs/span",
                "final flush",
            ],
            [["  " + r[0], *r[1:]] for r in rows],
        )
    if floor is not None:
        lines.append("  span costs in isolation (CPU µs per span, all threads / calling thread):")
        costs = [*report.sdk_floor, *report.step_costs]
        for name in dict.fromkeys(c.name for c in costs):
            same = [c for c in costs if c.name == name]
            cpu = _median([c.cpu_us for c in same])
            caller = _median([c.caller_us for c in same])
            lines.append(f"    {name:<34} {cpu:6.1f} / {caller:6.1f}   ({cpu / floor:.1f}× floor)")
    if report.overhead:
        lines.append("")
    if report.scale:
        lines.append("2. Scale — one child process per configuration")
        dims = report.workloads["scale"]
        lines.append(f"  {dims['description']}")
        rows = [
            [
                "  " + s.run.config,
                f"{s.run.wall_s:.1f} s",
                f"{s.run.cpu_s:.1f} s",
                f"{s.peak_rss_mb:.0f} MB",
                str(s.run.model_calls),
                str(s.run.spans_created),
                _fmt(s.run.spans_exported, "d"),
                _fmt(s.run.spans_in_file, "d"),
                f"{s.run.messages_sent}/{s.run.messages_delivered}",
                _fmt(None if s.delivery_p50_s is None else s.delivery_p50_s * 1000, ".1f", " ms"),
                _fmt(None if s.delivery_p99_s is None else s.delivery_p99_s * 1000, ".1f", " ms"),
                f"{s.run.flush_s:.2f} s",
            ]
            for s in report.scale
        ]
        lines += _table(
            [
                "  config",
                "wall",
                "cpu",
                "peak RSS",
                "calls",
                "spans created",
                "exported",
                "in file",
                "msgs sent/delivered",
                "delivery p50",
                "p99",
                "final flush",
            ],
            rows,
        )
        lines.append("")
    if report.throughput or report.encoding is not None:
        lines.append(
            "3. Export throughput — sustained without drops (producer paced by back-pressure)"
        )
        rows = [
            [
                "  " + t.exporter,
                f"{t.spans_per_s:,.0f} spans/s",
                f"{t.spans:,}",
                f"{t.exported:,}",
                str(t.dropped),
                f"{t.alone_spans_per_s:,.0f} spans/s",
                f"{t.alone_us_per_span:.1f} µs",
            ]
            for t in report.throughput
        ]
        lines += _table(
            [
                "  exporter",
                "end to end",
                "spans",
                "exported",
                "dropped",
                "exporter alone",
                "per span",
            ],
            rows,
        )
        e = report.encoding
        if e is not None:
            gain = e.sdk_us_per_span / e.orchestrace_us_per_span
            lines.append(
                f"  OTLP protobuf encoding, CPU per span ({e.spans:,} spans, median of 5): "
                f"SDK encode_spans {e.sdk_us_per_span:.1f} µs · orchestrace "
                f"{e.orchestrace_us_per_span:.1f} µs ({gain:.1f}× less) · "
                + ("identical bytes" if e.same_bytes else "BYTES DIFFER")
            )
        lines.append("")
    s = report.summary
    if s is not None:
        lines.append("4. Summary — `orchestrace summary FILE` in a child process")
        lines += _table(
            ["  spans", "file", "time", "peak RSS", "spans reported", "generated in"],
            [
                [
                    f"  {s.spans:,}",
                    f"{s.file_mb:,.0f} MB",
                    f"{s.seconds:.2f} s",
                    f"{s.peak_rss_mb:.0f} MB",
                    _fmt(s.spans_reported, ",d"),
                    f"{s.generate_s:.1f} s",
                ]
            ],
        )
        lines.append("")
    if report.profile:
        lines.append(
            "5. Profile — `orchestrace profile FILE` (text, then --json) in a child process, "
            "output to a file; peak RSS: the largest of its processes"
        )
        lines += _table(
            ["  output", "spans", "file", "time", "peak RSS", "report", "agents", "spans listed"],
            [
                [
                    f"  {p.output}",
                    f"{p.spans:,}",
                    f"{p.file_mb:,.0f} MB",
                    f"{p.seconds:.2f} s",
                    f"{p.peak_rss_mb:.0f} MB",
                    f"{p.output_mb:,.1f} MB",
                    _fmt(p.agents_reported, ",d"),
                    _fmt(p.spans_reported, ",d"),
                ]
                for p in report.profile
            ],
        )
        lines.append(f"  (file generated in {report.profile[0].generate_s:.1f} s)")
        lines.append("")
    if report.nats is not None:
        lines.append(
            "6. The hub on NATS — the in-process hub next to NATS JetStream (two processes "
            "of 50 agents; a CPU-bound run split over a lead and two workers), on a "
            "nats-server -js started for the section"
        )
        lines += [f"  {line}" for line in nats_lines(report.nats)]
        lines.append("")
    for section, reason in report.skipped.items():
        lines.append(f"Skipped: {section} ({reason})")
    problems = report.problems()
    lines.append(
        "Correctness: "
        + ("all counts match, nothing dropped" if not problems else f"{len(problems)} problem(s)")
    )
    lines += [f"  ✗ {p}" for p in problems]
    findings = report.findings()
    lines.append("Past the issue's bars: " + ("none" if not findings else ""))
    lines += [f"  ! {f}" for f in findings]
    return "\n".join(lines) + "\n"
