"""The ``orchestrace`` command: run a team (built-in or yours), or summarise a recorded run."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from runtime.defaults import DEFAULT_SPANS_FILE, MODEL_ENV, SCENARIO_NAMES, default_model
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
from telemetry import settings
from telemetry.redact import for_terminal
from telemetry.setup import DEFAULT_SERVICE_NAME

if TYPE_CHECKING:
    from runtime.agent import AgentResult, RunContext
    from runtime.teams import Team
    from telemetry.jaeger import JaegerReader
    from telemetry.records import ReadNotes

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
  loading (its traceback is shown); 2 bad arguments, no such file or team, or a team that
  cannot run offline; 130 / 143 / 129 after SIGINT / SIGTERM / SIGHUP (the run's spans
  are flushed and its summary so far printed; 130 also after Ctrl-C while the exit waits
  on a collector, with the summary printed)
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
    """The argument parser (also used to render --help in the README)."""
    parser = argparse.ArgumentParser(
        prog="orchestrace",
        description="Observability-first orchestration runtime for multi-agent systems on "
        "Claude. Every model call, tool dispatch and message delivery is an "
        "OpenTelemetry span; one run is one trace.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        help="the lead's task (default: the lead's own Agent(task=...))",
    )
    run.add_argument(
        "--offline",
        action="store_true",
        help="use the scripted model even if ANTHROPIC_API_KEY is set",
    )
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
    run.add_argument(
        "--spans-file",
        default=DEFAULT_SPANS_FILE,
        metavar="PATH",
        help="also write every span as OTLP/JSON lines here "
        f"(default: {DEFAULT_SPANS_FILE}; '' to disable)",
    )
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
    run.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        metavar="FACTOR",
        help="multiply the sleep tool and scripted latency (0 = instant)",
    )
    run.add_argument(
        "--latency",
        type=_positive,
        default=0.25,
        metavar="SECONDS",
        help="scripted model: seconds per call (0.25)",
    )
    limits = run.add_argument_group("limits that protect a paid API (0 = unlimited)")
    limits.add_argument(
        "--max-agents",
        type=_count(0),
        default=DEFAULT_MAX_AGENTS,
        help=f"agents per run, helpers included ({DEFAULT_MAX_AGENTS})",
    )
    limits.add_argument(
        "--max-model-calls",
        type=_count(0),
        default=DEFAULT_MAX_MODEL_CALLS,
        help=f"model calls per run ({DEFAULT_MAX_MODEL_CALLS})",
    )
    limits.add_argument(
        "--max-total-tokens",
        type=_count(0),
        default=DEFAULT_MAX_TOKENS_TOTAL,
        help=f"input + output tokens per run ({DEFAULT_MAX_TOKENS_TOTAL})",
    )
    limits.add_argument(
        "--max-concurrent-calls",
        type=_count(0),
        default=DEFAULT_MAX_CONCURRENT_CALLS,
        help=f"model calls in flight at once ({DEFAULT_MAX_CONCURRENT_CALLS})",
    )
    limits.add_argument(
        "--max-message-chars",
        type=_count(0),
        default=DEFAULT_MAX_MESSAGE_CHARS,
        help=f"characters per send_message ({DEFAULT_MAX_MESSAGE_CHARS})",
    )
    run.add_argument(
        "--log-level",
        default=None,
        help="structlog level on stderr (default: $ORCHESTRACE_LOG_LEVEL or WARNING)",
    )

    summary = commands.add_parser(
        "summary",
        help="print a run's summary from a spans file or from Jaeger",
        description="Print the summary of one run from an OTLP/JSON-lines spans file "
        "(the --spans-file of `orchestrace run`, or the Collector's file exporter), or "
        "from Jaeger's copy of the trace (--jaeger, through its v3 API).",
    )
    _add_source_options(summary, "summarise")

    profile = commands.add_parser(
        "profile",
        help="where a run spent its time: timelines, critical path, waits",
        description="Profile one run from its spans (a spans file or Jaeger): each agent's "
        "time by model calls, tools, messaging and waiting; the critical path across "
        "agents (through each message that woke a wait); who waited for whom; and the "
        "messages in order.",
        epilog="examples:\n"
        "  orchestrace profile orchestrace-spans.jsonl\n"
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
    return parser


def _add_source_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """FILE | --jaeger URL, and which run: shared by ``summary`` and ``profile``."""
    parser.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=None,
        help="OTLP/JSON lines file ('-': standard input)",
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
    from runtime.agent import RunConfig
    from runtime.hub import AgentState
    from runtime.loader import UserCodeError, load_team
    from runtime.runner import choose_model, new_run
    from telemetry.cost import default_prices
    from telemetry.live import LiveView
    from telemetry.logs import configure_logging
    from telemetry.setup import setup_telemetry
    from telemetry.summary import SummaryProcessor

    configure_logging(args.log_level or settings.LOG_LEVEL.get())
    try:
        team = load_team(args.target)
        model = choose_model(
            team,
            offline=args.offline,
            latency=args.latency,
            sleep=_scaled_sleep(args.time_scale),
        )
        default_prices()  # a malformed ORCHESTRACE_PRICES file is a setting error
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
    run = new_run(
        model,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        content=telemetry.content,
        run_id=uuid.uuid4().hex,
        config=RunConfig(
            model=model_name,
            max_tokens=args.max_tokens,
            max_turns=args.max_turns,
            wait_timeout=args.wait_timeout,
            sleep=_scaled_sleep(args.time_scale),
            stream=args.stream,
        ),
        limits=RunLimits(
            max_agents=args.max_agents or None,
            max_model_calls=args.max_model_calls or None,
            max_tokens_total=args.max_total_tokens or None,
            max_concurrent_calls=args.max_concurrent_calls or None,
            max_message_chars=args.max_message_chars or None,
        ),
    )
    trace_ids: list[str] = []

    def started(trace_id: str) -> None:
        trace_ids.append(trace_id)
        out.write(f"trace id: {trace_id}\n\n")
        out.flush()

    result: AgentResult | None = None
    try:
        result = asyncio.run(_run_interruptible(team, args.task, run, started))
    except asyncio.CancelledError:
        if run.interrupted is None:
            raise
    finally:
        telemetry.shutdown()
    if result is not None:
        out.write(f"\n[lead final answer]\n{for_terminal(result.text)}\n\n")
    else:
        out.write(f"\n[interrupted by {run.interrupted}]\n\n")
    if telemetry.enabled and trace_ids:
        out.write(summary.summary(trace_ids[0]).render())
    else:
        out.write("(telemetry disabled: no summary)\n")
    for problem in telemetry.export_problems():
        out.write(f"telemetry: {problem}\n")
    if spans_file is not None and telemetry.enabled:
        out.write(f"\nspans: {spans_file}  (orchestrace summary {spans_file})\n")
    out.flush()
    if result is None:
        return 128 + _SIGNALS[run.interrupted or "SIGINT"]
    if telemetry.interrupted:  # Ctrl-C while the exit waited on a collector
        return 128 + _SIGNALS["SIGINT"]
    lead = result
    if lead.state is AgentState.DONE and lead.reason == "end_turn":
        return 0
    # A lead stopped by a limit, max_turns, a refusal or a crash did not finish its task:
    # scripts and CI must be able to tell.
    out.write(for_terminal(f"run incomplete: the lead ended {lead.state} ({lead.reason})") + "\n")
    out.flush()
    return 1


#: The signals that end a run cleanly (spans marked interrupted, flushed, the summary so
#: far printed); the exit code is 128 + the signal's number. SIGHUP: the terminal closed.
_SIGNALS: Final = {
    "SIGINT": int(signal.SIGINT),
    "SIGTERM": int(signal.SIGTERM),
    "SIGHUP": int(signal.SIGHUP),
}


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


def cmd_summary(args: argparse.Namespace, out: TextIO) -> int:
    """``orchestrace summary FILE`` or ``--jaeger URL``: returns the exit code."""
    from telemetry.jaeger import JaegerError, normalize_trace_id
    from telemetry.records import ReadNotes
    from telemetry.summary import SummaryError, summarize, summarize_file

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

    if (args.file is None) == (args.jaeger is None):
        raise ValueError("give either a spans FILE or --jaeger URL")
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
