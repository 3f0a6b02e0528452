"""One call runs a team: telemetry, the workflow span, every agent, flush, a result.

:func:`run` is what ``orchestrace.run`` is; the ``orchestrace run`` command uses the same
:func:`execute` and :func:`choose_model` with its own console telemetry.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from runtime.agent import AgentResult, Placement, RunConfig, RunContext
from runtime.errors import ConfigurationError
from runtime.hub import AgentState, Hub
from runtime.limits import RunLimits
from runtime.models import ModelClient
from runtime.run_defaults import DEFAULT_SPANS_FILE
from runtime.teams import (
    Agent,
    Team,
    check_scripted_model,
    run_team,
    scripts_of,
    unscripted,
)
from telemetry.spans import ContentPolicy, RunTelemetry

if TYPE_CHECKING:
    from telemetry.summary import TraceSummary

API_KEY_ENV: Final = "ANTHROPIC_API_KEY"

_override: contextvars.ContextVar[ModelClient | None] = contextvars.ContextVar(
    "orchestrace_model_override", default=None
)


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: "Not given": the spans file is written only when orchestrace owns telemetry.
DEFAULT: Final = _Default()


@contextmanager
def override(*, model: ModelClient) -> Iterator[None]:
    """Make every run started inside this block use ``model`` (for tests).

    Example::

        with orchestrace.override(model=ScriptedModel(scripts={"planner": [...]})):
            result = await orchestrace.run(team, task="...")

    It wins over ``run(model=...)``, ``ANTHROPIC_API_KEY`` and the agents' scripts: a
    ``ScriptedModel``'s ``scripts`` replace every ``Agent(script=...)``, so they must cover
    every agent and template of the team (``run`` says which are missing). Raises
    :class:`orchestrace.ConfigurationError` for a value that is not a model client (a model
    name goes to ``run(model=...)``).
    """
    _check_client(model, "override(model=...)")
    token = _override.set(model)
    try:
        yield
    finally:
        _override.reset(token)


@dataclass(frozen=True)
class RunResult:
    """What a run produced: the lead's final answer, every agent's outcome, the trace.

    ``text`` is the lead's last text (its answer when ``completed``); ``lead`` and
    ``agents[name]`` are :class:`AgentResult` values (spawned agents included: check them
    too, since ``completed`` is about the lead only); ``run_id`` is
    ``gen_ai.conversation.id`` on every span and ``trace_id`` the run's trace (32 hex
    digits). ``summary`` is the same summary ``orchestrace summary`` prints
    (``summary.render()``), or None when the run's spans were not recorded (telemetry
    disabled). ``spans_file`` is the OTLP/JSON-lines file the run wrote, if any.
    """

    text: str
    lead: AgentResult
    agents: Mapping[str, AgentResult]
    run_id: str
    trace_id: str
    summary: TraceSummary | None
    spans_file: Path | None

    @property
    def completed(self) -> bool:
        """True when the lead finished its task (``end_turn``), as exit code 0 means."""
        return self.lead.state is AgentState.DONE and self.lead.reason == "end_turn"


async def execute(
    team: Team,
    run: RunContext,
    *,
    task: str | None = None,
    on_start: Callable[[str], None] | None = None,
) -> AgentResult:
    """Run ``team`` inside its ``invoke_workflow {team.name}`` root span; the lead's result.

    ``on_start`` is called with the run's trace id (32 hex digits) once the span is open.
    """
    with run.telemetry.workflow(team.name, backend=run.model.backend) as span:
        if on_start is not None:
            on_start(format(span.get_span_context().trace_id, "032x"))
        try:
            return await run_team(run, team, task)
        finally:
            run.hub.retire()


def choose_model(
    team: Team,
    model: ModelClient | None = None,
    *,
    offline: bool = False,
    latency: float = 0.25,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ModelClient:
    """The model client a run of ``team`` uses.

    In order: an :func:`override` in force; ``model``; Claude through the anthropic SDK when
    ``ANTHROPIC_API_KEY`` is set and not ``offline``; else the scripted model playing the
    agents' scripts. Raises :class:`ConfigurationError` when the run would be offline and
    some agent has no script (the message says how to give one).
    """
    forced = _override.get()
    given = forced if forced is not None else model
    if given is not None:
        check_scripted_model(team, given)
        return given
    if not offline and os.environ.get(API_KEY_ENV):
        from runtime.models import AnthropicModel

        return AnthropicModel()
    missing = unscripted(team)
    if missing:
        why = "offline was asked for" if offline else f"{API_KEY_ENV} is not set"
        raise ConfigurationError(
            f"team {team.name!r} cannot run offline ({why}): no script for "
            f"{', '.join(missing)}; set {API_KEY_ENV} to run on Claude, or give each agent "
            "a script: Agent(..., script=[Reply.call('tool', arg=...), Reply.say('done')])"
        )
    from runtime.scripted import ScriptedModel

    return ScriptedModel(latency=latency, sleep=sleep, scripts=scripts_of(team))


def _check_client(model: object, where: str) -> None:
    """:class:`ConfigurationError` unless ``model`` looks like a :class:`ModelClient`."""
    if isinstance(model, str) or not callable(getattr(model, "create", None)):
        raise ConfigurationError(
            f"{where} takes a model client such as ScriptedModel(...) or AnthropicModel(), "
            f"not {type(model).__name__} {model!r:.40}"
            + ("; a Claude model name goes to run(model=...)" if isinstance(model, str) else "")
        )


def _check_settings(*, max_turns: object, max_tokens: object, wait_timeout: object) -> None:
    """:class:`ConfigurationError` for a setting the command line would refuse too."""
    for name, value in (("max_turns", max_turns), ("max_tokens", max_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
    if (
        isinstance(wait_timeout, bool)
        or not isinstance(wait_timeout, int | float)
        or not math.isfinite(wait_timeout)
        or wait_timeout < 0
    ):
        raise ConfigurationError(f"wait_timeout must be seconds >= 0, got {wait_timeout!r}")


def new_run(
    model: ModelClient,
    *,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    content: ContentPolicy,
    config: RunConfig,
    limits: RunLimits,
    run_id: str | None = None,
    hub: Hub | None = None,
    placement: Placement | None = None,
) -> RunContext:
    """Run telemetry around ``model`` and ``hub`` (default: a fresh in-process hub)."""
    return RunContext(
        hub=hub if hub is not None else Hub(),
        placement=placement,
        model=model,
        telemetry=RunTelemetry(
            run_id=run_id or uuid.uuid4().hex,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            content=content,
        ),
        config=config,
        limits=limits,
    )


async def run(
    team: Team | Agent,
    task: str | None = None,
    *,
    model: str | ModelClient | None = None,
    offline: bool = False,
    spans_file: str | os.PathLike[str] | _Default | None = DEFAULT,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    limits: RunLimits | None = None,
    max_turns: int = 20,
    max_tokens: int = 2048,
    wait_timeout: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    run_id: str | None = None,
    stream: bool = True,
    hub: str | None = None,
    hub_creds: str | None = None,
    workers: int = 0,
) -> RunResult:
    """Run ``team`` (or a lone agent) on ``task`` and return the result.

    Example::

        result = await orchestrace.run(team, task="What is a span link?")
        print(result.text, result.trace_id)

    ``model`` is a Claude model name (``"claude-opus-4-8"``) or a model client such as
    :class:`orchestrace.ScriptedModel`. The client is, in order: an :func:`override` in
    force; ``model`` if it is a client; Claude when ``ANTHROPIC_API_KEY`` is set and not
    ``offline``; else a scripted model playing the agents' ``Agent(script=...)``. A
    ``ScriptedModel`` you pass replaces those scripts: its ``scripts`` must cover every
    agent and template (by name, or by role: ``lead``, ``member``), or give a ``policy``.
    ``task`` replaces the lead's own ``Agent(task=...)``. ``stream`` (default True):
    model calls stream their responses, which gives each ``chat`` span its time to first
    token; an ``Agent(stream=...)`` overrides it for that agent. ``sleep`` is the run's
    clock: the scripted model's latency, ``ToolContext.sleep`` and the ``sleep`` tool go
    through it, so ``sleep=instant`` (an ``async def`` that only yields) makes an offline
    run with the agents' own scripts take no time. ``run_id`` names the run
    (``gen_ai.conversation.id``; default: a fresh uuid).

    Telemetry: with ``tracer_provider`` / ``meter_provider``, or when the application has
    set an SDK TracerProvider globally, spans and metrics go there (orchestrace adds one
    routing processor to that provider, once, for the summary; it installs nothing
    globally). Otherwise telemetry is set up from the standard ``OTEL_*`` environment as
    the ``orchestrace`` command does, spans are written to ``spans_file`` (default
    ``orchestrace-spans.jsonl``; None for no file), and everything is flushed before
    returning. ``spans_file`` may only be given when orchestrace sets telemetry up itself.

    ``hub``: a NATS JetStream broker (``"nats://HOST:PORT"``) for the run's messages; the
    lead runs here and the live ``orchestrace worker`` processes of the team host the
    members they pin and the spawned instances of the templates they offer (README,
    "Agents across processes"). Default: every agent in this process. ``hub_creds``: a
    NATS credentials file (default: ``NATS_CREDS``); ``workers``: first wait (up to
    60 s) until that many workers of this very team are up.

    Raises :class:`orchestrace.ConfigurationError` for a bad team, no task, an offline
    run with unscripted agents, a ``ScriptedModel`` without a script for some agent, a bad
    setting (``max_turns``, ``max_tokens``, ``wait_timeout``, ``model``), conflicting
    telemetry options, a spans file that cannot be written, a ``hub`` that cannot be
    reached, or a bad ``OTEL_*`` / ``ORCHESTRACE_*`` variable (the README's table of
    variables; the message names the variable and what it accepts). Failures inside the
    run (model errors, crashing tools, limits) do not raise: they end agents, and the
    result says how (``result.completed``, ``result.lead.reason``).
    ``asyncio.CancelledError`` propagates; the spans recorded so far are still ended and
    flushed.
    """
    from telemetry.cost import default_prices
    from telemetry.live import SummaryProcessor
    from telemetry.routing import router_for
    from telemetry.settings import SettingError
    from telemetry.setup import Telemetry, content_policy, setup_telemetry

    team = Team.of(team)
    try:
        default_prices()
    except ValueError as exc:  # a malformed ORCHESTRACE_PRICES file
        raise ConfigurationError(str(exc)) from exc
    if task is None and team.lead_agent.task is None:
        raise ConfigurationError(
            f"no task for {team.lead!r}: pass run(team, task=...) or Agent(..., task=...)"
        )
    if model is not None and not isinstance(model, str):
        _check_client(model, "run(model=...)")
    _check_settings(max_turns=max_turns, max_tokens=max_tokens, wait_timeout=wait_timeout)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ConfigurationError(f"run(workers=...) must be a whole number >= 0, got {workers!r}")
    if hub is None and (workers or hub_creds):
        raise ConfigurationError("run(workers=..., hub_creds=...) need a broker: give hub=URL")
    model_name = model if isinstance(model, str) else None
    client = choose_model(
        team, None if isinstance(model, str) else model, offline=offline, sleep=sleep
    )
    owns_client = client is not model and _override.get() is None

    summary = SummaryProcessor()
    own: Telemetry | None = None
    if tracer_provider is None:
        global_provider = trace.get_tracer_provider()
        if router_for(global_provider) is not None:
            tracer_provider = global_provider
            if meter_provider is None:
                meter_provider = metrics.get_meter_provider()
    if tracer_provider is None:
        path = DEFAULT_SPANS_FILE if isinstance(spans_file, _Default) else spans_file
        try:
            own = setup_telemetry(
                spans_file=Path(path) if path else None, processors=[summary], set_global=False
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot write the spans file {path}: {exc}") from exc
        except SettingError as exc:  # a bad OTEL_* / ORCHESTRACE_* value
            raise ConfigurationError(str(exc)) from exc
        tracer_provider, content = own.tracer_provider, own.content
        meter_provider = meter_provider or own.meter_provider
        written = Path(path) if path and own.enabled else None
    else:
        if not isinstance(spans_file, _Default) and spans_file is not None:
            raise ConfigurationError(
                "spans_file is written only when orchestrace sets telemetry up itself; "
                "with your own TracerProvider, add an exporter to it instead"
            )
        content = content_policy(live=False)
        written = None
    router = router_for(tracer_provider) if own is None else None

    config_kwargs: dict[str, Any] = {}
    if model_name:
        config_kwargs["model"] = model_name
    context = new_run(
        client,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        content=content,
        config=RunConfig(
            max_tokens=max_tokens,
            max_turns=max_turns,
            wait_timeout=wait_timeout,
            sleep=sleep,
            stream=stream,
            **config_kwargs,
        ),
        limits=limits if limits is not None else RunLimits(),
        run_id=run_id,
    )
    trace_ids: list[str] = []

    def started(trace_id: str) -> None:
        trace_ids.append(trace_id)
        if router is not None:
            router.route(int(trace_id, 16), summary)

    try:
        if hub is None:
            lead = await execute(team, context, task=task, on_start=started)
        else:
            lead = await _execute_on_broker(
                hub, team, context, task, started, creds=hub_creds, workers=workers
            )
    finally:
        if router is not None and trace_ids:
            router.unroute(int(trace_ids[0], 16))
        if owns_client:
            await client.close()
        if own is not None:
            await asyncio.to_thread(own.shutdown)
    recorded = bool(trace_ids) and (own.enabled if own is not None else router is not None)
    return RunResult(
        text=lead.text,
        lead=lead,
        agents=dict(context.results),
        run_id=context.telemetry.run_id,
        trace_id=trace_ids[0] if trace_ids else "",
        summary=summary.summary(trace_ids[0]) if recorded else None,
        spans_file=written,
    )


async def _execute_on_broker(
    url: str,
    team: Team,
    context: RunContext,
    task: str | None,
    started: Callable[[str], None],
    *,
    creds: str | None,
    workers: int,
) -> AgentResult:
    """:func:`execute` with the run's hub on the NATS broker at ``url``, once ``workers``
    workers of ``team`` are up."""
    try:
        from runtime.nats_hub import NatsHub, connect
        from runtime.workers import WORKERS_WAIT_SECONDS, BrokerPlacement, await_workers
    except ImportError:
        raise ConfigurationError(
            "hub= needs the NATS client: pip install 'orchestrace[nats]' "
            "(in a checkout: pip install '.[nats]')"
        ) from None
    client = await connect(url, name="orchestrace-run", creds=creds)
    try:
        found = await await_workers(client, team, workers, WORKERS_WAIT_SECONDS)
        hub = NatsHub(
            client, context.telemetry.run_id, host=f"lead-{uuid.uuid4().hex[:8]}", lead=True
        )
        await hub.open()
        placement = BrokerPlacement(
            hub, found, context.config, context.limits, url=url, creds=creds
        )
        on_broker = dataclasses.replace(context, hub=hub, placement=placement)
        try:
            result = await execute(team, on_broker, task=task, on_start=started)
            return result
        finally:
            # on_broker shares context.results (the agents run here); add those on workers,
            # as the registry says they ended.
            context.results.update(placement.results)
            await placement.close()
            await hub.close()
    finally:
        await client.close()


def run_sync(team: Team | Agent, task: str | None = None, **options: Any) -> RunResult:
    """:func:`run` for code that is not async: a script, a test, a notebook.

    Example::

        result = orchestrace.run_sync(team, task="What is a span link?")

    Takes the same options as :func:`run`. Inside a running event loop (a notebook, an
    async framework) the run gets its own loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run(team, task, **options))
    context = contextvars.copy_context()  # keep an override() in force
    with ThreadPoolExecutor(1, thread_name_prefix="orchestrace-run") as pool:
        return pool.submit(context.run, asyncio.run, run(team, task, **options)).result()
