"""The ``orchestrace`` command: run a team (built-in or yours), or summarise a recorded run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO, TypeAlias

from runtime.errors import ConfigurationError
from runtime.limits import (
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_CONCURRENT_CALLS,
    DEFAULT_MAX_MESSAGE_CHARS,
    DEFAULT_MAX_MODEL_CALLS,
    DEFAULT_MAX_TOKENS_TOTAL,
    RunLimits,
)
from runtime.process import tune_process
from runtime.run_defaults import DEFAULT_SPANS_FILE, MODEL_ENV, SCENARIO_NAMES, default_model
from telemetry import settings
from telemetry.redact import for_terminal
from telemetry.setup import DEFAULT_SERVICE_NAME

if TYPE_CHECKING:
    from runtime.agent import AgentResult, Placement, RunContext
    from runtime.hub import Hub
    from runtime.models import ModelClient
    from runtime.teams import Team
    from telemetry.jaeger import JaegerReader
    from telemetry.records import ReadNotes
    from telemetry.setup import Telemetry

# The anthropic SDK, the OTel exporters and the agent loop are imported by the command that
# needs them: `orchestrace summary` starts in a fraction of the time `run` needs.


EPILOG: Final = """\
environment:
  ANTHROPIC_API_KEY      use real Claude through the anthropic SDK (else the scripted model)
  ORCHESTRACE_MODEL      model name (default claude-opus-4-8); --model overrides it
  ORCHESTRACE_MODEL_TIMEOUT, ORCHESTRACE_MODEL_RETRIES
                         seconds per model API attempt (default 300) and retries after a
                         failed one (default 2): a call that never answers still ends
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (grpc | http/protobuf)
                         send spans and metrics over OTLP, e.g. http://localhost:4317
  OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER (otlp, console, prometheus, none)
  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED
  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true
                         export message text and tool arguments/results on spans
                         (ORCHESTRACE_CONTENT_MAX_CHARS caps each value, default 2048)
  ORCHESTRACE_HUB_URL    the NATS JetStream broker of `run --hub` / `worker --hub`
                         (nats://HOST:PORT); NATS_CREDS its credentials file;
                         NATS_CA, NATS_CERT, NATS_KEY for TLS (PEM files)
  ORCHESTRACE_WORKER_TTL seconds after a worker's (or lead's) last heartbeat that it counts
                         as gone (default 10; set by the first process to use the broker)
  ORCHESTRACE_GC_THRESHOLD
                         the garbage collector's thresholds for this process (default
                         50000,20,100; "python" keeps Python's 700,10,10)
  ORCHESTRACE_SWITCH_INTERVAL
                         seconds a thread waits for the GIL before asking for it (default
                         0.001, so agents wait less on exporter threads; "python" keeps
                         Python's 0.005)
  ORCHESTRACE_SHUTDOWN_TIMEOUT, ORCHESTRACE_SHUTDOWN_CEILING
                         at exit, seconds to wait on exporters without progress (default
                         3) and in all while they progress (default 60)
  every variable, what it accepts and what a bad value does (exit 2, or a warning and
  the default): the README's "Environment variables" table
"""

RUN_EPILOG: Final = (
    EPILOG
    + """
examples:
  orchestrace run spawn                      the built-in runs: spawn, team
  orchestrace run my_team.py                 the one Team defined in my_team.py
  orchestrace run my_team.py:research        the Team (or function returning one) named research
  orchestrace run mypkg.teams:research --task "What is a span link?"

exit status:
  0 the lead finished (end_turn); 1 the lead was stopped (a limit, max_turns, a refusal,
  max_tokens, a crash: "run incomplete: ..." says which) or your module raised while
  loading (its traceback is shown); 2 bad arguments, no such file or team, no task for
  the lead, or a team that cannot run offline; 130 / 143 / 129 after SIGINT / SIGTERM /
  SIGHUP (the run's spans are flushed and its summary so far printed; 130 also after
  Ctrl-C while the exit waits on a collector, with the summary printed)
"""
)


def _positive(value: str) -> float:
    """A finite number >= 0 written in ASCII (``nan``, ``inf`` and ``١٠`` are refused)."""
    try:
        number = float(value) if value.strip().isascii() else math.nan
    except ValueError:
        number = math.nan
    if not (0 <= number < math.inf):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` written in ASCII digits."""

    def parse(value: str) -> int:
        text = value.strip()
        if not (text.isascii() and text.lstrip("-").isdigit()) or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value!r}")
        return int(text)

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one function per command, shared options added by helpers."""
    parser = argparse.ArgumentParser(
        prog="orchestrace",
        description="Observability-first orchestration runtime for multi-agent systems on "
        "Claude. Every model call, tool dispatch and message delivery is an "
        "OpenTelemetry span; one run is one trace.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_command(commands)
    _add_worker_command(commands)
    _add_summary_command(commands)
    _add_profile_command(commands)
    return parser


#: What ``add_subparsers`` returns (argparse's public API gives the type no public name).
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_run_command(commands: _Commands) -> None:
    run = commands.add_parser(
        "run",
        help="run a team (built-in or your own) with live output and a summary",
        description="Run a team with live output, then print its summary. TARGET is a "
        f"built-in run ({', '.join(SCENARIO_NAMES)}), a Python file (path/to/file.py) or an "
        "importable module (package.module), optionally with :NAME naming a Team, an "
        "Agent or a function returning one. Offline (no ANTHROPIC_API_KEY, or --offline) "
        "the agents play their scripts (Agent(script=...)).",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "target",
        metavar="TARGET",
        help=f"{' | '.join(SCENARIO_NAMES)} | FILE.py[:NAME] | MODULE[:NAME]",
    )
    run.add_argument(
        "--task",
        default=None,
        help="the lead's task (default: the lead's own Agent(task=...); a lead without one "
        "needs --task)",
    )
    _add_model_options(run)
    run.add_argument(
        "--model", default=None, help=f"Claude model (default: ${MODEL_ENV} or claude-opus-4-8)"
    )
    run.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream model responses, recording the time to first token and per output "
        "token; --no-stream waits for each response whole (default: --stream)",
    )
    _add_spans_file(run, "also write every span as OTLP/JSON lines here")
    run.add_argument("--quiet", action="store_true", help="no live lines, only the summary")
    run.add_argument("--max-turns", type=_count(1), default=20, help="model turns per agent (20)")
    run.add_argument(
        "--max-tokens", type=_count(1), default=2048, help="max_tokens per call (2048)"
    )
    run.add_argument(
        "--wait-timeout",
        type=_positive,
        default=60.0,
        metavar="SECONDS",
        help="wait_for_message timeout (60)",
    )
    _add_limit_options(run)
    _add_log_level(run)
    _add_hub_options(run, required=False)
    run.add_argument(
        "--workers",
        type=_count(0),
        default=0,
        metavar="N",
        help="with --hub: first wait (up to 60 s) until N workers of the team are up (0)",
    )


#: The run caps: (option, RunLimits field, default, what it counts); 0 is unlimited.
_LIMITS: Final = (
    ("--max-agents", "max_agents", DEFAULT_MAX_AGENTS, "agents per run, helpers included"),
    ("--max-model-calls", "max_model_calls", DEFAULT_MAX_MODEL_CALLS, "model calls per run"),
    (
        "--max-total-tokens",
        "max_tokens_total",
        DEFAULT_MAX_TOKENS_TOTAL,
        "input + output tokens per run",
    ),
    (
        "--max-concurrent-calls",
        "max_concurrent_calls",
        DEFAULT_MAX_CONCURRENT_CALLS,
        "model calls in flight at once",
    ),
    (
        "--max-message-chars",
        "max_message_chars",
        DEFAULT_MAX_MESSAGE_CHARS,
        "characters per send_message",
    ),
)


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group("limits that protect a paid API (0 = unlimited)")
    for option, field, default, counts in _LIMITS:
        limits.add_argument(
            option,
            dest=field,
            metavar=option[2:].upper().replace("-", "_"),
            type=_count(0),
            default=default,
            help=f"{counts} ({default})",
        )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--offline`` and the scripted model's pace: shared by ``run`` and ``worker``."""
    parser.add_argument(
        "--offline",
        action="store_true",
        help="use the scripted model even if ANTHROPIC_API_KEY is set",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        metavar="FACTOR",
        help="multiply the sleep tool and scripted latency (0 = instant)",
    )
    parser.add_argument(
        "--latency",
        type=_positive,
        default=0.25,
        metavar="SECONDS",
        help="scripted model: seconds per call (0.25)",
    )


def _add_spans_file(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--spans-file",
        default=DEFAULT_SPANS_FILE,
        metavar="PATH",
        help=f"{what} (default: {DEFAULT_SPANS_FILE}; '' to disable)",
    )


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=None,
        help="structlog level on stderr (default: $ORCHESTRACE_LOG_LEVEL or WARNING)",
    )


def _add_worker_command(commands: _Commands) -> None:
    worker = commands.add_parser(
        "worker",
        help="host agents of a team for runs started elsewhere (--hub nats://...)",
        description="Host agents of TARGET's team in this process for every run started with "
        "`orchestrace run --hub URL TARGET` against the same broker: the agents named with "
        "--agents, and instances of the team's templates (any worker offering a template "
        "may take an instance). The worker's spans join each run's trace.",
        epilog="example:\n"
        "  orchestrace worker --hub nats://127.0.0.1:4222 examples/research_team.py "
        "--agents researcher\n\n"
        "exit status:\n"
        "  0 after the run with --once, or when stopped with SIGINT / SIGTERM; 1 your module\n"
        "  raised while loading (its traceback is shown); 2 bad arguments or settings, a\n"
        "  broker that cannot be reached or used (one line)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("target", metavar="TARGET", help="the same TARGET the run names")
    worker.add_argument(
        "--agents",
        default="",
        metavar="A,B",
        help="team members this worker hosts (never the lead)",
    )
    worker.add_argument(
        "--templates",
        default=None,
        metavar="T,U",
        help="templates whose instances this worker takes (default: all of the team's; '' none)",
    )
    worker.add_argument("--once", action="store_true", help="exit after one run")
    _add_model_options(worker)
    _add_spans_file(worker, "append every span here")
    _add_log_level(worker)
    _add_hub_options(worker, required=True)


def _add_summary_command(commands: _Commands) -> None:
    summary = commands.add_parser(
        "summary",
        help="print a run's summary from a spans file or from Jaeger",
        description="Print the summary of one run from an OTLP/JSON-lines spans file "
        "(the --spans-file of `orchestrace run`, or the Collector's file exporter), or "
        "from Jaeger's copy of the trace (--jaeger, through its v3 API).",
    )
    _add_source_options(summary, "summarise")


def _add_profile_command(commands: _Commands) -> None:
    profile = commands.add_parser(
        "profile",
        help="where a run spent its time: timelines, critical path, waits",
        description="Profile one run from its spans (a spans file or Jaeger): each agent's "
        "time by model calls, tools, messaging and waiting; the critical path across "
        "agents (through each message that woke a wait); who waited for whom; and the "
        "messages in order.",
        epilog="examples:\n"
        "  orchestrace profile                      # the last run in orchestrace-spans.jsonl\n"
        "  orchestrace profile orchestrace-spans.jsonl --mermaid > run.mmd\n"
        "  orchestrace profile orchestrace-spans.jsonl --html report.html\n"
        "  orchestrace profile --jaeger http://localhost:16686 --last --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_source_options(profile, "profile")
    output = profile.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the profile as JSON")
    output.add_argument(
        "--mermaid", action="store_true", help="print a Mermaid sequenceDiagram of the run"
    )
    profile.add_argument(
        "--width",
        type=int,
        default=None,
        metavar="COLUMNS",
        help="width of the text report (default: the terminal's, else 100)",
    )
    profile.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the report as one self-contained HTML page (timeline, critical "
        "path, sequence diagram; opens offline) and print 'report: PATH' (on stderr with "
        "--json or --mermaid)",
    )


def _add_hub_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--hub",
        default=None,
        metavar="URL",
        help="NATS JetStream broker (nats://HOST:PORT, tls://...) "
        + ("that runs are started on" if required else "to spread agents over workers")
        + " (default: $ORCHESTRACE_HUB_URL"
        + ("" if required else "; unset: every agent in this process")
        + ")",
    )
    parser.add_argument(
        "--hub-creds",
        default=None,
        metavar="FILE",
        help="NATS credentials file (default: $NATS_CREDS)",
    )


def _add_source_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """FILE | --jaeger URL, and which run: shared by ``summary`` and ``profile``."""
    parser.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=None,
        help=f"OTLP/JSON lines file, '-' for standard input (default: {DEFAULT_SPANS_FILE}, "
        "the file `orchestrace run` writes, unless --jaeger is given)",
    )
    parser.add_argument(
        "--jaeger",
        default=None,
        metavar="URL",
        help="read the run from Jaeger's query service instead, e.g. http://localhost:16686",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--trace-id",
        default=None,
        help=f"the run to {verb} (default: the latest run in the file, or in Jaeger)",
    )
    which.add_argument(
        "--last",
        action="store_true",
        help="the newest run (the default; with --jaeger: of --service)",
    )
    parser.add_argument(
        "--service",
        default=None,
        help="with --jaeger: the service whose newest run --last picks "
        f"(default: $OTEL_SERVICE_NAME or {DEFAULT_SERVICE_NAME})",
    )


def _scaled_sleep(scale: float) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds * scale)

    return sleep


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """``orchestrace run``: returns the exit code."""
    from runtime.loader import UserCodeError
    from telemetry.live import LiveView, SummaryProcessor
    from telemetry.logs import configure_logging
    from telemetry.setup import setup_telemetry

    configure_logging(args.log_level or settings.LOG_LEVEL.get())
    try:
        team, model = _load_run_target(args)
    except (ConfigurationError, ValueError) as exc:
        sys.stderr.write(for_terminal(f"orchestrace run: {exc}", newlines=False) + "\n")
        return 2
    except UserCodeError as exc:
        sys.stderr.write(exc.traceback_text)
        return 1
    spans_file = Path(args.spans_file) if args.spans_file else None
    live = None if args.quiet else LiveView(out)
    summary = SummaryProcessor()
    try:
        telemetry = setup_telemetry(
            spans_file=spans_file,
            processors=[p for p in (live, summary) if p is not None],
            live=live is not None,
        )
    except OSError as exc:
        sys.stderr.write(f"orchestrace run: cannot write the spans file {spans_file}: {exc}\n")
        return 2
    except settings.SettingError as exc:
        sys.stderr.write(for_terminal(f"orchestrace run: {exc}", newlines=False) + "\n")
        return 2
    model_name = args.model or default_model()
    if model.backend == "scripted":
        out.write(f"model: scripted {model_name} (offline; set ANTHROPIC_API_KEY for Claude)\n")
    else:
        out.write(f"model: {model_name} via the Anthropic API\n")
    if telemetry.exporters:
        out.write(f"telemetry: {', '.join(telemetry.exporters)}\n")
    make_run = _run_factory(args, model, model_name, telemetry)
    trace_ids: list[str] = []

    def started(trace_id: str) -> None:
        trace_ids.append(trace_id)
        out.write(f"trace id: {trace_id}\n\n")
        out.flush()

    result: AgentResult | None = None
    runs: list[RunContext] = []
    try:
        if args.hub is None:
            runs.append(make_run())
            result = asyncio.run(_run_interruptible(team, args.task, runs[0], started))
        else:
            result = asyncio.run(
                _run_on_broker(
                    args.hub,
                    args.hub_creds,
                    args.workers,
                    team,
                    args.task,
                    make_run,
                    runs,
                    started,
                    report=lambda line: _print_line(out, line),
                )
            )
    except asyncio.CancelledError:
        if not runs or runs[0].interrupted is None:
            raise
    except ConfigurationError as exc:  # the broker is unreachable or unusable
        telemetry.shutdown()
        sys.stderr.write(for_terminal(f"orchestrace run: {exc}", newlines=False) + "\n")
        return 2
    finally:
        telemetry.shutdown()
    out.write(
        f"\n[lead final answer]\n{for_terminal(result.text)}\n\n"
        if result is not None
        else f"\n[interrupted by {runs[0].interrupted}]\n\n"
    )
    if telemetry.enabled and trace_ids:
        out.write(summary.summary(trace_ids[0]).render())
    else:
        out.write("(telemetry disabled: no summary)\n")
    for problem in telemetry.export_problems():
        out.write(f"telemetry: {problem}\n")
    if spans_file is not None and telemetry.enabled:
        out.write(f"\nspans: {spans_file}  (orchestrace summary {spans_file})\n")
    if args.hub is not None and telemetry.enabled:
        out.write(
            "(this summary covers the agents that ran in this process; the workers' spans "
            "are in their spans files or collector: orchestrace summary over them all, or "
            "--jaeger, shows the whole run)\n"
        )
    out.flush()
    return _run_exit_code(result, runs[0], telemetry, out)


def _load_run_target(args: argparse.Namespace) -> tuple[Team, ModelClient]:
    """The team and model ``run`` uses, every setting checked before anything is set up.

    Raises ConfigurationError (or ValueError) for a bad target, task or setting, and
    UserCodeError for the user's file failing to import.
    """
    from runtime.loader import load_team
    from runtime.runner import choose_model
    from telemetry.cost import default_prices

    team = load_team(args.target)
    if args.task is None and team.lead_agent.task is None:
        raise ConfigurationError(
            f"no task for {team.lead!r}: pass --task TEXT, or give the lead Agent(..., task=...)"
        )
    model = choose_model(
        team, offline=args.offline, latency=args.latency, sleep=_scaled_sleep(args.time_scale)
    )
    default_prices()  # a malformed ORCHESTRACE_PRICES file is a setting error
    args.hub = args.hub or settings.HUB_URL.get() or None
    if args.hub is not None:
        _check_hub(args.hub, args.hub_creds)
    else:
        for option, given in (("--workers", args.workers), ("--hub-creds", args.hub_creds)):
            if given:
                raise ConfigurationError(
                    f"{option} needs a broker: give --hub URL or $ORCHESTRACE_HUB_URL"
                )
    return team, model


def _run_factory(
    args: argparse.Namespace, model: ModelClient, model_name: str, telemetry: Telemetry
) -> Callable[..., RunContext]:
    """Makes the run's RunContext from the options: here, or as the lead on a broker."""
    from runtime.agent import RunConfig
    from runtime.runner import new_run

    run_id = uuid.uuid4().hex
    limits = RunLimits(**{field: getattr(args, field) or None for _, field, _, _ in _LIMITS})

    def make_run(hub: Hub | None = None, placement: Placement | None = None) -> RunContext:
        return new_run(
            model,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            content=telemetry.content,
            run_id=run_id,
            config=RunConfig(
                model=model_name,
                max_tokens=args.max_tokens,
                max_turns=args.max_turns,
                wait_timeout=args.wait_timeout,
                sleep=_scaled_sleep(args.time_scale),
                stream=args.stream,
            ),
            limits=limits,
            hub=hub,
            placement=placement,
        )

    return make_run


def _run_exit_code(
    result: AgentResult | None, run: RunContext, telemetry: Telemetry, out: TextIO
) -> int:
    """0 when the lead finished its task; 128 + the signal for an interrupted run; else 1."""
    from runtime.hub import AgentState

    if result is None:
        return 128 + _SIGNALS[run.interrupted or "SIGINT"]
    if telemetry.interrupted:  # Ctrl-C while the exit waited on a collector
        return 128 + _SIGNALS["SIGINT"]
    if result.state is AgentState.DONE and result.reason == "end_turn":
        return 0
    # A lead stopped by a limit, max_turns, a refusal or a crash did not finish its task:
    # scripts and CI must be able to tell.
    out.write(
        for_terminal(f"run incomplete: the lead ended {result.state} ({result.reason})") + "\n"
    )
    out.flush()
    return 1


#: The signals that end a run cleanly (spans marked interrupted, flushed, the summary so
#: far printed); the exit code is 128 + the signal's number. SIGHUP: the terminal closed.
_SIGNALS: Final = {
    "SIGINT": int(signal.SIGINT),
    "SIGTERM": int(signal.SIGTERM),
    "SIGHUP": int(signal.SIGHUP),
}


def _check_hub(url: str, creds: str | None) -> None:
    """ConfigurationError for a --hub that names no NATS server, without nats-py, or with
    a credentials or TLS file that cannot be used (before anything is set up)."""
    try:
        from runtime.nats_hub import check_hub_url, connection_settings
    except ImportError:
        raise ConfigurationError(
            "--hub needs the NATS client: pip install 'orchestrace[nats]' "
            "(in a checkout: pip install '.[nats]')"
        ) from None
    check_hub_url(url)
    connection_settings(creds)
    settings.check("process")  # ORCHESTRACE_WORKER_TTL and the rest


def _print_line(out: TextIO, line: str) -> None:
    out.write(for_terminal(line, newlines=False) + "\n")
    out.flush()


async def _run_on_broker(
    url: str,
    creds: str | None,
    workers: int,
    team: Team,
    task: str | None,
    make_run: Callable[[Hub | None, Placement | None], RunContext],
    runs: list[RunContext],
    started: Callable[[str], None],
    *,
    report: Callable[[str], None],
) -> AgentResult:
    """Run ``team`` with its hub on the NATS broker at ``url``; the lead runs here and
    the live workers of the team host the members they pin and the spawned instances
    (``report`` is told where each agent runs)."""
    from runtime.nats_hub import NatsHub, connect
    from runtime.workers import WORKERS_WAIT_SECONDS, BrokerPlacement, await_workers

    client = await connect(url, name="orchestrace-run", creds=creds)
    try:
        if workers:
            wait = f"{WORKERS_WAIT_SECONDS:g} s"
            report(f"waiting up to {wait} for {workers} worker(s) of team {team.name!r}")
        found = await await_workers(client, team, workers, WORKERS_WAIT_SECONDS)
        probe = make_run(None, None)  # the run id and settings, before the hub exists
        hub = NatsHub(
            client, probe.telemetry.run_id, host=f"lead-{uuid.uuid4().hex[:8]}", lead=True
        )
        await hub.open()
        try:
            placement = BrokerPlacement(
                hub, found, probe.config, probe.limits, url=url, creds=creds, report=report
            )
            runs.append(make_run(hub, placement))
            try:
                return await _run_interruptible(team, task, runs[0], started)
            finally:
                await placement.close()
        finally:
            await hub.close()
    finally:
        await client.close()


async def _run_interruptible(
    team: Team, task: str | None, run: RunContext, started: Callable[[str], None]
) -> AgentResult:
    """Run ``team``; SIGINT/SIGTERM/SIGHUP cancel it so every span ends saying why."""
    from runtime.runner import execute

    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None

    def interrupt(name: str) -> None:
        if run.interrupted is None:
            run.interrupted = name
            current.cancel()

    for name, number in _SIGNALS.items():
        loop.add_signal_handler(number, interrupt, name)
    try:
        return await execute(team, run, task=task, on_start=started)
    finally:
        for number in _SIGNALS.values():
            loop.remove_signal_handler(number)
        await run.model.close()


def cmd_worker(args: argparse.Namespace, out: TextIO) -> int:
    """``orchestrace worker``: host agents for runs on the broker; returns the exit code."""
    from runtime.loader import UserCodeError, load_team
    from runtime.runner import choose_model
    from telemetry.logs import configure_logging
    from telemetry.setup import setup_telemetry

    configure_logging(args.log_level or settings.LOG_LEVEL.get())
    try:
        args.hub = args.hub or settings.HUB_URL.get() or None
        if args.hub is None:
            raise ConfigurationError("give the broker with --hub URL or $ORCHESTRACE_HUB_URL")
        _check_hub(args.hub, args.hub_creds)
        team = load_team(args.target)
        agents = [a.strip() for a in args.agents.split(",") if a.strip()]
        members = [a.name for a in team.agents if a.name != team.lead]
        for name in agents:
            if name not in members:
                raise ConfigurationError(
                    f"--agents: {name!r} is not a member of team {team.name!r} "
                    f"(members: {', '.join(members) or 'none'}; the lead runs with `run`)"
                )
        offered = [t.name for t in team.templates]
        templates = (
            offered
            if args.templates is None
            else [t.strip() for t in args.templates.split(",") if t.strip()]
        )
        for name in templates:
            if name not in offered:
                raise ConfigurationError(
                    f"--templates: {name!r} is not a template of team {team.name!r} "
                    f"(templates: {', '.join(offered) or 'none'})"
                )
        if not agents and not templates:
            raise ConfigurationError(
                f"this worker would host nothing: name members with --agents "
                f"({', '.join(members) or 'none'}) or give the team templates"
            )
        model = choose_model(
            team, offline=args.offline, latency=args.latency, sleep=_scaled_sleep(args.time_scale)
        )
    except (ConfigurationError, ValueError) as exc:
        sys.stderr.write(for_terminal(f"orchestrace worker: {exc}", newlines=False) + "\n")
        return 2
    except UserCodeError as exc:
        sys.stderr.write(exc.traceback_text)
        return 1
    spans_file = Path(args.spans_file) if args.spans_file else None
    try:
        telemetry = setup_telemetry(spans_file=spans_file)
    except OSError as exc:
        sys.stderr.write(f"orchestrace worker: cannot write the spans file {spans_file}: {exc}\n")
        return 2
    except settings.SettingError as exc:
        sys.stderr.write(for_terminal(f"orchestrace worker: {exc}", newlines=False) + "\n")
        return 2
    try:
        asyncio.run(_serve_worker(args, team, model, telemetry, agents, templates, out))
    except ConfigurationError as exc:
        sys.stderr.write(for_terminal(f"orchestrace worker: {exc}", newlines=False) + "\n")
        return 2
    finally:
        telemetry.shutdown()
    return 0


async def _serve_worker(
    args: argparse.Namespace,
    team: Team,
    model: ModelClient,
    telemetry: Telemetry,
    agents: list[str],
    templates: list[str],
    out: TextIO,
) -> None:
    """Serve runs until SIGINT / SIGTERM (or one run with --once)."""
    from collections.abc import Mapping
    from typing import Any

    from runtime.agent import RunConfig, RunContext
    from runtime.nats_hub import NatsHub, connect
    from runtime.workers import Worker, limits_of
    from telemetry.spans import RunTelemetry

    def make_run(hub: NatsHub, config: Mapping[str, Any]) -> RunContext:
        return RunContext(
            hub=hub,
            model=model,
            telemetry=RunTelemetry(
                run_id=hub.subjects.run_id,
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                content=telemetry.content,
            ),
            config=RunConfig(
                model=str(config["model"]),
                max_tokens=int(config["max_tokens"]),
                max_turns=int(config["max_turns"]),
                wait_timeout=float(config["wait_timeout"]),
                stream=bool(config["stream"]),
                sleep=_scaled_sleep(args.time_scale),
            ),
            limits=limits_of(config),
        )

    client = await connect(args.hub, name="orchestrace-worker", creds=args.hub_creds)
    worker = Worker(
        client,
        team,
        make_run,
        url=args.hub,
        creds=args.hub_creds,
        agents=agents,
        templates=templates,
        once=args.once,
        report=lambda line: _print_line(out, line),
    )
    loop = asyncio.get_running_loop()
    serving = loop.create_task(worker.serve())
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, serving.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
        await model.close()
        await client.close()


def cmd_summary(args: argparse.Namespace, out: TextIO) -> int:
    """``orchestrace summary FILE`` or ``--jaeger URL``: returns the exit code."""
    from telemetry.jaeger import JaegerError, normalize_trace_id
    from telemetry.records import ReadNotes
    from telemetry.summary import SummaryError, summarize
    from telemetry.summary_file import summarize_file

    notes = ReadNotes()
    try:
        jaeger = _jaeger_source(args)
        if jaeger is not None:
            reader, trace_id = jaeger
            text = summarize(reader.spans(trace_id), normalize_trace_id(trace_id), notes)
        else:
            text = summarize_file(args.file, args.trace_id, notes=notes)
    except (OSError, ValueError, SummaryError, JaegerError) as exc:
        _warn_about(notes, "summary")
        sys.stderr.write(for_terminal(f"orchestrace summary: {exc}", newlines=False) + "\n")
        return 2
    _warn_about(notes, "summary")
    out.write(text)
    return 0


def _warn_about(notes: ReadNotes, command: str) -> None:
    """What the reader left out, one warning line each on stderr."""
    for warning in notes.warnings():
        sys.stderr.write(f"orchestrace {command}: warning: {warning}\n")


def _jaeger_source(args: argparse.Namespace) -> tuple[JaegerReader, str] | None:
    """The Jaeger reader and trace id the options name, or None for a FILE; ValueError for
    options that do not fit together."""
    from telemetry.jaeger import JaegerReader

    if args.file is not None and args.jaeger is not None:
        raise ValueError("give either a spans FILE or --jaeger URL, not both")
    if args.file is None and args.jaeger is None:
        args.file = Path(DEFAULT_SPANS_FILE)
    if args.service is not None and args.jaeger is None:
        raise ValueError("--service applies to --jaeger only")
    if args.jaeger is None:
        return None
    reader = JaegerReader(args.jaeger)
    service = args.service or settings.SERVICE_NAME.get()
    return reader, args.trace_id or reader.newest_run(service)


def cmd_profile(args: argparse.Namespace, out: TextIO) -> int:
    """``orchestrace profile FILE`` or ``--jaeger URL``: returns the exit code."""
    import shutil

    from telemetry.jaeger import JaegerError, normalize_trace_id
    from telemetry.profile import ProfileError, build_profile, profile_file
    from telemetry.profile_html import write_html
    from telemetry.profile_render import render_mermaid, render_text
    from telemetry.records import ReadNotes

    notes = ReadNotes()
    try:
        if args.width is not None and args.width < 20:
            raise ValueError(f"--width must be at least 20, got {args.width}")
        jaeger = _jaeger_source(args)
        trace_id = None if args.trace_id is None else normalize_trace_id(args.trace_id)
        if jaeger is not None:
            reader, wanted = jaeger
            wanted = normalize_trace_id(wanted)
            profile = build_profile(reader.spans(wanted), wanted, notes)
        else:
            profile = profile_file(args.file, trace_id, notes=notes)
    except (OSError, ValueError, ProfileError, JaegerError) as exc:
        _warn_about(notes, "profile")
        sys.stderr.write(for_terminal(f"orchestrace profile: {exc}", newlines=False) + "\n")
        return 2
    _warn_about(notes, "profile")
    if args.html is not None:
        # Written before anything is printed: a report that cannot be written is an
        # error with no half output.
        try:
            write_html(profile, args.html)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            sys.stderr.write(f"orchestrace profile: cannot write {args.html}: {reason}\n")
            return 2
    if args.json:
        profile.write_json(out)  # what json.dump(..., indent=2) writes, far sooner
        out.write("\n")
    elif args.mermaid:
        out.write(render_mermaid(profile))
    else:
        tty = out.isatty()
        width = args.width or (shutil.get_terminal_size((100, 24)).columns if tty else 100)
        out.write(render_text(profile, width=width, fancy=tty))
    if args.html is not None:
        # --json and --mermaid keep stdout to the format they print.
        report = sys.stderr if args.json or args.mermaid else out
        report.write(f"report: {args.html}\n")
    return 0


def _replace_unencodable(stream: TextIO) -> None:
    """A terminal that cannot encode some character (``LANG=C``, ``PYTHONIOENCODING=ascii``)
    gets ``?`` for it instead of a UnicodeEncodeError."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and (stream.errors or "strict") == "strict":
        reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``orchestrace`` console script."""
    try:
        args = build_parser().parse_args(argv)
        if out is None:
            _replace_unencodable(sys.stdout)
        stream = out if out is not None else sys.stdout
        tune_process()
        if args.command == "run":
            return cmd_run(args, stream)
        if args.command == "profile":
            return cmd_profile(args, stream)
        if args.command == "worker":
            return cmd_worker(args, stream)
        return cmd_summary(args, stream)
    except KeyboardInterrupt:
        # Ctrl-C while summary or profile reads or prints, or before a run has started
        # (a run handles SIGINT itself): the conventional 128 + SIGINT, no traceback.
        return 128 + _SIGNALS["SIGINT"]
    except BrokenPipeError:
        # The reader went away (`orchestrace profile FILE | head`): end quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        if out is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
