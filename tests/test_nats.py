"""The hub on NATS JetStream, against a real ``nats-server -js`` (no mock broker).

A run split over a lead and two worker processes gives the in-process run's answer and
span tree; every receive links to its send, across processes; a duplicate publish is
delivered once; an oversized message is an error result naming the limit; an unreachable
broker is one line and exit status 2.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]
import pytest
from nats_broker import NATS_TEST_MARKS, Broker, free_port, running_broker
from nats_jwt import Identity, Operator
from support import SNAPSHOT_KEYS, Recorder, Traced
from test_jaeger_reader import FakeJaeger
from test_stack import compose, needs_compose

import orchestrace
from runtime.agent import RunConfig, RunContext
from runtime.cli import main
from runtime.errors import ConfigurationError
from runtime.hub import Envelope
from runtime.limits import RunLimits
from runtime.loader import load_team
from runtime.nats_hub import NatsHub, connect
from runtime.runner import execute
from runtime.scripted import Reply, ScriptedModel
from runtime.teams import Agent, Team, fingerprint, scripts_of
from runtime.tools import tool
from runtime.workers import WorkerInfo, await_workers, limits_of, run_config_of, workers_bucket
from telemetry.otlp_json import iter_spans_file
from telemetry.records import SpanRecord
from telemetry.spans import RunTelemetry
from telemetry.summary_file import summarize_file

pytestmark = NATS_TEST_MARKS


ROOT = Path(__file__).resolve().parent.parent
RESEARCH = str(ROOT / "examples" / "research_team.py")
TEAMS = str(ROOT / "tests" / "nats_teams.py")
CLI = [sys.executable, "-m", "runtime.cli"]
#: Hang detectors only: a healthy run takes a few seconds.
PROCESS_SECONDS = 120
#: Scripted model calls of 50 ms (0.25 s scaled by 0.2): wide margins between the
#: messages of a run, so a busy machine does not change which arrive together.
PACE = ["--time-scale", "0.2", "--latency", "0.25"]
#: A worker that writes no spans, at the tests' pace.
QUIET = ["--spans-file", "", *PACE]


def _env(instance: str, **more: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OTEL_", "ORCHESTRACE_HUB", "NATS_"))
    }
    return env | {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        # Which process wrote a span: the spans file keeps each span's resource.
        "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={instance}",
        **more,
    }


@dataclass
class Hosted:
    """The workers :func:`workers` started: ids in order, and each one's output."""

    ids: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)


@contextmanager
def workers(
    broker: Broker,
    target: str,
    spans: Path,
    *hosted: list[str],
    url: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Hosted]:
    """One ``orchestrace worker --once`` per entry of ``hosted`` (started together), each
    ready before the block runs; afterwards each must have exited 0 on its own. ``url``
    (default: the broker's) and ``env`` (added to each worker's environment) connect them
    to a broker with TLS or a password. Yields the workers' ids, and their output once
    they have exited."""
    procs = [
        subprocess.Popen(
            [
                *CLI,
                "worker",
                "--hub",
                url or broker.url,
                target,
                "--once",
                "--spans-file",
                str(spans),
                *PACE,
                *options,
            ],
            cwd=ROOT,
            env=_env(f"worker{i + 1}", **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, options in enumerate(hosted)
    ]
    started = Hosted()
    try:
        for proc in procs:
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert " ready: " in ready, proc.stderr.read() if proc.stderr else ""
            started.ids.append(ready.split()[1])
            started.stdout.append(ready)
        yield started
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=PROCESS_SECONDS)
            assert proc.returncode == 0, err
            assert "Traceback" not in err, err
            started.stdout[i] += out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def start_cli(
    *args: str, instance: str = "lead", env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", *args, "--quiet", *PACE],
        cwd=ROOT,
        env=_env(instance, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_worker(
    url: str, target: str, *options: str, instance: str = "worker1", **env: str
) -> tuple[subprocess.Popen[str], str]:
    """An ``orchestrace worker`` serving until stopped, once it is ready: the process and
    the worker's id."""
    proc = subprocess.Popen(
        [*CLI, "worker", "--hub", url, target, *options],
        cwd=ROOT,
        env=_env(instance, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert " ready: " in ready, proc.communicate()[1] if proc.poll() is not None else ready
    return proc, ready.split()[1]


def _kill(*procs: subprocess.Popen[str] | None) -> None:
    """Kill and reap whichever of ``procs`` still run (a test's cleanup)."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()


def finished(proc: subprocess.Popen[str]) -> str:
    """The stdout of a run that exited 0 (a run still going after PROCESS_SECONDS, a hang,
    is killed rather than left behind)."""
    try:
        out, err = proc.communicate(timeout=PROCESS_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return out


def final_answer(stdout: str) -> str:
    return stdout.split("[lead final answer]\n", 1)[1].split("\n\n", 1)[0]


def shape(records: list[SpanRecord]) -> list[dict[str, Any]]:
    """The span tree with children in a canonical order: what ran, not when.

    Like ``support.span_tree``, but children sorted by content: spans of several
    processes do not start in one order run after run.
    """
    by_id = {r.span_id: r for r in records}
    children: dict[str | None, list[SpanRecord]] = {}
    for r in records:
        parent = r.parent_span_id if r.parent_span_id in by_id else None
        children.setdefault(parent, []).append(r)

    def node(r: SpanRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": r.name,
            "kind": r.kind,
            "attributes": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in r.attributes.items()
                if k in SNAPSHOT_KEYS
            },
        }
        if r.status != "UNSET":
            out["status"] = r.status
        if r.links:
            out["links"] = sorted(_linked(by_id, link.span_id) for link in r.links)
        kids = [node(c) for c in children.get(r.span_id, [])]
        if kids:
            out["children"] = sorted(kids, key=lambda k: json.dumps(k, sort_keys=True))
        return out

    return sorted((node(r) for r in children.get(None, [])), key=lambda k: json.dumps(k))


def _linked(by_id: dict[str, SpanRecord], span_id: str) -> str:
    target = by_id.get(span_id)
    if target is None:
        return "<dangling>"
    return f"{target.name} by {target.attributes.get('gen_ai.agent.name')}"


def _process(record: SpanRecord) -> object:
    return record.resource.get("service.instance.id")


def in_process(target: str) -> tuple[str, list[SpanRecord]]:
    """``target`` run in this process at the subprocesses' pace: its answer and spans."""
    team = load_team(target)
    traced = Traced()
    try:
        run = traced.context(
            model=ScriptedModel(latency=0.25 * 0.2, scripts=scripts_of(team)),
            config=RunConfig(model="claude-opus-4-8", sleep=_scaled(0.2)),
        )
        lead = asyncio.run(execute(team, run))
        return lead.text, traced.records
    finally:
        traced.tracer_provider.shutdown()
        traced.meter_provider.shutdown()


def _scaled(factor: float) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds * factor)

    return sleep


class SplitRun:
    """The research team run in-process and split over a lead and two workers."""

    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.spans = tmp / "split.jsonl"
        with workers(
            broker, RESEARCH, self.spans, ["--agents", "researcher"], ["--agents", "critic"]
        ):
            lead = start_cli("--hub", broker.url, RESEARCH, "--spans-file", str(self.spans))
            self.local, self.local_records = in_process(RESEARCH)  # meanwhile
            self.split = finished(lead)
        self.records = list(iter_spans_file(self.spans))


@pytest.fixture(scope="module")
def research(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> SplitRun:
    return SplitRun(tmp_path_factory.mktemp("research"), broker)


def test_a_team_split_over_two_workers_matches_the_in_process_run(research: SplitRun) -> None:
    assert final_answer(research.split) == research.local
    records = research.records
    assert len({r.trace_id for r in records}) == 1, "one run, one trace"
    assert shape(records) == shape(research.local_records)
    where = {
        r.attributes["gen_ai.agent.name"]: _process(r)
        for r in records
        if r.name.startswith("invoke_agent ")
    }
    assert where == {"planner": "lead", "researcher": "worker1", "critic": "worker2"}
    # The processes' spans, appended to one file, summarise as the one run.
    summary = summarize_file(research.spans)
    for agent in ("planner", "researcher", "critic"):
        assert f"\n  {agent}: " in summary
    assert "· completed" in summary
    # The run said where its agents went, and that its own summary is this process's.
    (placement,) = [line for line in research.split.splitlines() if line.startswith("placement")]
    assert re.fullmatch(
        r"placement: planner → here \(lead\), researcher → worker \w+, critic → worker \w+",
        placement,
    )
    assert "(this summary covers the agents that ran in this process;" in research.split


def test_jaeger_s_copy_of_a_split_run_summarises_as_the_file_does(research: SplitRun) -> None:
    """Jaeger groups a trace by process; ``summary --jaeger`` still shows one run, the same
    as the merged spans files."""
    documents = [json.loads(line) for line in research.spans.read_text().splitlines()]
    (trace_id,) = {r.trace_id for r in research.records}
    with FakeJaeger(documents) as jaeger:
        from_jaeger, from_file = io.StringIO(), io.StringIO()
        assert main(["summary", "--jaeger", jaeger.url, "--trace-id", trace_id], from_jaeger) == 0
        assert main(["summary", str(research.spans), "--trace-id", trace_id], from_file) == 0
    assert from_jaeger.getvalue() == from_file.getvalue()
    for agent in ("planner", "researcher", "critic"):
        assert f"\n  {agent}: " in from_jaeger.getvalue()


def test_every_receive_links_to_its_send_in_another_process(research: SplitRun) -> None:
    records = research.records
    by_id = {r.span_id: r for r in records}
    receives = [r for r in records if r.name.startswith("receive ")]
    crossing = 0
    for receive in receives:
        assert len(receive.links) == receive.attributes["messaging.batch.message_count"]
        for link in receive.links:
            send = by_id[link.span_id]  # the send span is in the run's spans
            assert link.trace_id == receive.trace_id
            assert send.kind == "PRODUCER"
            assert send.name == f"send {receive.attributes['gen_ai.agent.name']}"
            crossing += _process(send) != _process(receive)
    # Every message in this team goes from one agent to another, each in its own process.
    assert crossing == sum(len(r.links) for r in receives) == 5


def test_spawned_helpers_run_on_the_workers_as_children_of_create_subagents(
    broker: Broker, tmp_path: Path
) -> None:
    spans = tmp_path / "spawn.jsonl"
    with workers(broker, "spawn", spans, [], []):
        lead = start_cli("--hub", broker.url, "spawn", "--spans-file", str(spans))
        local, _ = in_process("spawn")  # meanwhile
        split = finished(lead)
    assert final_answer(split) == local

    records = list(iter_spans_file(spans))
    assert len({r.trace_id for r in records}) == 1
    (create,) = [r for r in records if r.name == "execute_tool create_subagents"]
    helpers = [r for r in records if r.name.startswith("invoke_agent helper")]
    assert sorted(r.name for r in helpers) == [f"invoke_agent helper{n}" for n in (1, 2, 3)]
    for helper in helpers:
        assert helper.parent_span_id == create.span_id
        assert helper.attributes["orchestrace.agent.state"] == "killed"
    assert _process(create) == "lead"
    # Spawns spread: each idle worker waits on the template's work queue with a request for
    # one assignment, and the broker serves waiting requests in turn.
    assert {_process(h) for h in helpers} == {"worker1", "worker2"}


def test_a_worker_of_an_edited_team_file_is_skipped_and_the_run_says_where_agents_run(
    broker: Broker, tmp_path: Path
) -> None:
    """A worker started on a copy of the team file whose researcher's instructions were
    edited has the team's name but not its fingerprint: the run does not ask it, runs the
    researcher itself and says so in its placement line; the matching worker says which
    run it joined and how its agent ended."""
    edited = tmp_path / "research_team.py"
    original = Path(RESEARCH).read_text()
    edited.write_text(original.replace("report only what the notes say", "report the notes"))
    assert edited.read_text() != original
    spans = tmp_path / "spans.jsonl"
    stale, stale_id = start_worker(broker.url, str(edited), "--agents", "researcher")
    try:
        with workers(broker, RESEARCH, spans, ["--agents", "critic"]) as hosted:
            out = finished(start_cli("--hub", broker.url, RESEARCH, "--spans-file", str(spans)))
    finally:
        stale.terminate()
        stale_out, _ = stale.communicate(timeout=PROCESS_SECONDS)
    assert stale.returncode == 0
    assert " joined" not in stale_out  # never asked
    (critic,) = hosted.ids
    (placement,) = [line for line in out.splitlines() if line.startswith("placement: ")]
    assert placement == (
        f"placement: planner → here (lead), researcher → here, critic → worker {critic}; "
        "skipped 1 worker(s) of another team 'research' (another file, or edited since it "
        f"started): {stale_id}"
    )
    run_id = next(r.attributes["gen_ai.conversation.id"] for r in iter_spans_file(spans))
    assert hosted.stdout[0].splitlines()[1:] == [
        f"run {run_id}: joined, hosting critic",
        f"run {run_id}: ended, the run is over; critic done (end_turn)",
    ]


def test_a_member_two_workers_offer_runs_on_one_and_the_run_says_so(
    broker: Broker, tmp_path: Path
) -> None:
    spans = tmp_path / "spans.jsonl"
    twice = ["--agents", "critic"]
    with workers(broker, RESEARCH, spans, twice, twice) as hosted:
        out = finished(start_cli("--hub", broker.url, RESEARCH, "--spans-file", str(spans)))
    (placement,) = [line for line in out.splitlines() if line.startswith("placement: ")]
    first, second = (
        hosted.ids if f"critic → worker {hosted.ids[0]}" in placement else hosted.ids[::-1]
    )
    assert placement == (
        f"placement: planner → here (lead), researcher → here, critic → worker {first}; "
        f"critic also offered by worker {second} (unused)"
    )
    critic = [r for r in iter_spans_file(spans) if r.name == "invoke_agent critic"]
    assert len(critic) == 1


@pytest.mark.usefixtures("command_process_state")
def test_a_port_that_does_not_speak_nats_gets_a_hint(
    broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker's monitoring port (HTTP) takes the connection and never says INFO."""
    hub = f"nats://127.0.0.1:{broker.monitor}"
    assert main(["run", "--hub", hub, RESEARCH, "--spans-file", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.endswith(
        "(nothing there spoke NATS: is it the broker's client port, 4222 by default?)\n"
    )


@pytest.mark.asyncio
async def test_workers_of_another_team_of_the_same_name_are_not_counted(broker: Broker) -> None:
    team = load_team(RESEARCH)
    client = await connect(broker.url, name="test")
    try:
        bucket = await workers_bucket(client)
        other = WorkerInfo(uuid.uuid4().hex[:12], "research", ("critic",), (), "0" * 16)
        await bucket.put(f"worker.{other.id}", other.to_json())
        with pytest.raises(ConfigurationError) as caught:
            await await_workers(client, team, 1, 0)
        assert str(caught.value) == (
            "0 of 1 workers of team 'research' came up within 0 s (start them with "
            "`orchestrace worker --hub URL TARGET`; 1 more of a different team 'research' "
            "(another file, or edited since it started) not counted)"
        )
        await bucket.delete(f"worker.{other.id}")
    finally:
        await client.close()


def test_a_team_s_fingerprint_changes_with_what_its_agents_are() -> None:
    """Same definition, same digest (in another process too: no addresses in it); an edit
    to instructions, a tool's code or a script changes it."""

    @tool
    def lookup(topic: str) -> str:
        """Look a topic up."""
        return topic

    @tool(name="lookup")
    def lookup_edited(topic: str) -> str:
        """Look a topic up."""
        return topic.upper()

    def team(
        instructions: str = "Plan.",
        tools: list[object] | None = None,
        script: list[Reply] | None = None,
    ) -> Team:
        return Team(
            "t",
            [
                Agent("lead", instructions, task="go", script=script or [Reply.say("done")]),
                Agent("member", "Help.", tools=tools or [lookup]),
            ],
        )

    base = fingerprint(team())
    assert fingerprint(team()) == base
    assert fingerprint(team(instructions="Plan well.")) != base
    assert fingerprint(team(tools=[lookup_edited])) != base
    assert fingerprint(team(script=[Reply.say("done!")])) != base
    research = subprocess.run(
        [
            sys.executable,
            "-c",
            "from runtime.loader import load_team; from runtime.teams import "
            f"fingerprint; print(fingerprint(load_team({RESEARCH!r})))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()
    assert research == fingerprint(load_team(RESEARCH))


def test_a_killed_worker_s_agent_crashes_and_its_unread_message_goes_back(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "napping"
    # A short heartbeat TTL (set by the first process to create the workers bucket), long
    # enough that a loaded machine does not starve the worker's heartbeat thread past it.
    env = {"NAP_MARKER": str(marker), "ORCHESTRACE_WORKER_TTL": "3"}
    with running_broker(tmp_path) as fresh:
        worker, _ = start_worker(fresh.url, f"{TEAMS}:crash", "--agents", "napper", *QUIET, **env)
        lead = None
        try:
            lead = start_cli("--hub", fresh.url, f"{TEAMS}:crash", "--spans-file", "")
            # Kill the worker once the napper is in its tool and its worker holds the
            # lead's message unacknowledged: fetched, never read.
            while not marker.exists() or not _held(fresh, "inbox-napper"):
                assert lead.poll() is None, f"the lead ended before the kill: {finished(lead)}"
                time.sleep(0.05)
            worker.kill()
            out = finished(lead)
        finally:
            _kill(worker, lead)
    # The lead took the napper's inbox over and bounced the message the dead worker held.
    assert final_answer(out) == "told: undeliverable"


def test_a_worker_stopped_mid_run_ends_its_agent_and_says_so(
    broker: Broker, tmp_path: Path
) -> None:
    """SIGINT on a worker whose agent is in a tool: the worker ends the agent (killed,
    cancelled), prints that on its run line and exits 0; the lead's unread message comes
    back to it as undeliverable, as it does when an agent is killed in one process."""
    marker = tmp_path / "napping"
    worker, _ = start_worker(
        broker.url, f"{TEAMS}:crash", "--agents", "napper", *QUIET, NAP_MARKER=str(marker)
    )
    lead = None
    try:
        lead = start_cli("--hub", broker.url, f"{TEAMS}:crash", "--spans-file", "")
        while not marker.exists():  # the napper is in its tool
            assert lead.poll() is None, f"the lead ended first: {finished(lead)}"
            time.sleep(0.05)
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=PROCESS_SECONDS)
        assert worker.returncode == 0, err
        assert "Traceback" not in err
        (line,) = [x for x in out.splitlines() if ": ended, " in x]
        assert line.endswith(": ended, this worker was stopped; napper killed (cancelled)")
        assert final_answer(finished(lead)) == "told: undeliverable"
    finally:
        _kill(worker, lead)


def test_a_broker_restarted_mid_run_loses_no_message(tmp_path: Path) -> None:
    napping, resume = tmp_path / "napping", tmp_path / "resume"
    env = _env("worker1", NAP_MARKER=str(napping), RESUME_MARKER=str(resume))
    spans = tmp_path / "spans.jsonl"
    with running_broker(tmp_path) as fresh:
        worker = subprocess.Popen(
            [
                *CLI,
                "worker",
                "--hub",
                fresh.url,
                f"{TEAMS}:restart",
                "--agents",
                "napper",
                "--once",
                "--spans-file",
                str(spans),
                *PACE,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lead = None
        try:
            assert worker.stdout is not None
            assert " ready: " in worker.stdout.readline()
            lead = start_cli("--hub", fresh.url, f"{TEAMS}:restart", "--spans-file", str(spans))
            # The lead's hello is on the broker (file storage) when it goes down.
            while not napping.exists() or not _stored(fresh, "inbox-napper"):
                time.sleep(0.05)
            fresh.stop()
            fresh.start()  # same port, same store
            resume.touch()
            out = finished(lead)
            _, err = worker.communicate(timeout=PROCESS_SECONDS)
            assert worker.returncode == 0, err
        finally:
            for proc in (worker, lead):
                if proc is not None:
                    if proc.poll() is None:
                        proc.kill()
                    proc.communicate()
    assert final_answer(out) == "got: back: hello"
    records = list(iter_spans_file(spans))
    assert {r.name for r in records if r.name.startswith("invoke_agent ")} == {
        "invoke_agent lead",
        "invoke_agent napper",
    }


def test_a_killed_lead_ends_its_agents_on_the_workers(tmp_path: Path) -> None:
    marker = tmp_path / "napping"
    env = _env("worker1", NAP_MARKER=str(marker), ORCHESTRACE_WORKER_TTL="1")
    spans = tmp_path / "spans.jsonl"
    with running_broker(tmp_path) as fresh:
        worker = subprocess.Popen(
            [
                *CLI,
                "worker",
                "--hub",
                fresh.url,
                f"{TEAMS}:crash",
                "--agents",
                "napper",
                "--once",
                "--spans-file",
                str(spans),
                *PACE,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lead = None
        try:
            assert worker.stdout is not None
            assert " ready: " in worker.stdout.readline()
            lead = start_cli("--hub", fresh.url, f"{TEAMS}:crash", "--spans-file", "")
            while not marker.exists():
                time.sleep(0.05)
            lead.kill()
            # The worker notices the lead's heartbeat expire, ends the napper, exits.
            _, err = worker.communicate(timeout=PROCESS_SECONDS)
            assert worker.returncode == 0, err
            assert "the run's lead is gone" in err
        finally:
            for proc in (worker, lead):
                if proc is not None:
                    if proc.poll() is None:
                        proc.kill()
                    proc.communicate()
    (napper,) = [r for r in iter_spans_file(spans) if r.name == "invoke_agent napper"]
    assert napper.attributes["orchestrace.agent.state"] == "killed"


def test_a_worker_whose_event_loop_is_busy_is_not_taken_for_dead(tmp_path: Path) -> None:
    # The grinder's tool holds its worker's event loop for 6 s, three heartbeat TTLs: the
    # heartbeat, beating from a thread of its own, keeps the worker alive in the registry.
    # (A 2 s TTL, not 1: on a machine busy enough, a whole process can be kept off the
    # CPU for a second.)
    env = _env("worker1", ORCHESTRACE_WORKER_TTL="2")
    with running_broker(tmp_path) as fresh:
        worker = subprocess.Popen(
            [
                *CLI,
                "worker",
                "--hub",
                fresh.url,
                f"{TEAMS}:busy",
                "--agents",
                "grinder",
                "--once",
                "--spans-file",
                "",
                *PACE,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lead = None
        try:
            assert worker.stdout is not None
            assert " ready: " in worker.stdout.readline()
            lead = start_cli("--hub", fresh.url, f"{TEAMS}:busy", "--spans-file", "")
            out, lead_err = lead.communicate(timeout=PROCESS_SECONDS)
            assert lead.returncode == 0, lead_err
            _, err = worker.communicate(timeout=PROCESS_SECONDS)
            assert worker.returncode == 0, err
        finally:
            for proc in (worker, lead):
                if proc is not None:
                    if proc.poll() is None:
                        proc.kill()
                    proc.communicate()
    assert final_answer(out) == "grinder: ground"
    assert "worker lost" not in lead_err  # the lead never declared the grinder crashed


def _stored(broker: Broker, consumer: str) -> bool:
    """True when ``consumer`` has a message waiting or delivered and unacknowledged."""
    return any(c["num_pending"] + c["num_ack_pending"] > 0 for c in _consumers(broker, consumer))


def _held(broker: Broker, consumer: str) -> bool:
    """True when ``consumer`` has a message delivered and not acknowledged."""
    return any(c["num_ack_pending"] > 0 for c in _consumers(broker, consumer))


def _consumers(broker: Broker, consumer: str) -> list[dict[str, Any]]:
    """The monitoring endpoint's details of every consumer named ``consumer``."""
    url = f"http://127.0.0.1:{broker.monitor}/jsz?consumers=true"
    with urllib.request.urlopen(url, timeout=10) as response:
        report = json.load(response)
    return [
        c
        for account in report.get("account_details", [])
        for stream in account.get("stream_detail", [])
        for c in stream.get("consumer_detail", [])
        if c["name"] == consumer
    ]


@pytest.mark.asyncio
async def test_a_duplicate_publish_is_delivered_once(broker: Broker) -> None:
    client = await connect(broker.url, name="test")
    hub = NatsHub(client, uuid.uuid4().hex, host="test", lead=True)
    try:
        await hub.open()
        hub.register("a")
        hub.register("b")
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        first = Envelope("msg-1", "a", "b", "hello", hub.now_ns(), traceparent)
        await hub.send(first)
        await hub.send(first)  # the same message id again: a retried publish
        await hub.send(Envelope("msg-2", "a", "b", "last", hub.now_ns()))
        got: list[Envelope] = []
        while not any(e.message_id == "msg-2" for e in got):  # the stream keeps order
            await hub.wait("b", 60)
            got += hub.drain("b")
        assert [e.message_id for e in got] == ["msg-1", "msg-2"]
        assert got[0] == first  # the trace context came back through the headers
    finally:
        await hub.close()
        await client.close()


@pytest.mark.asyncio
async def test_a_slow_reader_loses_nothing(broker: Broker) -> None:
    """Messages wait in the stream until their agent drains them: the broker never pushes
    more than the agent's process fetches (pull consumers), so there is no slow-consumer
    drop. 300 messages sent before the first drain all arrive, once, in order."""
    client = await connect(broker.url, name="test")
    hub = NatsHub(client, uuid.uuid4().hex, host="test", lead=True)
    try:
        await hub.open()
        hub.register("writer")
        hub.register("reader")
        sent = [f"msg-{n}" for n in range(300)]
        for message_id in sent:
            await hub.send(Envelope(message_id, "writer", "reader", "x" * 100, hub.now_ns()))
        got: list[str] = []
        while len(got) < len(sent):
            await hub.wait("reader", 60)
            got += [e.message_id for e in hub.drain("reader")]
        assert got == sent
    finally:
        await hub.close()
        await client.close()


@pytest.mark.asyncio
async def test_an_oversized_message_is_an_error_result_naming_the_limit(
    tmp_path: Path, traced: Traced
) -> None:
    recorder = Recorder(
        {
            "lead": [
                Reply.call("send_message", recipient_ids=["other"], content="x" * 10_000),
                Reply.say("gave up"),
            ],
            "other": [Reply.call("wait_for_message"), Reply.say("ok")],
        }
    )
    team = Team("big", [Agent("lead", task="send it"), Agent("other", task="wait")])
    with running_broker(tmp_path, max_payload=4096) as small:
        client = await connect(small.url, name="test")
        hub = NatsHub(client, uuid.uuid4().hex, host="lead", lead=True)
        try:
            await hub.open()
            run = RunContext(
                hub=hub,
                model=ScriptedModel(latency=0, scripts={"lead": recorder, "other": recorder}),
                telemetry=RunTelemetry(
                    run_id=hub.subjects.run_id,
                    tracer_provider=traced.tracer_provider,
                    meter_provider=traced.meter_provider,
                ),
                config=RunConfig(model="claude-opus-4-8", wait_timeout=0.5),
            )
            lead = await execute(team, run)
        finally:
            await hub.close()
            await client.close()
    assert lead.reason == "end_turn"
    (result,) = recorder.tool_results("lead")
    assert result["is_error"] is True
    assert "over the broker's max_payload of 4096 bytes" in result["content"]
    (send,) = traced.named("execute_tool send_message")
    assert (send.attributes or {})["error.type"] == "too_large"


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize("command", ["run", "worker"])
def test_an_unreachable_broker_is_one_line_and_exit_2(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    quiet = ["--quiet"] if command == "run" else []
    assert main([command, "--hub", url, "spawn", *quiet, "--spans-file", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"orchestrace {command}: cannot reach the NATS broker at {url}")


@pytest.mark.usefixtures("command_process_state")
def test_a_broker_without_jetstream_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_broker(tmp_path, jetstream=False) as plain:
        assert main(["run", "--hub", plain.url, "spawn", "--quiet", "--spans-file", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"orchestrace run: the NATS broker at {plain.url} has no JetStream (start it with -js)"
    )


@pytest.mark.usefixtures("command_process_state")
def test_the_hub_url_may_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    monkeypatch.setenv("ORCHESTRACE_HUB_URL", url)
    assert main(["run", "spawn", "--quiet", "--spans-file", ""]) == 2
    assert capsys.readouterr().err.startswith(
        f"orchestrace run: cannot reach the NATS broker at {url}"
    )


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize("url", ["http://127.0.0.1:4222", "nats://", "127.0.0.1:4222"])
def test_a_hub_that_is_not_a_nats_url_is_one_line_and_exit_2(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--hub", url, "spawn", "--quiet", "--spans-file", ""]) == 2
    assert capsys.readouterr().err == (
        f"orchestrace run: --hub expects nats://HOST:PORT or tls://HOST:PORT, got {url!r}\n"
    )


@needs_compose
def test_the_compose_profile_splits_spawn_over_a_lead_and_two_workers() -> None:
    result = compose("--profile", "nats", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    broker = services["nats"]
    assert re.fullmatch(r"nats:\d+\.\d+\.\d+-alpine", broker["image"]), "pinned"
    assert "-js" in broker["command"]
    monitor = broker["command"][broker["command"].index("-m") + 1]
    assert broker["healthcheck"]["test"][-1] == f"http://localhost:{monitor}/healthz"
    hub = "nats://nats:4222"
    workers = [s for s in services.values() if (s.get("command") or [""])[0] == "worker"]
    assert len(workers) == 2
    lead = services["lead"]
    assert lead["command"][:3] == ["run", "--hub", hub]
    assert lead["command"][lead["command"].index("--workers") + 1] == "2"
    for process in [*workers, lead]:
        assert process["profiles"] == ["nats"]
        assert hub in process["command"]
        assert "spawn" in process["command"]
        assert process["depends_on"]["nats"]["condition"] == "service_healthy"
        assert process["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    assert 'pip install ".[nats]"' in (ROOT / "Dockerfile").read_text()


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["spawn"], "give the broker with --hub URL or $ORCHESTRACE_HUB_URL"),
        (
            ["--hub", "nats://127.0.0.1:4222", RESEARCH, "--agents", "planner"],
            "--agents: 'planner' is not a member of team 'research' (members: researcher, "
            "critic; the lead runs with `run`)",
        ),
        (
            ["--hub", "nats://127.0.0.1:4222", "spawn", "--templates", "nurse"],
            "--templates: 'nurse' is not a template of team 'spawn' (templates: helper)",
        ),
        (
            ["--hub", "nats://127.0.0.1:4222", RESEARCH],
            "this worker would host nothing: name members with --agents (researcher, critic) "
            "or give the team templates",
        ),
    ],
)
def test_a_worker_with_nothing_to_host_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", *args]) == 2
    assert capsys.readouterr().err == f"orchestrace worker: {message}\n"


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize(("option", "value"), [("--workers", "2"), ("--hub-creds", "user.creds")])
def test_a_broker_option_without_a_broker_is_one_line_and_exit_2(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not ignored: without --hub the run would quietly keep every agent in one process."""
    assert main(["run", "spawn", option, value, "--spans-file", ""]) == 2
    assert capsys.readouterr().err == (
        f"orchestrace run: {option} needs a broker: give --hub URL or $ORCHESTRACE_HUB_URL\n"
    )


@pytest.mark.usefixtures("command_process_state")
def test_a_worker_takes_a_member_list_with_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    """``--agents "researcher, critic"`` names two members, as a person would type them."""
    assert (
        main(
            [
                "worker",
                "--hub",
                f"nats://127.0.0.1:{free_port()}",
                RESEARCH,
                "--agents",
                "researcher, critic",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot reach the NATS broker" in err  # past the member check: both were found


def test_workers_get_the_lead_s_run_settings_and_caps() -> None:
    config = RunConfig(model="claude-x", max_tokens=99, max_turns=7, wait_timeout=3.5)
    limits = RunLimits(max_message_chars=10, max_model_calls=None, max_agents=4)
    sent = json.loads(json.dumps(run_config_of(config, limits)))  # as on the wire
    assert limits_of(sent) == limits
    assert {k: sent[k] for k in ("model", "max_tokens", "max_turns", "wait_timeout")} == {
        "model": "claude-x",
        "max_tokens": 99,
        "max_turns": 7,
        "wait_timeout": 3.5,
    }
    assert limits_of({}) == RunLimits()  # a lead that sent no caps: the defaults


def test_the_library_runs_a_team_on_the_broker(broker: Broker, tmp_path: Path) -> None:
    """``orchestrace.run(team, hub=URL)``: the lead in this process, the critic on a worker."""
    team = load_team(RESEARCH)
    spans = tmp_path / "worker.jsonl"
    traced = Traced()
    try:
        with workers(broker, RESEARCH, spans, ["--agents", "critic"]):
            result = asyncio.run(
                orchestrace.run(
                    team,
                    "What are span links?",
                    model=ScriptedModel(latency=0.01, scripts=scripts_of(team)),
                    tracer_provider=traced.tracer_provider,
                    meter_provider=traced.meter_provider,
                    hub=broker.url,
                )
            )
    finally:
        traced.tracer_provider.shutdown()
        traced.meter_provider.shutdown()
    local, _ = in_process(RESEARCH)
    assert result.completed
    assert result.text == local
    here = {s.name for s in traced.named("invoke_agent ")}
    assert here == {"invoke_agent planner", "invoke_agent researcher"}
    there = [r for r in iter_spans_file(spans) if r.name.startswith("invoke_agent ")]
    assert [r.name for r in there] == ["invoke_agent critic"]
    assert {r.trace_id for r in there} == {result.trace_id}
    # Every agent's outcome, the one on the worker included (as the registry tells it).
    outcomes = {name: (a.state, a.reason) for name, a in result.agents.items()}
    assert outcomes == dict.fromkeys(("planner", "researcher", "critic"), ("done", "end_turn"))
    assert result.agents["critic"].text


def test_the_library_says_when_the_broker_is_unreachable() -> None:
    team = load_team(RESEARCH)
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigurationError, match=f"cannot reach the NATS broker at {url}"):
        asyncio.run(
            orchestrace.run(
                team,
                "What are span links?",
                model=ScriptedModel(latency=0, scripts=scripts_of(team)),
                hub=url,
                spans_file=None,
            )
        )


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a certificate for 127.0.0.1 signed by it with its key (openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make test certificates")

    def sh(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=tmp, check=True, capture_output=True)

    sh("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
       "-days", "2", "-subj", "/CN=orchestrace test CA")  # fmt: skip
    sh("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
       "-subj", "/CN=127.0.0.1")  # fmt: skip
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    sh("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path]]:
    """A broker that speaks only TLS and wants a user and password; and its CA file."""
    tmp = tmp_path_factory.mktemp("guarded")
    ca, cert, key = _certificates(tmp)
    config = (
        f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
        'authorization { user: alice, password: "s3cret-pw" }\n'
    )
    with running_broker(tmp, config_text=config) as running:
        yield running, ca


def test_a_run_reaches_a_broker_over_tls_with_a_password(
    guarded: tuple[Broker, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password in the URL, the broker's CA from ``NATS_CA`` (the nats CLI's names):
    a worker and the library's lead complete one run through the guarded broker."""
    broker, ca = guarded
    url = f"tls://alice:s3cret-pw@127.0.0.1:{broker.port}"
    monkeypatch.setenv("NATS_CA", str(ca))
    team = load_team(RESEARCH)
    spans = tmp_path / "worker.jsonl"
    with workers(
        broker, RESEARCH, spans, ["--agents", "critic"], url=url, env={"NATS_CA": str(ca)}
    ):
        result = asyncio.run(
            orchestrace.run(
                team,
                "What are span links?",
                model=ScriptedModel(latency=0.01, scripts=scripts_of(team)),
                hub=url,
                spans_file=None,
            )
        )
    assert result.completed
    assert result.text == in_process(RESEARCH)[0]
    critic = [r for r in iter_spans_file(spans) if r.name == "invoke_agent critic"]
    assert [r.trace_id for r in critic] == [result.trace_id]


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize(
    ("credentials", "ca", "reason"),
    [
        ("alice:wrong-pw", True, "Authorization Violation"),
        ("alice:s3cret-pw", False, "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_a_broker_that_refuses_the_client_says_why_without_the_password(
    guarded: tuple[Broker, Path],
    credentials: str,
    ca: bool,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker, ca_file = guarded
    if ca:
        monkeypatch.setenv("NATS_CA", str(ca_file))
    url = f"tls://{credentials}@127.0.0.1:{broker.port}"
    assert main(["worker", "--hub", url, RESEARCH, "--agents", "critic", "--once"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("orchestrace worker: cannot reach the NATS broker at tls://alice:")
    assert reason in err
    assert "pw@" not in err  # the password is redacted from the URL


TOKEN = "s3cret-token-4711"


@pytest.fixture(scope="module")
def tokened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker that wants a token (``nats://TOKEN@host``, as NATS clients take one)."""
    tmp = tmp_path_factory.mktemp("tokened")
    with running_broker(tmp, config_text=f'authorization {{ token: "{TOKEN}" }}\n') as running:
        yield running


def test_a_run_reaches_a_broker_with_a_token_in_the_url(tokened: Broker, tmp_path: Path) -> None:
    url = f"nats://{TOKEN}@127.0.0.1:{tokened.port}"
    spans = tmp_path / "split.jsonl"
    with workers(tokened, RESEARCH, spans, ["--agents", "critic"], url=url):
        lead = start_cli("--hub", url, RESEARCH, "--spans-file", str(spans))
        assert final_answer(finished(lead)) == in_process(RESEARCH)[0]
    critic = [r for r in iter_spans_file(spans) if r.name == "invoke_agent critic"]
    assert len(critic) == 1


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_refused_token_is_one_line_that_does_not_show_it(
    tokened: Broker, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"nats://wrong-token-0815@127.0.0.1:{tokened.port}"
    assert (
        main([command, "--hub", url, RESEARCH, *(["--agents", "critic"] * (command == "worker"))])
        == 2
    )
    err = capsys.readouterr().err
    assert err == (
        f"orchestrace {command}: cannot reach the NATS broker at "
        f"nats://[REDACTED]@127.0.0.1:{tokened.port}: nats: 'Authorization Violation'\n"
    )


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Operator]]:
    """A broker in operator (decentralized JWT) mode: it trusts one operator and knows its
    two accounts (the system account, and one with JetStream); and that operator's keys."""
    tmp = tmp_path_factory.mktemp("operated")
    operator = Operator.new()
    with running_broker(tmp, config_text=operator.server_config(tmp)) as running:
        yield running, operator


@pytest.mark.parametrize("how", ["--hub-creds", "NATS_CREDS"])
def test_a_run_reaches_a_broker_in_operator_mode_with_a_credentials_file(
    operated: tuple[Broker, Operator], tmp_path: Path, how: str
) -> None:
    """A worker and the lead, each with its own user of the account (``--hub-creds``) or
    one ``.creds`` file from ``NATS_CREDS``, complete one run through a broker that takes
    no one without a user JWT of its operator."""
    broker, operator = operated
    spans = tmp_path / "split.jsonl"
    if how == "--hub-creds":
        worker = ["--hub-creds", str(operator.creds(tmp_path / "worker.creds", name="worker"))]
        lead = ["--hub-creds", str(operator.creds(tmp_path / "lead.creds", name="lead"))]
        env = {}
    else:
        worker = lead = []
        env = {"NATS_CREDS": str(operator.creds(tmp_path / "app.creds"))}
    with workers(broker, RESEARCH, spans, ["--agents", "critic", *worker], env=env):
        run = start_cli("--hub", broker.url, RESEARCH, "--spans-file", str(spans), *lead, env=env)
        split = finished(run)
    assert final_answer(split) == in_process(RESEARCH)[0]
    records = list(iter_spans_file(spans))
    assert len({r.trace_id for r in records}) == 1, "one run, one trace"
    where = {
        r.attributes["gen_ai.agent.name"]: _process(r)
        for r in records
        if r.name.startswith("invoke_agent ")
    }
    assert where == {"planner": "lead", "researcher": "lead", "critic": "worker1"}


def test_the_library_reaches_a_broker_in_operator_mode_and_waits_for_its_worker(
    operated: tuple[Broker, Operator], tmp_path: Path
) -> None:
    """``orchestrace.run(hub=..., hub_creds=..., workers=1)``: the library's lead with a
    credentials file of its own, started once the worker is up."""
    broker, operator = operated
    team = load_team(RESEARCH)
    creds = ["--hub-creds", str(operator.creds(tmp_path / "worker.creds", name="worker"))]
    with workers(broker, RESEARCH, tmp_path / "worker.jsonl", ["--agents", "critic", *creds]):
        result = orchestrace.run_sync(
            team,
            "What are span links?",
            model=ScriptedModel(latency=0.01, scripts=scripts_of(team)),
            hub=broker.url,
            hub_creds=str(operator.creds(tmp_path / "lead.creds", name="lead")),
            workers=1,
            spans_file=None,
        )
    assert result.completed
    assert result.text == in_process(RESEARCH)[0]
    assert result.agents["critic"].reason == "end_turn"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 1}, "run(workers=..., hub_creds=...) need a broker: give hub=URL"),
        ({"hub_creds": "u.creds"}, "run(workers=..., hub_creds=...) need a broker: give hub=URL"),
        (
            {"workers": -1, "hub": "nats://127.0.0.1:4222"},
            "run(workers=...) must be a whole number >= 0, got -1",
        ),
    ],
)
def test_the_library_s_broker_options_are_checked(options: dict[str, Any], message: str) -> None:
    team = load_team(RESEARCH)
    with pytest.raises(ConfigurationError) as caught:
        orchestrace.run_sync(team, "?", offline=True, spans_file=None, **options)
    assert str(caught.value) == message


def _untrusted(operator: Operator, tmp: Path) -> list[str]:
    """A valid-looking credentials file the broker does not trust: a user of another
    operator's account."""
    return ["--hub-creds", str(Operator.new().creds(tmp / "other.creds"))]


def _unknown_account(operator: Operator, tmp: Path) -> list[str]:
    """A user of an account the broker does not know (signed by the operator's key, but
    not in its resolver)."""
    account = Identity.new(nkeys.PREFIX_BYTE_ACCOUNT)
    return ["--hub-creds", str(operator.creds(tmp / "unknown.creds", account=account))]


def _system_user(operator: Operator, tmp: Path) -> list[str]:
    """A user of the system account, which has no JetStream."""
    return ["--hub-creds", str(operator.creds(tmp / "sys.creds", account=operator.system))]


def _block(marker: str) -> Callable[[Operator, Path], list[str]]:
    """A credentials file without its ``marker`` block (the JWT or the seed)."""

    def creds(operator: Operator, tmp: Path) -> list[str]:
        text = operator.creds(tmp / "whole.creds").read_text()
        start = text.index(f"-----BEGIN {marker}-----")
        end = text.index("------\n", text.index(f"------END {marker}")) + len("------\n")
        (tmp / "part.creds").write_text(text[:start] + text[end:])
        return ["--hub-creds", str(tmp / "part.creds")]

    return creds


@pytest.mark.parametrize(
    ("command", "credentials", "reason"),
    [
        ("worker", _untrusted, "nats: 'Authorization Violation'"),
        ("run", _untrusted, "nats: 'Authorization Violation'"),
        ("run", _unknown_account, "nats: 'Authorization Violation'"),
        ("worker", lambda operator, tmp: [], "nats: 'Authorization Violation'"),
        ("run", lambda operator, tmp: [], "nats: 'Authorization Violation'"),
        ("run", _system_user, "has no JetStream (not enabled for this account)"),
        ("worker", _block("NATS USER JWT"), "holds no user JWT (a -----BEGIN NATS USER JWT"),
        ("run", _block("USER NKEY SEED"), "holds no seed (a -----BEGIN USER NKEY SEED-----"),
    ],
    ids=[
        "worker-untrusted-operator",
        "run-untrusted-operator",
        "run-unknown-account",
        "worker-no-credentials",
        "run-no-credentials",
        "run-system-account",
        "worker-no-jwt",
        "run-no-seed",
    ],
)
def test_a_broker_in_operator_mode_refuses_wrong_credentials_in_one_line(
    operated: tuple[Broker, Operator],
    tmp_path: Path,
    command: str,
    credentials: Callable[[Operator, Path], list[str]],
    reason: str,
) -> None:
    """Exit 2 and one line saying why, at once: a refusal is not retried (the wait below
    only detects a hang). Without its JWT block a credentials file used to hang nats-py in
    a loop that blocks the event loop."""
    broker, operator = operated
    options = credentials(operator, tmp_path)
    target = [RESEARCH, "--agents", "critic", "--once"] if command == "worker" else ["spawn"]
    spans = ["--spans-file", str(tmp_path / "spans.jsonl")]
    proc = subprocess.Popen(
        [*CLI, command, "--hub", broker.url, *target, *options, *spans],
        cwd=ROOT,
        env=_env(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=PROCESS_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"orchestrace {command}: "), err
    assert reason in err, err


@pytest.mark.usefixtures("command_process_state")
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NATS_CREDS": "/nonexistent/user.creds"}, "the NATS credentials file (--hub-creds /"),
        ({"NATS_CA": "/nonexistent/ca.pem"}, "NATS_CA '/nonexistent/ca.pem' cannot be read"),
        ({"NATS_KEY": "/some/key.pem"}, "NATS_KEY is set without NATS_CERT"),
        ({"ORCHESTRACE_WORKER_TTL": "-1"}, "ORCHESTRACE_WORKER_TTL='-1': expected a number"),
        ({"ORCHESTRACE_HUB_URL": "http://x"}, "ORCHESTRACE_HUB_URL='http://x': expected nats"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_bad_broker_setting_is_one_line_and_exit_2(
    env: dict[str, str],
    message: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused before anything is set up: no spans file, no connection attempt."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    url = [] if "ORCHESTRACE_HUB_URL" in env else ["--hub", f"nats://127.0.0.1:{free_port()}"]
    target = [RESEARCH, "--agents", "critic"] if command == "worker" else ["spawn", "--quiet"]
    assert main([command, *url, *target]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"orchestrace {command}: "), err
    assert err.count("\n") == 1, err
    assert message in err
    assert list(tmp_path.iterdir()) == []  # not even the default spans file
