"""Agents in several processes: the lead's placement and the ``orchestrace worker`` loop.

A worker announces itself in the ``orchestrace-workers`` bucket (its team, the agents it
pins with ``--agents``, the templates it offers) and refreshes the entry while it lives.
The process that starts a run reads the live workers of its team, asks each to join the
run (a request on ``orchestrace.worker.<id>.join``), registers the pinned members as
hosted there, and starts them with the workflow span's context in the request headers.
Spawned instances of an offered template go to the run's ``spawn.<template>`` subject,
whose one durable consumer the offering workers share: each assignment is taken by one
of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from nats.js.kv import KeyValue
from opentelemetry.context import Context

from runtime.agent import AgentResult, AgentSpec, RunConfig, RunContext, run_agent
from runtime.errors import ConfigurationError
from runtime.hub import AgentState
from runtime.limits import RunLimits
from runtime.nats_hub import (
    WORKERS_BUCKET,
    NatsHub,
    RunSubjects,
    connect,
    extract_context,
    inject_context,
    token,
)
from runtime.subagents import spawned_spec
from runtime.teams import Team, fingerprint, member_spec
from telemetry import settings
from telemetry.logs import get_logger

log = get_logger("orchestrace.workers")

#: Seconds after its last heartbeat that a worker counts as gone (its agents crashed);
#: it beats five times as often. Only the first worker to create the bucket sets it.
DEFAULT_WORKER_TTL_SECONDS: Final = settings.WORKER_TTL.default


def worker_ttl() -> float:
    """The worker TTL from ``ORCHESTRACE_WORKER_TTL`` (ConfigurationError if not > 0)."""
    try:
        return settings.WORKER_TTL.get()
    except settings.SettingError as exc:
        raise ConfigurationError(str(exc)) from None


#: How long `run --workers N` (and ``run(workers=N)``) waits for the workers to come up.
WORKERS_WAIT_SECONDS: Final = 60.0
#: How long the lead waits for a worker to answer a join or start request.
REQUEST_SECONDS: Final = 10.0


@dataclass(frozen=True)
class WorkerInfo:
    """What a live worker offers: its team (name and :func:`~runtime.teams.fingerprint`),
    pinned agents and templates."""

    id: str
    team: str
    agents: tuple[str, ...]
    templates: tuple[str, ...]
    fingerprint: str = ""

    def to_json(self) -> bytes:
        """The entry in the workers bucket."""
        return json.dumps(
            {
                "id": self.id,
                "team": self.team,
                "agents": self.agents,
                "templates": self.templates,
                "fingerprint": self.fingerprint,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> WorkerInfo:
        """Read an entry of the workers bucket (ValueError / KeyError if malformed)."""
        value = json.loads(data)
        return cls(
            str(value["id"]),
            str(value["team"]),
            tuple(str(a) for a in value["agents"]),
            tuple(str(t) for t in value["templates"]),
            str(value.get("fingerprint", "")),
        )


def placement_line(
    team: Team,
    pinned: Mapping[str, str],
    templates: set[str],
    skipped: Sequence[str] = (),
    unused: Mapping[str, str] | None = None,
) -> str:
    """Where a split run's agents run, in one line: each member on its worker or here,
    which templates workers take, the workers skipped for a different team, and members
    a second worker also offered (the first one hosts them)."""
    placed = [
        f"{a.name} → worker {pinned[a.name]}" if a.name in pinned else f"{a.name} → here"
        for a in team.agents
        if a.name != team.lead
    ]
    parts = [f"{team.lead} → here (lead)", *placed]
    for template in team.templates:
        where = "workers" if template.name in templates else "here (no worker takes it)"
        parts.append(f"{template.name}* → {where}")
    line = "placement: " + ", ".join(parts)
    if skipped:
        line += (
            f"; skipped {len(skipped)} worker(s) of another team {team.name!r} "
            f"(another file, or edited since it started): {', '.join(skipped)}"
        )
    for member, worker in (unused or {}).items():
        line += f"; {member} also offered by worker {worker} (unused)"
    return line


def _join_subject(worker: str) -> str:
    return f"orchestrace.worker.{worker}.join"


def _lead_key(run_id: str) -> str:
    """The lead's heartbeat entry for ``run_id`` in the workers bucket."""
    return f"lead.{run_id}"


def _start_subject(worker: str, run_id: str) -> str:
    return f"orchestrace.worker.{worker}.start.{run_id}"


async def workers_bucket(client: Client) -> KeyValue:
    """The bucket of live workers, created on first use."""
    js = client.jetstream()
    try:
        return await js.key_value(WORKERS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=WORKERS_BUCKET, ttl=worker_ttl())


async def live_workers(client: Client) -> list[WorkerInfo]:
    """Every worker whose entry has not expired.

    The keys come from the bucket's stream (its subjects now held), not from a key
    listing: a listing scanned while a heartbeat rewrites an entry can come back empty.
    """
    bucket = await workers_bucket(client)
    prefix = f"$KV.{WORKERS_BUCKET}."
    info = await client.jetstream().stream_info(
        f"KV_{WORKERS_BUCKET}", subjects_filter=f"{prefix}worker.>"
    )
    found = []
    for subject in info.state.subjects or {}:
        try:
            entry = await bucket.get(subject.removeprefix(prefix))
            if entry.value:
                found.append(WorkerInfo.from_json(entry.value))
        except (
            nats.js.errors.KeyNotFoundError,
            nats.js.errors.KeyDeletedError,
            ValueError,
            KeyError,
            TypeError,
        ):
            continue  # expired or stopped meanwhile, or not a worker entry
    return found


async def worker_alive(bucket: KeyValue, worker: str) -> bool:
    """True while ``worker``'s heartbeat entry has not expired."""
    try:
        await bucket.get(f"worker.{worker}")
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return False
    return True


async def await_workers(client: Client, team: Team, count: int, timeout: float) -> list[WorkerInfo]:
    """The live workers, once ``count`` of them serve ``team`` — the same team: a worker of
    a team of that name but another :func:`~runtime.teams.fingerprint` does not count
    (ConfigurationError after ``timeout`` seconds: a one-line message saying how many came)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    digest = fingerprint(team)
    while True:
        found = await live_workers(client)
        serving = sum(w.team == team.name and w.fingerprint == digest for w in found)
        if serving >= count:
            return found
        if loop.time() >= deadline:
            others = sum(w.team == team.name and w.fingerprint != digest for w in found)
            not_counted = (
                f"; {others} more of a different team {team.name!r} (another file, or edited "
                "since it started) not counted"
                if others
                else ""
            )
            raise ConfigurationError(
                f"{serving} of {count} workers of team {team.name!r} came up within {timeout:g} s "
                f"(start them with `orchestrace worker --hub URL TARGET`{not_counted})"
            )
        await asyncio.sleep(0.2)


def run_config_of(config: RunConfig, limits: RunLimits) -> dict[str, Any]:
    """The run settings and caps a worker's agents share with the lead's (the caps count
    in each process: a worker's model calls against its own copy)."""
    return {
        "model": config.model,
        "max_tokens": config.max_tokens,
        "max_turns": config.max_turns,
        "wait_timeout": config.wait_timeout,
        "stream": config.stream,
        "limits": dataclasses.asdict(limits),
    }


def limits_of(settings: Mapping[str, Any]) -> RunLimits:
    """The caps :func:`run_config_of` wrote (defaults for a lead that sent none)."""
    caps = settings.get("limits") or {}
    known = {f.name for f in dataclasses.fields(RunLimits)}
    return RunLimits(**{k: v for k, v in caps.items() if k in known})


class BrokerPlacement:
    """The lead's side: which members live workers host, and spawns handed to workers.

    Implements :class:`runtime.agent.Placement` over a :class:`~runtime.nats_hub.NatsHub`.
    """

    def __init__(
        self,
        hub: NatsHub,
        workers: Sequence[WorkerInfo],
        config: RunConfig,
        limits: RunLimits,
        *,
        url: str,
        creds: str | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.hub = hub
        self.url = url
        self.creds = creds
        #: Told, in one line, where the team's agents run once the workers have joined.
        self.report = report
        self._heartbeat: Heartbeat | None = None
        self.workers = list(workers)
        self.config = config
        self.limits = limits
        self._joined: list[WorkerInfo] = []
        self._pinned: dict[str, str] = {}
        self._templates: set[str] = set()
        self._watching: asyncio.Task[None] | None = None
        #: How each agent hosted on a worker ended, by name, as the registry says.
        self.results: dict[str, AgentResult] = {}

    async def claim(self, team: Team) -> set[str]:
        """Ask every live worker of ``team`` to join the run; the members they pin.

        A worker of a team of that name whose :func:`~runtime.teams.fingerprint` differs
        (another file, or the file edited since it started) is not asked: its agents run
        here, and a warning (and :attr:`report`) says so."""
        members = {a.name for a in team.agents if a.name != team.lead}
        pinned: dict[str, str] = {}
        unused: dict[str, str] = {}  # a member another worker pinned first: by whom else
        digest = fingerprint(team)
        skipped = [w.id for w in self.workers if w.team == team.name and w.fingerprint != digest]
        for worker_id in skipped if self.report is None else ():  # else the report says it
            log.warning(
                "worker skipped: its team differs from this run's (another file, or edited "
                "since it started)",
                worker=worker_id,
                team=team.name,
            )
        self.workers = [w for w in self.workers if w.id not in skipped]
        if any(w.team == team.name for w in self.workers):
            # The workers end the run on their side if this process dies.
            key, value = _lead_key(self.hub.subjects.run_id), b"{}"
            await (await workers_bucket(self.hub.client)).put(key, value)
            self._heartbeat = Heartbeat(self.url, self.creds, key, value)
            self._heartbeat.start()
        for worker in self.workers:
            if worker.team != team.name:
                continue
            mine = [a for a in worker.agents if a in members and a not in pinned]
            unused.update({a: worker.id for a in worker.agents if a in pinned})
            request = {
                "run_id": self.hub.subjects.run_id,
                "team": team.name,
                "fingerprint": digest,
                "agents": mine,
                "config": run_config_of(self.config, self.limits),
            }
            try:
                await self.hub.client.request(
                    _join_subject(worker.id), json.dumps(request).encode(), timeout=REQUEST_SECONDS
                )
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning(
                    "worker did not join; its agents run here", worker=worker.id, error=str(exc)
                )
                continue
            self._joined.append(worker)
            pinned.update(dict.fromkeys(mine, worker.id))
            self._templates.update(worker.templates)
        self._pinned = pinned
        if self._joined:
            self._watching = asyncio.get_running_loop().create_task(self._watch_workers())
        if self.report is not None:
            self.report(placement_line(team, pinned, self._templates, skipped, unused))
        return set(pinned)

    async def _watch_workers(self) -> None:
        """Every heartbeat: a joined worker whose entry has expired is gone, and the agents
        it ran have crashed (their unread messages go back to the senders)."""
        bucket = await workers_bucket(self.hub.client)
        status = await bucket.status()
        period = (status.ttl or DEFAULT_WORKER_TTL_SECONDS) / 5
        gone: set[str] = set()
        while True:
            await asyncio.sleep(period)
            for worker in self._joined:
                if worker.id in gone:
                    continue
                try:
                    if await worker_alive(bucket, worker.id):
                        continue
                except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
                    continue  # the broker itself is away: no verdict on the workers
                gone.add(worker.id)
                for name in self.hub.hosted_by(worker.id):
                    log.warning("worker lost; its agent crashed", worker=worker.id, agent=name)
                    self.hub.lost(name, "worker_lost")

    async def close(self) -> None:
        """Stop watching the workers and beating."""
        if self._heartbeat is not None:
            await asyncio.to_thread(self._heartbeat.stop)
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    def register(self, name: str, role: str) -> None:
        """Register claimed member ``name`` as hosted by its worker."""
        self.hub.register_remote(name, role, host=self._pinned[name])

    async def start(self, team: Team, parent: Context) -> dict[str, asyncio.Task[AgentResult]]:
        """Start the claimed members on their workers, children of ``parent``."""
        await self.hub.flush()
        headers = inject_context(parent, {})

        async def start(worker: WorkerInfo) -> None:
            try:
                await self.hub.client.request(
                    _start_subject(worker.id, self.hub.subjects.run_id),
                    b"",
                    timeout=REQUEST_SECONDS,
                    headers=headers,
                )
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("worker did not start its agents", worker=worker.id, error=str(exc))

        # All at once: a worker's agents may keep its event loop busy for a while.
        await asyncio.gather(*(start(w) for w in self._joined))
        loop = asyncio.get_running_loop()
        return {
            name: loop.create_task(self._remote(name), name=f"agent {name}")
            for name in self._pinned
        }

    def offers(self, template: str) -> bool:
        """True when a joined worker offers ``template``."""
        return template in self._templates

    def spawn(
        self, prefix: str, template: str, first_user_turn: str, parent: Context
    ) -> tuple[str, asyncio.Task[AgentResult]]:
        """Register the next ``{prefix}{n}`` and hand it to a worker offering ``template``."""
        name = self.hub.new_remote_name(prefix, template, host=f"queue:{template}")
        headers = inject_context(parent, {"Nats-Msg-Id": f"spawn-{name}"})
        body = json.dumps({"name": name, "template": template, "first_user_turn": first_user_turn})
        loop = asyncio.get_running_loop()
        published = loop.create_task(
            self.hub.js.publish(
                self.hub.subjects.spawn(template),
                body.encode(),
                headers=headers,
                stream=self.hub.subjects.stream,
            )
        )
        return name, loop.create_task(self._remote(name, published), name=f"agent {name}")

    async def _remote(self, name: str, published: asyncio.Task[Any] | None = None) -> AgentResult:
        try:
            if published is not None:
                await published
            entry = await self.hub.wait_finished(name)
        except asyncio.CancelledError:
            if not self.hub.state(name).ended:
                self.hub.set_state(name, AgentState.KILLED)
            self.results.setdefault(name, AgentResult(name, AgentState.KILLED, "cancelled", ""))
            raise
        result = AgentResult(
            name,
            AgentState(entry["state"]),
            str(entry.get("reason", "")),
            str(entry.get("text", "")),
        )
        self.results[name] = result
        return result


RunFactory = Callable[[NatsHub, Mapping[str, Any]], RunContext]
"""Builds a worker's RunContext for one run from its hub and the lead's run settings."""


class WorkerRun:
    """One run as one worker sees it: the agents it hosts and the assignments it takes."""

    def __init__(self, team: Team, run: RunContext, hub: NatsHub, pinned: Sequence[str]) -> None:
        self.team = team
        self.run = run
        self.hub = hub
        self.pinned = list(pinned)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        hub.on_kill = self._kill

    def _kill(self, name: str) -> None:
        task = self.tasks.get(name)
        if task is not None:
            task.cancel()

    def host(self, spec: AgentSpec, parent: Context) -> None:
        """Run ``spec``'s agent here; its host records how it ended."""
        self.tasks[spec.name] = asyncio.get_running_loop().create_task(
            self._run(spec, parent), name=f"agent {spec.name}"
        )

    async def _run(self, spec: AgentSpec, parent: Context) -> None:
        try:
            result = await run_agent(self.run, spec, parent=parent)
        except asyncio.CancelledError:
            ended = self.run.results.get(spec.name)
            if ended is not None:
                self.hub.finished(spec.name, ended.state, ended.reason, ended.text)
            raise
        self.hub.finished(spec.name, result.state, result.reason, result.text)

    def start(self, parent: Context) -> None:
        """Start the pinned members (the registry already shows the whole team)."""
        for name in self.pinned:
            agent = next(a for a in self.team.agents if a.name == name)
            if self.hub.adopt(name, "member"):
                self.host(member_spec(self.team, agent, "member"), parent)

    async def take_spawns(self, template: str) -> None:
        """Take assignments for instances of ``template``, one at a time."""
        agent = next(t for t in self.team.templates if t.name == template)
        subject = self.hub.subjects.spawn(template)
        durable = f"spawn-{token(template)}"
        js = self.hub.js
        while True:
            try:
                subscription = await js.pull_subscribe(
                    subject,
                    durable=durable,
                    stream=self.hub.subjects.stream,
                    config=ConsumerConfig(filter_subject=subject),
                )
                break
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
                await asyncio.sleep(0.2)
        while True:
            try:
                (msg,) = await subscription.fetch(1, timeout=2)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            self._take(agent.name, msg)
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.ack()

    def _take(self, template: str, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            name, first = str(body["name"]), str(body["first_user_turn"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("malformed assignment dropped", error=str(exc))
            return
        if name in self.tasks:
            return  # a redelivered assignment
        agent = next(t for t in self.team.templates if t.name == template)
        if self.hub.adopt(name, template):
            self.host(spawned_spec(name, agent, first), extract_context(msg.headers))

    async def finish(self) -> None:
        """The lead has ended the run: cancel what still runs here, record it, close."""
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.hub.retire()
        await self.hub.close()


class Heartbeat:
    """A worker's entry in the workers bucket, refreshed every TTL / 5 from a thread with a
    connection of its own: an agent's tool that holds the event loop (CPU work) must not
    make a live worker look dead. It stops (and deletes the entry) with :meth:`stop`, and
    dies with the process."""

    def __init__(self, url: str, creds: str | None, key: str, value: bytes) -> None:
        self.url, self.creds, self.key, self.value = url, creds, key, value
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orchestrace-heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove the entry (blocks until the thread has ended)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        asyncio.run(self._beat())

    async def _beat(self) -> None:
        try:
            client = await connect(self.url, name="orchestrace-heartbeat", creds=self.creds)
        except ConfigurationError as exc:
            log.warning("heartbeat not started", error=str(exc))
            return
        try:
            bucket = await workers_bucket(client)
            status = await bucket.status()
            period = (status.ttl or DEFAULT_WORKER_TTL_SECONDS) / 5
            while not self._stop.is_set():
                with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, OSError):
                    await bucket.put(self.key, self.value)
                # Wakes at once when stopped.
                await asyncio.to_thread(self._stop.wait, period)
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, OSError):
                await bucket.delete(self.key)
        finally:
            await client.close()


class Worker:
    """``orchestrace worker``: hosts ``agents`` of ``team`` and instances of ``templates``
    in every run it is asked to join."""

    def __init__(
        self,
        client: Client,
        team: Team,
        make_run: RunFactory,
        *,
        url: str,
        creds: str | None = None,
        agents: Sequence[str],
        templates: Sequence[str],
        once: bool = False,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.url = url
        self.creds = creds
        self.team = team
        self.make_run = make_run
        self.info = WorkerInfo(
            uuid.uuid4().hex[:12], team.name, tuple(agents), tuple(templates), fingerprint(team)
        )
        self.once = once
        #: Told, in one line each, that the worker is ready, and which runs it joins and
        #: how its agents there ended (the worker's log when None).
        self.report = report
        self._done = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()

    def _say(self, line: str) -> None:
        (self.report or log.info)(line)

    async def serve(self) -> None:
        """Announce this worker and serve runs until cancelled (or one run, with ``once``)."""
        bucket = await workers_bucket(self.client)
        key = f"worker.{self.info.id}"
        join = await self.client.subscribe(_join_subject(self.info.id), cb=self._on_join)
        await bucket.put(key, self.info.to_json())
        heartbeat = Heartbeat(self.url, self.creds, key, self.info.to_json())
        heartbeat.start()
        offers = ", ".join(self.info.agents + self.info.templates) or "nothing"
        self._say(f"worker {self.info.id} ready: team {self.team.name}, hosts {offers}")
        try:
            await self._done.wait()
        finally:
            await asyncio.to_thread(heartbeat.stop)
            with contextlib.suppress(Exception):
                await join.unsubscribe()
                await bucket.delete(key)
            for run in list(self._runs):
                run.cancel()
            await asyncio.gather(*self._runs, return_exceptions=True)

    async def _on_join(self, msg: Msg) -> None:
        try:
            request = json.loads(msg.data)
            run_id = str(request["run_id"])
            pinned = [str(a) for a in request["agents"] if a in self.info.agents]
            config = dict(request["config"])
            RunSubjects(run_id)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("malformed join request", error=str(exc))
            return
        if request.get("team") != self.team.name:
            return  # another team's run: no reply, the lead goes on without us
        if request.get("fingerprint") != self.info.fingerprint:
            self._say(
                f"run {run_id}: not joined: its team {self.team.name!r} differs from this "
                "worker's (another file, or edited since this worker started)"
            )
            return
        hub = NatsHub(self.client, run_id, host=self.info.id)
        await hub.open()
        worker_run = WorkerRun(self.team, self.make_run(hub, config), hub, pinned)

        async def on_start(start: Msg) -> None:
            await worker_run.hub.knows({a.name for a in self.team.agents})
            # Answer before the agents start: their first turns may hold the loop.
            await start.respond(b"{}")
            await self.client.flush()
            worker_run.start(extract_context(start.headers))

        start_sub = await self.client.subscribe(_start_subject(self.info.id, run_id), cb=on_start)
        task = asyncio.get_running_loop().create_task(self._serve_run(worker_run, start_sub))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        await msg.respond(b"{}")
        hosts = ", ".join([*pinned, *(f"{t}*" for t in self.info.templates)]) or "nothing"
        self._say(f"run {run_id}: joined, hosting {hosts}")

    async def _lead_lost(self, run_id: str) -> None:
        """Return once the lead's heartbeat for ``run_id`` has expired (it died)."""
        bucket = await workers_bucket(self.client)
        status = await bucket.status()
        period = (status.ttl or DEFAULT_WORKER_TTL_SECONDS) / 5
        while True:
            await asyncio.sleep(period)
            try:
                await bucket.get(_lead_key(run_id))
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                log.warning("the run's lead is gone; ending its agents here", run=run_id)
                return
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
                continue  # the broker itself is away: no verdict on the lead

    async def _serve_run(self, worker_run: WorkerRun, start_sub: Any) -> None:
        takers = [
            asyncio.get_running_loop().create_task(worker_run.take_spawns(t))
            for t in self.info.templates
        ]
        ended = asyncio.get_running_loop().create_task(worker_run.hub.run_ended.wait())
        lead_lost = asyncio.get_running_loop().create_task(
            self._lead_lost(worker_run.hub.subjects.run_id)
        )
        why = "this worker was stopped"
        try:
            await asyncio.wait([ended, lead_lost], return_when=asyncio.FIRST_COMPLETED)
            why = "the run is over" if ended.done() else "its lead is gone"
        finally:
            for task in (ended, lead_lost):
                task.cancel()
            for taker in takers:
                taker.cancel()
            await asyncio.gather(*takers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await start_sub.unsubscribe()
            await worker_run.finish()
            outcomes = ", ".join(
                f"{r.name} {r.state} ({r.reason})" for r in worker_run.run.results.values()
            )
            self._say(
                f"run {worker_run.hub.subjects.run_id}: ended, {why}; "
                f"{outcomes or 'no agent ran here'}"
            )
            if self.once:
                self._done.set()
