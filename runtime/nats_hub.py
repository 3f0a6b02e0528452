"""The hub on NATS JetStream: the agents of one run spread over several processes.

One stream per run keeps a run's messages together and lets a run be deleted (or expire)
as a whole::

    stream ORCHESTRACE_<run>            subjects orchestrace.<run>.>, file storage
      orchestrace.<run>.inbox.<agent>   one Envelope per message; durable consumer inbox-<agent>
      orchestrace.<run>.spawn.<tmpl>    spawn assignments; one durable consumer spawn-<tmpl>
                                        shared by every worker offering the template
    KV bucket orchestrace-<run>         agent.<agent> → role, state, host (and how it ended);
                                        "run" → ended once the lead has finished;
                                        "budget" → the run's model calls and tokens
    KV bucket orchestrace-workers       worker.<id> → team, pinned agents, templates (TTL)
    orchestrace-quiet.<run>.{propose,reply,decide}   the "no one can send" rounds (plain NATS)

The payload is the :class:`~runtime.hub.Envelope` as JSON; the sender's trace context
travels in the message headers through the OpenTelemetry propagator, and ``Nats-Msg-Id``
(the message id) lets the broker drop a duplicate publish. A message is acknowledged only
once it has been drained into its agent's turn; a redelivery of a message already in the
inbox (or already read) is recognised by its id and not handed over twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import re
import ssl
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StorageType
from nats.js.kv import KeyValue
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan

from runtime.errors import ConfigurationError
from runtime.hub import (
    SYSTEM_SENDER,
    AgentState,
    DeliveryOutcome,
    Envelope,
    Hub,
    MessageTooLargeError,
    PostResult,
    TransportError,
)
from runtime.limits import Budget, RunLimits
from runtime.nats_budget import BUDGET_KEY, SharedBudget
from telemetry import settings
from telemetry.logs import get_logger
from telemetry.redact import url_for_display
from telemetry.spans import format_traceparent, parse_traceparent

log = get_logger("orchestrace.nats")


SUBJECT_ROOT: Final = "orchestrace"
WORKERS_BUCKET: Final = "orchestrace-workers"
#: How long an unacknowledged message waits before the broker offers it again: a message
#: fetched by a process that died comes back after this. A live process tells the broker
#: every ACK_WAIT / 3 that the messages waiting in its inboxes are still being worked on.
ACK_WAIT_SECONDS: Final = 3.0
#: How long a publish may keep failing (broker restarting) before the sender is told.
PUBLISH_PATIENCE_SECONDS: Final = 30.0
#: The broker keeps a run's messages and registry this long, then drops them.
RUN_MAX_AGE_SECONDS: Final = 24 * 3600.0
#: Hang detectors of the "no one can send" check across processes: a round that has not
#: heard from every process hosting a waiting agent by then is abandoned, and a wait that
#: timed out while counted in a round ends anyway after HOLD_SECONDS.
ROUND_SECONDS: Final = 5.0
HOLD_SECONDS: Final = 2 * ROUND_SECONDS
_FETCH_SECONDS: Final = 2.0
_RETRY_SECONDS: Final = 0.2
_SAFE: Final = re.compile(r"[A-Za-z0-9_-]+")
_RUN_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BrokerUnavailableError(ConfigurationError):
    """The broker cannot be reached or used (a one-line message, exit status 2)."""


def token(name: str) -> str:
    """``name`` as one subject token, consumer name and KV key part.

    Names of letters, digits, ``_`` and ``-`` stay as they are; any other name becomes
    ``=`` and its UTF-8 bytes in hex (``=`` never appears in a kept name, so two names
    never share a token).
    """
    return name if _SAFE.fullmatch(name) else "=" + name.encode().hex()


def check_hub_url(url: str) -> str:
    """``url`` if it names a NATS server (nats:// or tls://, a host), else ConfigurationError."""
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ConfigurationError(
            f"--hub expects nats://HOST:PORT or tls://HOST:PORT, got {url_for_display(url)!r}"
        )
    return url


def connection_settings(creds: str | None = None) -> tuple[str | None, ssl.SSLContext | None]:
    """The credentials file (``creds``, else ``NATS_CREDS``) and the TLS context
    (:func:`tls_context`) a connection uses, checked before any connection is tried.

    Raises :class:`ConfigurationError` naming the setting for a file that cannot be read
    or is not a credentials file.
    """
    creds = creds or settings.NATS_CREDS.get() or None
    if creds is not None:
        _check_credentials(creds)
    return creds, tls_context()


#: The blocks of a ``.creds`` file (as ``nsc`` writes it) the client reads: the line after
#: each marker.
_CREDS_BLOCKS: Final = (("BEGIN NATS USER JWT", "user JWT"), ("BEGIN USER NKEY SEED", "seed"))


def _check_credentials(path: str) -> None:
    """ConfigurationError unless ``path`` is a readable ``.creds`` file with a user JWT and
    a seed. Checked here because nats-py does not say which is missing: it fails with a
    ``TypeError`` without the seed, and loops forever without the JWT (blocking the
    event loop, so no timeout can end it)."""
    what = "the NATS credentials file (--hub-creds / NATS_CREDS)"
    _readable(path, what)
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    for marker, name in _CREDS_BLOCKS:
        at = next((i for i, line in enumerate(lines) if marker.encode() in line), None)
        if at is None or at + 1 == len(lines) or not lines[at + 1].strip():
            raise ConfigurationError(
                f"{what} {path!r} is not a .creds file: it holds no {name}"
                f" (a -----{marker}----- block)"
            )


#: How long closing a client whose first connection failed may take.
CLOSE_SECONDS: Final = 5.0
#: Hang detector for a first connection that neither succeeds nor fails (the client's own
#: attempts end far sooner: three tries of 2 s).
CONNECT_CEILING_SECONDS: Final = 30.0


async def connect(url: str, *, name: str, creds: str | None = None) -> Client:
    """A client connected to ``url``, or :class:`BrokerUnavailableError` after a few tries.

    Once connected the client reconnects for as long as it takes (a broker restart), and
    the run's publishes and fetches retry meanwhile. A refused certificate or password
    fails at once: trying again cannot help.
    """
    check_hub_url(url)
    creds, tls = connection_settings(creds)
    errors: list[str] = []
    refusals: list[str] = []
    refused = asyncio.Event()

    async def quiet(exc: Exception) -> None:
        errors.append(str(exc) or type(exc).__name__)
        if isinstance(exc, (ssl.SSLError, nats.errors.AuthorizationError)) or (
            "Authorization Violation" in str(exc)
        ):
            refusals.append(errors[-1])
            refused.set()
        log.debug("nats client", error=f"{type(exc).__name__}: {exc}")

    listeners: list[Callable[[], Coroutine[Any, Any, None]]] = []

    async def reconnected() -> None:
        log.debug("nats client reconnected")
        for listener in list(listeners):
            await listener()

    client = Client()
    attempt = asyncio.ensure_future(
        client.connect(
            servers=[url],
            name=name,
            connect_timeout=2,
            max_reconnect_attempts=2,
            reconnect_time_wait=0.2,  # type: ignore[arg-type]  # seconds; annotated int, a float works
            user_credentials=creds,
            tls=tls,
            error_cb=quiet,
            reconnected_cb=reconnected,
        )
    )
    # nats-py does not return after a failed TLS handshake (it waits for the broken stream
    # to close), so a refusal ends the attempt here.
    refusal = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait(
            {attempt, refusal},
            timeout=CONNECT_CEILING_SECONDS,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        refusal.cancel()
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
    exc = None if attempt.cancelled() else attempt.exception()
    if attempt.cancelled() or exc is not None:
        # A failed attempt can leave its socket open: close it (bounded: the client's own
        # close may wait on a stream that never ends).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), CLOSE_SECONDS)
        # The client's own errors say why ("Authorization Violation", a certificate check)
        # where the exception only says that no server answered; a refusal first: the
        # broken pipe that follows it says less.
        reason = (refusals or errors or [str(exc) or type(exc).__name__])[-1]
        if not refusals and "timeout" in reason.lower():
            # The port took the connection and said nothing: not a NATS client port?
            reason += (
                " (nothing there spoke NATS: is it the broker's client port, 4222 by default?)"
            )
        raise BrokerUnavailableError(
            f"cannot reach the NATS broker at {url_for_display(url)}: {reason}"
        )
    client.options["max_reconnect_attempts"] = -1  # from now on: never give up
    _RECONNECT_LISTENERS[client] = listeners
    try:
        await client.jetstream().account_info()
    except Exception as error:
        await client.close()
        # 10039: the broker runs JetStream, but not for the account the credentials name.
        account = isinstance(error, nats.js.errors.APIError) and error.err_code == 10039
        fix = "not enabled for this account" if account else "start it with -js"
        raise BrokerUnavailableError(
            f"the NATS broker at {url_for_display(url)} has no JetStream ({fix}): {error}"
        ) from None
    return client


def _readable(path: str, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigurationError(f"{what} {path!r} cannot be read: {exc.strerror}") from None


def tls_context() -> ssl.SSLContext | None:
    """The TLS settings of ``NATS_CA`` / ``NATS_CERT`` / ``NATS_KEY``, or None for the
    client's default (a ``tls://`` URL then checks the broker against the system's CAs).

    Raises :class:`ConfigurationError` naming the variable for a file that cannot be read
    or is not a certificate or key.
    """
    ca, cert, key = settings.NATS_CA.get(), settings.NATS_CERT.get(), settings.NATS_KEY.get()
    if not (ca or cert or key):
        return None
    if key and not cert:
        raise ConfigurationError("NATS_KEY is set without NATS_CERT (the client certificate)")
    for path, name in ((ca, "NATS_CA"), (cert, "NATS_CERT"), (key, "NATS_KEY")):
        if path:
            _readable(path, name)
    try:
        context = ssl.create_default_context(cafile=ca or None)
    except ssl.SSLError as exc:
        raise ConfigurationError(f"NATS_CA {ca!r} holds no usable certificate: {exc}") from None
    if cert:
        try:
            context.load_cert_chain(cert, key or None)
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"NATS_CERT {cert!r} / NATS_KEY {key!r}: not a certificate and its key: {exc}"
            ) from None
    return context


#: Coroutines each client runs after it has reconnected (a broker restart), by client.
_RECONNECT_LISTENERS: weakref.WeakKeyDictionary[
    Client, list[Callable[[], Coroutine[Any, Any, None]]]
] = weakref.WeakKeyDictionary()


def on_reconnect(client: Client, listener: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``listener`` each time ``client`` (from :func:`connect`) has reconnected."""
    _RECONNECT_LISTENERS.setdefault(client, []).append(listener)


class RunSubjects:
    """The names one run uses on the broker."""

    def __init__(self, run_id: str) -> None:
        if not _RUN_ID.fullmatch(run_id):
            raise ConfigurationError(f"run id {run_id!r} must be letters, digits, '_' or '-'")
        self.run_id = run_id
        self.stream = f"ORCHESTRACE_{run_id}"
        self.bucket = f"orchestrace-{run_id}"
        self.prefix = f"{SUBJECT_ROOT}.{run_id}"

    def inbox(self, agent: str) -> str:
        """The subject of ``agent``'s inbox."""
        return f"{self.prefix}.inbox.{token(agent)}"

    def spawn(self, template: str) -> str:
        """The subject of the assignments for instances of ``template``."""
        return f"{self.prefix}.spawn.{token(template)}"

    def quiet(self, kind: str) -> str:
        """The subject of one step of the run's "no one can send" check (``propose``,
        ``reply``, ``decide``): plain NATS, outside the run's stream."""
        return f"{SUBJECT_ROOT}-quiet.{self.run_id}.{kind}"


@dataclasses.dataclass
class _Hold:
    """Local agents a "no one can send" round counted as waiting: their waits do not time
    out until the round is decided (at most :data:`HOLD_SECONDS`)."""

    round: int
    names: set[str]
    released: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


def inject_context(context: Context | None, headers: dict[str, str]) -> dict[str, str]:
    """Write ``context``'s trace context into message ``headers`` (the global propagator)."""
    propagate.inject(headers, context=context)
    return headers


def context_of_traceparent(traceparent: str | None) -> Context | None:
    """A context whose current span is the one ``traceparent`` names (None if malformed)."""
    span_context = parse_traceparent(traceparent)
    if span_context is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message's headers carry."""
    return propagate.extract(dict(headers or {}))


def encode_envelope(envelope: Envelope) -> tuple[bytes, dict[str, str]]:
    """The payload and headers of ``envelope`` on the wire.

    The traceparent goes in the headers only (the propagator writes it), not twice.
    """
    body = envelope.to_dict()
    body.pop("traceparent")
    headers = {"Nats-Msg-Id": envelope.message_id}
    inject_context(context_of_traceparent(envelope.traceparent), headers)
    return json.dumps(body, ensure_ascii=False).encode(), headers


def decode_envelope(data: bytes, headers: Mapping[str, str] | None) -> Envelope:
    """The envelope a message carries (ValueError / KeyError for a malformed one)."""
    body = json.loads(data)
    span = trace.get_current_span(extract_context(headers))
    body["traceparent"] = format_traceparent(span.get_span_context())
    return Envelope.from_dict(body)


class NatsHub(Hub):
    """A :class:`~runtime.hub.Hub` whose inboxes are JetStream consumers and whose registry
    is a key-value bucket shared by every process of the run.

    Agents registered here (:meth:`register`, :meth:`adopt`) are hosted by this process:
    a background task fetches their messages into the local inbox. Every other agent of
    the run is known from the registry bucket, kept in step by a watch. ``host`` names
    this process in the registry.

    "No one can send you a message" is decided for the whole run by the lead's process, in
    rounds over plain NATS subjects: when every live agent looks idle to it, it proposes the
    agents with how many messages each has fetched; each process hosting some confirms they
    are still waiting with that count (and holds their timeouts) or refuses; the lead
    commits only if all confirm and the stream then holds no message any of them has not
    fetched. Any state change meanwhile abandons the round; so does silence (a process that
    died) after :data:`ROUND_SECONDS`.
    """

    def __init__(
        self,
        client: Client,
        run_id: str,
        *,
        host: str,
        lead: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(clock_ns=clock_ns)
        self.client = client
        self.js: JetStreamContext = client.jetstream()
        self.subjects = RunSubjects(run_id)
        self.host = host
        self.lead = lead
        self._kv: KeyValue | None = None
        self._local: set[str] = set()
        self._unacked: dict[str, dict[str, Msg]] = {}
        self._seen: dict[str, set[str]] = {}
        #: Stream sequence numbers of the messages fetched for each local agent.
        self._taken: dict[str, set[int]] = {}
        self._round = 0
        self._round_task: asyncio.Task[None] | None = None
        self._round_dirty = False
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._held: _Hold | None = None
        self._decided = 0
        self._subscriptions: list[Any] = []
        self._entries: dict[str, dict[str, Any]] = {}
        self._finished: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._writes: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._short: set[asyncio.Task[None]] = set()
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._following: asyncio.Task[None] | None = None
        #: Set once the lead has ended the run.
        self.run_ended = asyncio.Event()
        #: Called with the name of a local agent another process has killed.
        self.on_kill: Callable[[str], None] | None = None

    # --- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        """Create (the lead) or bind (a worker) the run's stream and registry, and start
        following the registry; returns once the registry's current entries are known."""
        try:
            if self.lead:
                await self.js.add_stream(
                    name=self.subjects.stream,
                    subjects=[f"{self.subjects.prefix}.>"],
                    storage=StorageType.FILE,
                    max_age=RUN_MAX_AGE_SECONDS,
                )
                self._kv = await self.js.create_key_value(
                    bucket=self.subjects.bucket,
                    storage=StorageType.FILE,
                    ttl=RUN_MAX_AGE_SECONDS,
                )
            else:
                self._kv = await self.js.key_value(self.subjects.bucket)
            watcher = await self._kv.watchall()
            await self._listen("propose", self._on_propose)
            await self._listen("decide", self._on_decide)
            if self.lead:
                await self._listen("reply", self._on_reply)
        except Exception as exc:
            raise BrokerUnavailableError(
                f"cannot open run {self.subjects.run_id} on the broker: {exc}"
            ) from None
        ready = asyncio.Event()
        self._following = self._background(self._follow(watcher, ready))
        self._background(self._write_entries())
        self._background(self._hold_unread())
        on_reconnect(self.client, self._follow_again)
        await ready.wait()

    async def _follow_again(self) -> None:
        """After a broker restart, watch the registry anew at once (the old watch would
        notice its missed heartbeats only after seconds); the watch replays each key's
        latest entry, which applies cleanly over what is known."""
        if self._following is None or self._following.done():
            return
        self._following.cancel()
        assert self._kv is not None
        while True:
            try:
                watcher = await self._kv.watchall()
                break
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                log.debug("registry watch not ready", error=str(exc))
                await asyncio.sleep(_RETRY_SECONDS)
        self._following = self._background(self._follow(watcher, asyncio.Event()))

    async def flush(self) -> None:
        """Return once every registry entry written so far is on the broker."""
        await self._writes.join()

    async def close(self) -> None:
        """Send the last notices, acknowledgements and registry entries; stop every task."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PUBLISH_PATIENCE_SECONDS):
                while self._short:
                    await asyncio.wait(list(self._short))
                await self._writes.join()
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _soon(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a short piece of work (a publish, an ack) that :meth:`close` waits for."""
        task = asyncio.get_running_loop().create_task(work)
        self._short.add(task)
        task.add_done_callback(self._short.discard)

    def _background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- registry ------------------------------------------------------------------------
    def register(self, name: str, role: str = "agent") -> None:
        """Register ``name`` as hosted by this process and start fetching its messages."""
        fresh = name not in self._states
        if fresh:
            self._local.add(name)
        try:
            super().register(name, role)
        except Exception:
            if fresh:
                self._local.discard(name)
            raise
        self._unacked[name] = {}
        self._seen[name] = set()
        self._taken[name] = set()
        self._consumers[name] = self._background(self._consume(name))

    def register_remote(self, name: str, role: str, host: str) -> None:
        """Register ``name`` as hosted by ``host`` (another process, or a work queue)."""
        if name in self._states:
            super().register(name, role)  # raises DuplicateAgentError
        self._states[name] = AgentState.ACTIVE
        self._roles[name] = role
        self._write_entry(name, {"state": AgentState.ACTIVE, "host": host})

    def adopt(self, name: str, role: str) -> bool:
        """Host ``name`` here, which the lead registered for another process; False if it
        has ended meanwhile (killed before anyone took it)."""
        known = self._states.get(name)
        if known is not None and known.ended:
            return False
        self._states.pop(name, None)
        self._roles.pop(name, None)
        self.register(name, role)
        return True

    def hosted_by(self, host: str) -> list[str]:
        """The agents the registry says ``host`` runs and that have not ended."""
        return [
            name
            for name, entry in self._entries.items()
            if entry.get("host") == host and not self._states[name].ended
        ]

    def lost(self, name: str, reason: str) -> None:
        """``name``'s host is gone: mark it crashed and take over its inbox here, so the
        messages it never read (and any still coming) go back to their senders."""
        if name in self._local or self.state(name).ended:
            return
        role = self._roles.get(name, "agent")
        self._states.pop(name)
        self.register(name, role)
        self._set(name, AgentState.CRASHED)
        self._write_entry(
            name, {"state": AgentState.CRASHED, "finished": True, "reason": reason, "text": ""}
        )

    def new_remote_name(self, prefix: str, role: str, host: str) -> str:
        """Register and return the next free ``{prefix}{n}`` as hosted by ``host``."""
        ids = self._name_ids.setdefault(prefix, itertools.count(1))
        while True:
            name = f"{prefix}{next(ids)}"
            if name not in self._states:
                self.register_remote(name, role, host)
                return name

    def _set(self, name: str, state: AgentState) -> None:
        super()._set(name, state)
        self._round_dirty = True
        if name in self._local:
            if self._held is not None and state is not AgentState.IDLING:
                self._held.names.discard(name)
            taken = len(self._taken.get(name, ()))
            self._write_entry(name, {"state": state, "host": self.host, "taken": taken})

    def set_state(self, name: str, state: AgentState) -> None:
        """Move ``name`` to ``state``; for an agent hosted elsewhere (a kill) the registry
        carries the change to its host."""
        if name in self._local:
            super().set_state(name, state)
            return
        if self.state(name).ended:
            return
        self._states[name] = state
        self._write_entry(name, {"state": state})

    def finished(self, name: str, state: AgentState, reason: str, text: str) -> None:
        """Record how local agent ``name`` ended, for the process waiting on it."""
        self._write_entry(name, {"state": state, "finished": True, "reason": reason, "text": text})

    async def wait_finished(self, name: str) -> dict[str, Any]:
        """The registry entry of ``name`` once its host says it has ended."""
        entry = self._entries.get(name)
        if entry is not None and entry.get("finished"):
            return entry
        future = self._finished.setdefault(name, asyncio.get_running_loop().create_future())
        return await asyncio.shield(future)

    async def knows(self, names: set[str]) -> None:
        """Return once every one of ``names`` is in the registry as this process sees it."""
        while not names <= self._states.keys():
            self._changed.clear()
            await self._changed.wait()

    def end_run(self) -> None:
        """The lead has finished: tell every process of the run."""
        self._put("run", {"state": "ended"})

    def retire(self) -> None:
        """The run is over here (listeners see its agents go); the lead ends the run."""
        super().retire()
        if self.lead:
            self.end_run()

    # --- "no one can send you a message", across processes -------------------------------
    def _check_no_senders(self) -> None:
        """The lead's process checks for the whole run, in rounds (:meth:`_quiet_round`),
        whenever every live agent looks idle to it; other processes answer."""
        if not self.lead or self.run_ended.is_set():
            return
        if self._round_task is not None and not self._round_task.done():
            self._round_dirty = True
            return
        if self._quiet_agents() is not None:
            self._round_task = self._background(self._quiet_round())

    def _quiet_agents(self) -> dict[str, int] | None:
        """Every live agent with how many messages its process has fetched for it, if all
        of them are waiting as far as this process knows; else None."""
        taken: dict[str, int] = {}
        for name, state in self._states.items():
            if state.ended:
                continue
            if state is not AgentState.IDLING:
                return None
            if name in self._local and self._inboxes.pending(name):
                return None  # woken by a message, not yet running
            count = (
                len(self._taken.get(name, ()))
                if name in self._local
                else self._entries.get(name, {}).get("taken")
            )
            if not isinstance(count, int):
                return None
            taken[name] = count
        return taken or None

    async def _quiet_round(self) -> None:
        """Propose "no one can send" for the agents that look idle; commit only if every
        process hosting one confirms it is still waiting with the same messages fetched
        (and holds its timeout), and the stream holds no message any of them has not
        fetched — before the proposal and again once all are held."""
        try:
            while True:
                self._round_dirty = False
                taken = self._quiet_agents()
                if taken is None:
                    return
                self._round += 1
                commit = await self._try_round(self._round, taken)
                await self._publish_quiet("decide", {"round": self._round, "commit": commit})
                if commit or not self._round_dirty:
                    return
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            log.debug("no-senders check not completed", error=str(exc))

    async def _try_round(self, number: int, taken: dict[str, int]) -> bool:
        if not await self._inboxes_match(taken):
            return False  # a message on its way: its arrival wakes someone
        while not self._replies.empty():
            self._replies.get_nowait()
        await self._publish_quiet("propose", {"round": number, "agents": taken})
        waiting = set(taken)
        try:
            async with asyncio.timeout(ROUND_SECONDS):
                while waiting:
                    reply = await self._replies.get()
                    if reply.get("round") != number:
                        continue
                    if reply.get("ok") is not True:
                        return False
                    waiting -= set(reply.get("agents", ()))
        except TimeoutError:
            log.debug("no-senders round abandoned", round=number, unanswered=sorted(waiting))
            return False
        return not self._round_dirty and await self._inboxes_match(taken)

    async def _inboxes_match(self, taken: dict[str, int]) -> bool:
        """Whether the stream holds, for each agent, exactly the messages fetched for it."""
        info = await self.js.stream_info(
            self.subjects.stream, subjects_filter=f"{self.subjects.prefix}.inbox.>"
        )
        stored = info.state.subjects or {}
        return all(stored.get(self.subjects.inbox(n), 0) == t for n, t in taken.items())

    async def _on_propose(self, proposal: dict[str, Any]) -> None:
        number, agents = int(proposal["round"]), dict(proposal["agents"])
        mine = [n for n in agents if n in self._local]
        if not mine:
            return
        # What this process has begun to publish (a bounce, a notice) lands first.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PUBLISH_PATIENCE_SECONDS):
                while self._short:
                    await asyncio.wait(list(self._short))
        ok = number > self._decided and all(
            self._states.get(n) is AgentState.IDLING
            and len(self._taken[n]) == agents[n]
            and not self._inboxes.pending(n)  # fetched and woken, not yet running
            for n in mine
        )
        if ok:
            self._release_hold()
            self._held = _Hold(number, set(mine))
        reply = {"round": number, "host": self.host, "agents": mine, "ok": ok}
        await self._publish_quiet("reply", reply)

    async def _on_reply(self, reply: dict[str, Any]) -> None:
        self._replies.put_nowait(reply)

    async def _on_decide(self, decision: dict[str, Any]) -> None:
        number = int(decision["round"])
        self._decided = max(self._decided, number)
        hold = self._held
        if hold is None or hold.round != number:
            return
        if decision.get("commit") is True:
            for name in hold.names:
                if self._states.get(name) is AgentState.IDLING:
                    self._no_senders.add(name)
                    self._wakeups[name].set()
        self._release_hold()

    def _release_hold(self) -> None:
        if self._held is not None:
            self._held.released.set()
            self._held = None

    async def _after_timeout(self, name: str) -> None:
        """A wait that timed out while a round counts it as waiting ends once the round is
        decided (woken with "no one can send" if it commits)."""
        hold = self._held
        if hold is None or name not in hold.names:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HOLD_SECONDS):
                await hold.released.wait()

    async def _listen(
        self, kind: str, handler: Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
    ) -> None:
        async def handle(msg: Msg) -> None:
            try:
                await handler(json.loads(msg.data))
            except (ValueError, KeyError, TypeError, nats.errors.Error, OSError) as exc:
                log.debug("no-senders step ignored", subject=msg.subject, error=str(exc))

        self._subscriptions.append(
            await self.client.subscribe(self.subjects.quiet(kind), cb=handle)
        )

    async def _publish_quiet(self, kind: str, data: Mapping[str, Any]) -> None:
        await self.client.publish(self.subjects.quiet(kind), json.dumps(data).encode())

    def pending(self, name: str) -> int:
        """Messages waiting in this process for ``name`` (0 for agents hosted elsewhere)."""
        self.state(name)
        return self._inboxes.pending(name) if name in self._local else 0

    def _write_entry(self, name: str, fields: Mapping[str, Any]) -> None:
        entry = {**self._entries.get(name, {}), "name": name, "role": self._roles.get(name)}
        entry.update({k: str(v) if isinstance(v, AgentState) else v for k, v in fields.items()})
        entry["by"] = self.host
        self._entries[name] = entry
        self._put(f"agent.{token(name)}", entry)

    def _put(self, key: str, value: Mapping[str, Any]) -> None:
        self._writes.put_nowait((key, json.dumps(value).encode()))

    async def _write_entries(self) -> None:
        assert self._kv is not None
        while True:
            key, value = await self._writes.get()
            try:
                await self._retrying(functools.partial(self._kv_put, key, value))
            except TransportError as exc:
                log.warning("registry entry not written", key=key, error=str(exc))
            finally:
                self._writes.task_done()

    async def _kv_put(self, key: str, value: bytes) -> None:
        assert self._kv is not None
        await self._kv.put(key, value)

    async def _follow(self, watcher: KeyValue.KeyWatcher, ready: asyncio.Event) -> None:
        try:
            await self._read(watcher, ready)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _read(self, watcher: KeyValue.KeyWatcher, ready: asyncio.Event) -> None:
        async for entry in watcher:
            if entry is None:
                ready.set()
                continue
            if entry.value is None or entry.operation is not None:
                continue
            try:
                value = json.loads(entry.value)
                if entry.key == "run":
                    if value.get("state") == "ended":
                        self.run_ended.set()
                    continue
                if entry.key == BUDGET_KEY:
                    continue  # read when a model call is counted (SharedBudget)
                self._apply(value)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("registry entry ignored", key=entry.key, error=str(exc))

    def _apply(self, entry: dict[str, Any]) -> None:
        name = str(entry["name"])
        state = AgentState(entry["state"])
        if entry.get("finished"):
            future = self._finished.pop(name, None)
            if future is not None and not future.done():
                future.set_result(entry)
        if entry.get("by") == self.host:
            return  # our own write, already applied
        if name in self._local:
            # Only a kill comes from another process for an agent hosted here.
            if state is AgentState.KILLED and not self._states[name].ended:
                super().set_state(name, AgentState.KILLED)
                if self.on_kill is not None:
                    self.on_kill(name)
            return
        self._entries[name] = entry
        self._changed.set()
        known = self._states.get(name)
        if known is None or not known.ended:
            self._states[name] = state
        if entry.get("role") is not None:
            self._roles[name] = str(entry["role"])
        self._round_dirty = True
        if state is AgentState.IDLING or state.ended:  # only these can make the run quiet
            self._check_no_senders()

    def budget(self, limits: RunLimits) -> Budget:
        """A budget counting the model calls and tokens of every process of the run
        (:class:`~runtime.nats_budget.SharedBudget`); a plain one when neither is capped."""
        if limits.max_model_calls is None and limits.max_tokens_total is None:
            return Budget(limits)
        assert self._kv is not None, "open() the hub first"
        return SharedBudget(limits, self._kv, retrying=self._retrying, soon=self._soon)

    # --- messages ------------------------------------------------------------------------
    def new_message_id(self) -> str:
        """A message id unique across the run's processes (the broker dedups by it)."""
        return f"msg-{self.host}-{next(self._ids)}"

    def post(self, envelope: Envelope) -> PostResult:
        """Publish ``envelope`` in the background (runtime notices); its outcome now."""
        result = self.outcome_of(envelope)
        if result.outcome is DeliveryOutcome.DELIVERED:
            self._soon(self._publish_logged(envelope))
        return result

    async def send(self, envelope: Envelope) -> PostResult:
        """Publish ``envelope`` and wait for the broker to store it.

        Raises :class:`~runtime.hub.MessageTooLargeError` over the broker's payload limit
        and :class:`~runtime.hub.TransportError` when the broker stays unreachable.
        """
        data, headers = self._wire(envelope)  # too large for anyone: say so first
        result = self.outcome_of(envelope)
        if result.outcome is DeliveryOutcome.DELIVERED:
            await self._publish(envelope.recipient, data, headers)
        return result

    def _wire(self, envelope: Envelope) -> tuple[bytes, dict[str, str]]:
        data, headers = encode_envelope(envelope)
        limit = self.client.max_payload
        if len(data) + sum(len(k) + len(v) + 4 for k, v in headers.items()) > limit:
            raise MessageTooLargeError(
                f"{len(data)} bytes is over the broker's max_payload of {limit} bytes"
            )
        return data, headers

    async def publish(self, envelope: Envelope) -> None:
        """Put ``envelope`` on its recipient's inbox subject, retrying through a broker
        restart (the message id makes a retry that did land a no-op)."""
        data, headers = self._wire(envelope)
        await self._publish(envelope.recipient, data, headers)

    async def _publish(self, recipient: str, data: bytes, headers: dict[str, str]) -> None:
        subject = self.subjects.inbox(recipient)
        await self._retrying(functools.partial(self._publish_once, subject, data, headers))

    async def _publish_once(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            await self.js.publish(subject, data, headers=headers, stream=self.subjects.stream)
        except nats.errors.MaxPayloadError as exc:
            raise MessageTooLargeError(
                f"{len(data)} bytes is over the broker's max_payload of "
                f"{self.client.max_payload} bytes"
            ) from exc

    async def _publish_logged(self, envelope: Envelope) -> None:
        try:
            await self.publish(envelope)
        except TransportError as exc:
            log.warning("notice not delivered", message_id=envelope.message_id, error=str(exc))

    async def _retrying(self, attempt: Callable[[], Coroutine[Any, Any, None]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_PATIENCE_SECONDS
        while True:
            try:
                await attempt()
                return
            except MessageTooLargeError:
                raise
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                if loop.time() >= deadline:
                    raise TransportError(f"the broker did not take it: {exc}") from exc
                await asyncio.sleep(_RETRY_SECONDS)

    def drain(self, name: str) -> list[Envelope]:
        """Take ``name``'s waiting messages; each is acknowledged now that it is in the
        agent's turn (or about to be bounced to its sender)."""
        envelopes = super().drain(name)
        self._acknowledge(name, envelopes)
        return envelopes

    def end(self, name: str, state: AgentState) -> list[Envelope]:
        """End ``name`` and return its unread messages (acknowledged: they are bounced)."""
        envelopes = super().end(name, state)
        self._acknowledge(name, envelopes)
        return envelopes

    async def _hold_unread(self) -> None:
        """Keep the broker from offering again the messages waiting in local inboxes."""
        while True:
            await asyncio.sleep(ACK_WAIT_SECONDS / 3)
            for held in self._unacked.values():
                for msg in list(held.values()):
                    with contextlib.suppress(nats.errors.Error, OSError):
                        await msg.in_progress()

    def _acknowledge(self, name: str, envelopes: list[Envelope]) -> None:
        handles = self._unacked.get(name, {})
        for envelope in envelopes:
            msg = handles.pop(envelope.message_id, None)
            if msg is not None:
                self._soon(_ack(msg))

    async def _consume(self, name: str) -> None:
        subject = self.subjects.inbox(name)
        config = ConsumerConfig(ack_wait=ACK_WAIT_SECONDS, filter_subject=subject)
        while True:
            try:
                subscription = await self.js.pull_subscribe(
                    subject,
                    durable=f"inbox-{token(name)}",
                    stream=self.subjects.stream,
                    config=config,
                )
                break
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                log.debug("inbox consumer not ready", agent=name, error=str(exc))
                await asyncio.sleep(_RETRY_SECONDS)
        while True:
            try:
                messages = await subscription.fetch(64, timeout=_FETCH_SECONDS)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                log.debug("inbox fetch failed; retrying", agent=name, error=str(exc))
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            for msg in messages:
                self._accept(name, msg)

    def _accept(self, name: str, msg: Msg) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            self._taken[name].add(msg.metadata.sequence.stream)
        try:
            envelope = decode_envelope(msg.data, msg.headers)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("malformed message dropped", agent=name, error=str(exc))
            self._soon(_ack(msg))
            return
        unacked = self._unacked[name]
        if envelope.message_id in self._seen[name]:
            # A redelivery: still unread → acknowledge this copy later; read → now.
            if envelope.message_id in unacked:
                unacked[envelope.message_id] = msg
            else:
                self._soon(_ack(msg))
            return
        self._seen[name].add(envelope.message_id)
        state = self._states[name]
        if state.ended:
            self._bounce_late(name, state, envelope)
            self._soon(_ack(msg))
            return
        unacked[envelope.message_id] = msg
        self._inboxes.put(envelope)
        self._wakeups[name].set()

    def _bounce_late(self, name: str, state: AgentState, envelope: Envelope) -> None:
        """A message that reached ``name`` after it ended goes back to its sender."""
        if envelope.sender == SYSTEM_SENDER:
            return
        notice = (
            f"undeliverable: your message {envelope.message_id} to {name} was never read "
            f"({name} is {state}); it began: {envelope.content[:80]!r}"
        )
        self.post(
            Envelope(
                self.new_message_id(),
                SYSTEM_SENDER,
                envelope.sender,
                notice,
                self.now_ns(),
                envelope.traceparent,
            )
        )


async def _ack(msg: Msg) -> None:
    try:
        await msg.ack()
    except (nats.errors.Error, OSError) as exc:
        # Unacknowledged, it comes back after ack_wait and is recognised by its id.
        log.debug("ack failed", error=str(exc))
