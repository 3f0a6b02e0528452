"""The benchmark's runs: real agents on the scripted model, messages through the hub.

A workload is a set of agents and a policy. :func:`run_workload` runs it once under one
telemetry configuration and returns what it measured: wall time of the run, CPU time of
the whole process (every thread: the agents and the exporters) up to the moment the last
span was exported, CPU time of the event loop's thread alone (the agents' path), and the
counts that must match (spans created and exported, messages sent and delivered).

The scripted model sleeps with the real ``asyncio.sleep``: this is a benchmark, time is real.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from bench.pipeline import Config, count_file_spans, open_pipeline
from bench.policies import ExchangePolicy, MessageCounts, PeerPolicy, lookup_tool
from bench.receiver import ReceiverProcess, ReceiverStats
from runtime.agent import AgentResult, AgentSpec, RunConfig, RunContext, run_agent
from runtime.hub import AgentState, Hub
from runtime.limits import RunLimits
from runtime.scripted import Conversation, Reply, ScriptedModel
from telemetry.spans import current_context

MODEL: Final = "claude-opus-4-8"
#: The benchmark sizes its own runs; the per-run safety caps would only get in the way.
UNLIMITED: Final = RunLimits(
    max_agents=None,
    max_model_calls=None,
    max_tokens_total=None,
    max_concurrent_calls=None,
    max_message_chars=None,
)


class CountingPolicy(Protocol):
    """A policy that counts the messages it sends and reads."""

    counts: MessageCounts

    def __call__(self, conv: Conversation) -> Reply:
        """The next reply in ``conv``."""


class Workload(Protocol):
    """A run to measure: who the agents are, how they behave, how slow the model is."""

    @property
    def name(self) -> str:
        """A short name for the report."""

    @property
    def latency(self) -> float:
        """Scripted model latency, seconds per call."""

    def specs(self) -> list[AgentSpec]:
        """The agents, in the order they are registered."""

    def policy(self) -> CountingPolicy:
        """A fresh policy for one run."""

    @property
    def max_turns(self) -> int:
        """A turn cap no agent of a correct run reaches."""


@dataclass(frozen=True)
class Exchange:
    """A lead and ``helpers`` helpers; each helper reports ``rounds`` times (see policies)."""

    name: str
    helpers: int
    rounds: int
    latency: float

    def _helper_names(self) -> list[str]:
        return [f"helper{i}" for i in range(1, self.helpers + 1)]

    def specs(self) -> list[AgentSpec]:
        """The lead, then the helpers (with the ``lookup`` tool)."""
        lead = AgentSpec(
            name="lead",
            role="lead",
            system=f"You are the lead of {self.helpers} helpers.",
            first_user_turn="Answer every helper's report as it comes in, then sum up.",
        )
        helpers = [
            AgentSpec(
                name=name,
                role="helper",
                system=f"You are {name}, a helper.",
                first_user_turn=f"Report to the lead {self.rounds} times; wait for each answer.",
                tools=[lookup_tool()],
            )
            for name in self._helper_names()
        ]
        return [lead, *helpers]

    def policy(self) -> ExchangePolicy:
        """A fresh exchange policy."""
        return ExchangePolicy(self._helper_names(), self.rounds)

    @property
    def max_turns(self) -> int:
        """The lead takes about two turns per report."""
        return 4 * self.helpers * self.rounds + 20

    @property
    def expected_messages(self) -> int:
        """Reports plus answers."""
        return 2 * self.helpers * self.rounds


@dataclass(frozen=True)
class Ring:
    """``agents`` peers, each sending ``messages`` messages (see :class:`PeerPolicy`)."""

    name: str
    agents: int
    messages: int
    latency: float

    def _names(self) -> list[str]:
        return [f"peer{i:04d}" for i in range(1, self.agents + 1)]

    def specs(self) -> list[AgentSpec]:
        """Every peer, all alike."""
        return [
            AgentSpec(
                name=name,
                role="peer",
                system=f"You are {name}, one of {self.agents} peers.",
                first_user_turn=f"Send {self.messages} messages to your peers, read as many.",
            )
            for name in self._names()
        ]

    def policy(self) -> PeerPolicy:
        """A fresh ring policy."""
        return PeerPolicy(self._names(), self.messages)

    @property
    def max_turns(self) -> int:
        """One turn per message sent, at most one wait per message owed, and the last."""
        return 2 * self.messages + 10

    @property
    def expected_messages(self) -> int:
        """Every peer sends ``messages`` messages."""
        return self.agents * self.messages


@dataclass
class RunResult:
    """What one run of one workload under one configuration measured."""

    workload: str
    config: str
    wall_s: float
    cpu_s: float
    loop_cpu_s: float
    flush_s: float
    model_calls: int
    agents: int
    agents_done: int
    messages_sent: int
    messages_delivered: int
    stranded: int
    spans_created: int = 0
    spans_ended: int = 0
    spans_exported: int | None = None
    spans_in_file: int | None = None
    send_spans: int | None = None
    receive_links: int | None = None
    export_problems: list[str] = field(default_factory=list)

    def record_receiver(self, stats: ReceiverStats) -> None:
        """Take the exported-side counts from what the receiver got."""
        self.spans_exported = stats.spans
        self.send_spans = stats.send_spans
        self.receive_links = stats.receive_links

    @property
    def spans_dropped(self) -> int:
        """Spans created but missing at the receiver or in the file."""
        missing = 0
        for got in (self.spans_exported, self.spans_in_file):
            if got is not None:
                missing = max(missing, self.spans_created - got)
        return missing

    def problems(self, expected_messages: int) -> list[str]:
        """Every way this run was not what it should have been (empty when correct)."""
        out = list(self.export_problems)
        if self.agents_done != self.agents:
            out.append(f"{self.agents - self.agents_done} of {self.agents} agents did not finish")
        if self.stranded:
            out.append(f"{self.stranded} agents were woken with no sender left")
        if self.messages_sent != expected_messages:
            out.append(f"{self.messages_sent} messages sent, {expected_messages} expected")
        if self.messages_delivered != self.messages_sent:
            out.append(f"{self.messages_sent} sent but {self.messages_delivered} delivered")
        if self.config != Config.OFF:
            if self.spans_created != self.spans_ended:
                out.append(f"{self.spans_created} spans started, {self.spans_ended} ended")
            if self.spans_exported is not None and self.spans_exported != self.spans_created:
                out.append(f"{self.spans_created} spans created, {self.spans_exported} exported")
            if self.spans_in_file is not None and self.spans_in_file != self.spans_created:
                out.append(f"{self.spans_created} spans created, {self.spans_in_file} in the file")
            if self.send_spans is not None and self.send_spans != self.messages_sent:
                out.append(f"{self.messages_sent} messages sent, {self.send_spans} send spans")
            if self.receive_links is not None and self.receive_links != self.messages_delivered:
                out.append(
                    f"{self.messages_delivered} messages delivered, "
                    f"{self.receive_links} receive links"
                )
        return out


async def _drive(
    run: RunContext, name: str, specs: Sequence[AgentSpec]
) -> tuple[float, list[AgentResult]]:
    started = time.perf_counter()
    with run.telemetry.workflow(name, backend=run.model.backend):
        for spec in specs:
            run.hub.register(spec.name, spec.role)
        parent = current_context()
        results = await asyncio.gather(*(run_agent(run, spec, parent=parent) for spec in specs))
    return time.perf_counter() - started, list(results)


def run_workload(workload: Workload, config: Config, endpoint: str, workdir: Path) -> RunResult:
    """Run ``workload`` once under ``config``, exporting to the receiver at ``endpoint``.

    ``spans_exported`` is left for the caller, who asks the receiver; the spans file (for
    ``otlp+file``) is counted here and deleted.
    """
    gc.collect()
    pipeline = open_pipeline(config, endpoint, workdir)
    policy = workload.policy()
    model = ScriptedModel(latency=workload.latency, policy=policy)
    run = RunContext(
        hub=Hub(),
        model=model,
        telemetry=pipeline.run_telemetry(f"bench-{workload.name}-{config}"),
        config=RunConfig(model=MODEL, max_turns=workload.max_turns, wait_timeout=60.0),
        limits=UNLIMITED,
    )
    specs = workload.specs()
    cpu_started = time.process_time()
    loop_started = time.thread_time()
    wall, results = asyncio.run(_drive(run, workload.name, specs))
    loop_cpu = time.thread_time() - loop_started
    flush, problems = pipeline.close()
    cpu = time.process_time() - cpu_started
    result = RunResult(
        workload=workload.name,
        config=str(config),
        wall_s=wall,
        cpu_s=cpu,
        loop_cpu_s=loop_cpu,
        flush_s=flush,
        model_calls=model.calls,
        agents=len(specs),
        agents_done=sum(
            1 for r in results if r.state is AgentState.DONE and r.reason == "end_turn"
        ),
        messages_sent=policy.counts.sent,
        messages_delivered=policy.counts.received,
        stranded=policy.counts.stranded,
        spans_created=pipeline.tally.started,
        spans_ended=pipeline.tally.ended,
        export_problems=problems,
    )
    if pipeline.spans_file is not None:
        result.spans_in_file = count_file_spans(pipeline.spans_file)
        pipeline.spans_file.unlink()
    return result


def measure(
    workload: Workload, config: Config, receiver: ReceiverProcess, workdir: Path
) -> tuple[RunResult, ReceiverStats | None]:
    """Run ``workload`` under ``config`` and count what reached the receiver."""
    receiver.clear()
    result = run_workload(workload, config, receiver.endpoint, workdir)
    if config is Config.OFF:
        return result, None
    stats = receiver.stats()
    result.record_receiver(stats)
    return result, stats
