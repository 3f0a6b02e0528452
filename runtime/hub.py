"""The message hub: agents, their states, inboxes and wake-ups.

Each agent has an inbox and a way to block until mail arrives. Messages are
:class:`Envelope` values — plain, serializable data that carry the sender's trace context
as a W3C ``traceparent`` string, the way a message header would on a real broker. The
in-process inbox sits behind the small :class:`Inboxes` seam; a networked hub (NATS
JetStream: :mod:`runtime.nats_hub`) subclasses :class:`Hub`, publishing in :meth:`Hub.send`
and fetching into the same inboxes, without touching the agent loop. How received
messages are shown to the model is :mod:`runtime.prompts`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from runtime.errors import OrchestraceError
from runtime.limits import Budget, RunLimits
from telemetry.waits import OPEN_WAITS


class AgentState(StrEnum):
    """Where an agent is in its life. The last three are final."""

    ACTIVE = "active"
    IDLING = "idling"
    DONE = "done"
    CRASHED = "crashed"
    KILLED = "killed"

    @property
    def ended(self) -> bool:
        """True for the final states: the agent will never read another message."""
        return self in _FINAL_STATES


_FINAL_STATES = frozenset({AgentState.DONE, AgentState.CRASHED, AgentState.KILLED})


class DeliveryOutcome(StrEnum):
    """What became of one message posted to one recipient."""

    DELIVERED = "delivered"
    UNKNOWN = "unknown"
    ENDED = "ended"


class WakeReason(StrEnum):
    """Why a blocking wait returned."""

    MESSAGES = "messages"
    TIMEOUT = "timeout"
    NO_SENDERS = "no_senders"


#: The sender name of the runtime's own notices (undeliverable messages); no agent may use it.
SYSTEM_SENDER = "orchestrace"


class UnknownAgentError(OrchestraceError):
    """An operation named an agent the hub has never registered."""


class DuplicateAgentError(OrchestraceError):
    """An agent name was registered twice."""


class InvalidAgentNameError(OrchestraceError):
    """An agent name that is empty, not a string, or has spaces or control characters."""


class TransportError(OrchestraceError):
    """A networked hub could not take a message (the sender is told; nothing is lost)."""


class MessageTooLargeError(TransportError):
    """A message over the transport's size limit (the message names the limit)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to one recipient, as it would travel on the wire."""

    message_id: str
    sender: str
    recipient: str
    content: str
    sent_at_ns: int
    traceparent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The envelope as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """Rebuild an envelope from :meth:`to_dict` output."""
        return cls(
            message_id=str(data["message_id"]),
            sender=str(data["sender"]),
            recipient=str(data["recipient"]),
            content=str(data["content"]),
            sent_at_ns=int(data["sent_at_ns"]),
            traceparent=None if data.get("traceparent") is None else str(data["traceparent"]),
        )


@dataclass(frozen=True, slots=True)
class PostResult:
    """The outcome of posting one envelope; ``state`` is set when the recipient had ended."""

    recipient: str
    outcome: DeliveryOutcome
    state: AgentState | None = None


class Inboxes(Protocol):
    """The transport seam: where envelopes wait until their recipient drains them."""

    def open(self, name: str) -> None:
        """Create an empty inbox for ``name``."""

    def put(self, envelope: Envelope) -> None:
        """Append ``envelope`` to its recipient's inbox."""

    def drain(self, name: str) -> list[Envelope]:
        """Remove and return everything in ``name``'s inbox, oldest first."""

    def pending(self, name: str) -> int:
        """How many envelopes wait in ``name``'s inbox."""


class LocalInboxes:
    """In-process inboxes: one list per agent."""

    def __init__(self) -> None:
        self._boxes: dict[str, list[Envelope]] = {}

    def open(self, name: str) -> None:
        """Create an empty inbox for ``name``."""
        self._boxes[name] = []

    def put(self, envelope: Envelope) -> None:
        """Append ``envelope`` to its recipient's inbox."""
        self._boxes[envelope.recipient].append(envelope)

    def drain(self, name: str) -> list[Envelope]:
        """Remove and return everything in ``name``'s inbox, oldest first."""
        box = self._boxes[name]
        self._boxes[name] = []
        return box

    def pending(self, name: str) -> int:
        """How many envelopes wait in ``name``'s inbox."""
        return len(self._boxes[name])


StateListener = Callable[[str, str, AgentState | None, AgentState | None], None]
"""Called as ``(agent, role, old_state, new_state)`` on every state change; ``old_state`` is
None on registration and ``new_state`` None when the run retires its agents."""


class Hub:
    """Registry of agents, their states and inboxes, and the wake-up mechanism.

    The hub also detects the case where every live agent is blocked in
    ``wait_for_message`` with nothing in its inbox: no one is left who could send, so the
    waiters are woken with :attr:`WakeReason.NO_SENDERS` instead of each waiting out its
    timeout.
    """

    def __init__(
        self,
        *,
        inboxes: Inboxes | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._inboxes: Inboxes = inboxes if inboxes is not None else LocalInboxes()
        self._clock_ns = clock_ns
        self._states: dict[str, AgentState] = {}
        self._roles: dict[str, str] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._no_senders: set[str] = set()
        self._name_ids: dict[str, Iterator[int]] = {}
        self._message_ids = itertools.count(1)
        self._listeners: list[StateListener] = []
        self._live = 0
        self._idle = 0

    # --- registry -------------------------------------------------------------------------
    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener`` on every agent state change (used for metrics)."""
        self._listeners.append(listener)

    def register(self, name: str, role: str = "agent") -> None:
        """Add an agent in state ACTIVE with an empty inbox.

        Raises :class:`DuplicateAgentError` for a name already registered or reserved, and
        :class:`InvalidAgentNameError` for a name that is not a non-empty string of
        printable characters without spaces.
        """
        if (
            not isinstance(name, str)
            or not name
            or not all(c.isprintable() and not c.isspace() for c in name)
        ):
            raise InvalidAgentNameError(f"not a valid agent name: {name!r}")
        if name in self._states:
            raise DuplicateAgentError(f"agent {name!r} is already registered")
        if name == SYSTEM_SENDER:
            raise DuplicateAgentError(f"{SYSTEM_SENDER!r} is reserved for the runtime's notices")
        self._roles[name] = role
        self._inboxes.open(name)
        self._wakeups[name] = asyncio.Event()
        self._set(name, AgentState.ACTIVE)

    def new_name(self, prefix: str = "helper", role: str = "helper") -> str:
        """Register and return the next free name ``{prefix}{n}`` (helper1, helper2, ...);
        each prefix counts on its own (researcher1, critic1, researcher2)."""
        ids = self._name_ids.setdefault(prefix, itertools.count(1))
        while True:
            name = f"{prefix}{next(ids)}"
            if name not in self._states:
                self.register(name, role)
                return name

    def __contains__(self, name: object) -> bool:
        return name in self._states

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._states))

    def state(self, name: str) -> AgentState:
        """The current state of ``name``."""
        try:
            return self._states[name]
        except KeyError:
            raise UnknownAgentError(f"no agent named {name!r}") from None

    def role(self, name: str) -> str:
        """The role ``name`` was registered with (lead, helper, team member...).

        Raises :class:`UnknownAgentError` for a name the hub never registered."""
        self.state(name)
        return self._roles[name]

    def states(self) -> dict[str, AgentState]:
        """A snapshot of every agent's state, in registration order."""
        return dict(self._states)

    def set_state(self, name: str, state: AgentState) -> None:
        """Move a live agent to ``state``; a final state is never left."""
        if self.state(name).ended:
            return
        self._set(name, state)
        if state.ended:
            self._wakeups[name].set()
            if self._inboxes.pending(name):
                # Its unread mail will be bounced to the senders when it ends (see ``end``);
                # until then someone may still be woken, so "no one can send" is premature.
                return
        self._check_no_senders()

    def _set(self, name: str, state: AgentState) -> None:
        old = self._states.get(name)
        self._states[name] = state
        # Counters keep the "no one can send" check O(1) on every state change.
        self._live += (not state.ended) - (old is not None and not old.ended)
        self._idle += (state is AgentState.IDLING) - (old is AgentState.IDLING)
        role = self._roles[name]
        for listener in self._listeners:
            listener(name, role, old, state)

    def retire(self) -> None:
        """The run is over: tell listeners its agents are gone (gauges drop to zero)."""
        for name, state in self._states.items():
            for listener in self._listeners:
                listener(name, self._roles[name], state, None)

    def end(self, name: str, state: AgentState) -> list[Envelope]:
        """Put ``name`` in a final state and return the messages it never read.

        The caller bounces those messages to their senders and then calls :meth:`settle`:
        the "no one can send you a message" check waits until the bounces are posted.
        """
        if not self.state(name).ended:
            self._set(name, state)
            self._wakeups[name].set()
        return self._inboxes.drain(name)

    def settle(self) -> None:
        """Re-run the "no one can send" check after an agent's end has been fully handled."""
        self._check_no_senders()

    def budget(self, limits: RunLimits) -> Budget:
        """What the run's agents on this hub count their model calls and tokens in."""
        return Budget(limits)

    # --- messages ------------------------------------------------------------------------
    def new_message_id(self) -> str:
        """A message id unique within this hub."""
        return f"msg-{next(self._message_ids)}"

    def now_ns(self) -> int:
        """The hub's clock, used for ``sent_at``."""
        return self._clock_ns()

    def outcome_of(self, envelope: Envelope) -> PostResult:
        """What posting ``envelope`` now would do: deliver it, or report its recipient
        unknown or ended (nothing is posted)."""
        rid = envelope.recipient
        state = self._states.get(rid)
        if state is None:
            return PostResult(rid, DeliveryOutcome.UNKNOWN)
        if state.ended:
            return PostResult(rid, DeliveryOutcome.ENDED, state)
        return PostResult(rid, DeliveryOutcome.DELIVERED)

    def post(self, envelope: Envelope) -> PostResult:
        """Put ``envelope`` in its recipient's inbox if the recipient is alive."""
        result = self.outcome_of(envelope)
        if result.outcome is DeliveryOutcome.DELIVERED:
            self._inboxes.put(envelope)
            self._wakeups[envelope.recipient].set()
        return result

    async def send(self, envelope: Envelope) -> PostResult:
        """:meth:`post` for an agent's ``send_message``: a networked hub waits here until
        the broker has stored the message, and raises :class:`TransportError` when it
        cannot (too large, broker gone)."""
        return self.post(envelope)

    def pending(self, name: str) -> int:
        """How many messages wait unread for ``name`` (UnknownAgentError if unregistered)."""
        self.state(name)
        return self._inboxes.pending(name)

    def drain(self, name: str) -> list[Envelope]:
        """Take every waiting message for ``name`` (UnknownAgentError if unregistered)."""
        self.state(name)
        self._wakeups[name].clear()
        return self._inboxes.drain(name)

    async def wait(self, name: str, timeout: float) -> WakeReason:
        """Block ``name`` until a message arrives, no sender is left, or ``timeout`` passes.

        The agent is IDLING while it waits and ACTIVE again afterwards. Raises
        :class:`UnknownAgentError` for a name the hub never registered.
        """
        self.state(name)
        if self._inboxes.pending(name):
            return WakeReason.MESSAGES
        wakeup = self._wakeups[name]
        wakeup.clear()
        self.set_state(name, AgentState.IDLING)
        waiting = OPEN_WAITS.begin(self._roles[name])  # read by the agents.waiting gauges
        try:
            async with asyncio.timeout(timeout):
                await wakeup.wait()
        except TimeoutError:
            await self._after_timeout(name)
            if not wakeup.is_set():
                return WakeReason.TIMEOUT
        finally:
            OPEN_WAITS.end(waiting)
            self.set_state(name, AgentState.ACTIVE)
        if name in self._no_senders:
            self._no_senders.discard(name)
            if not self._inboxes.pending(name):
                return WakeReason.NO_SENDERS
        return WakeReason.MESSAGES

    async def _after_timeout(self, name: str) -> None:
        """Called when ``name``'s wait has timed out, before it stops waiting: a hub whose
        "no one can send" check spans processes may hold it here until a check that
        counted it as waiting is decided (then a wake-up set meanwhile is honoured)."""

    def _check_no_senders(self) -> None:
        if self._live == 0 or self._idle != self._live:
            return
        live = [n for n, s in self._states.items() if not s.ended]
        if any(self._inboxes.pending(n) for n in live):
            return
        for name in live:
            self._no_senders.add(name)
            self._wakeups[name].set()

    def live_agents(self, names: Iterable[str] | None = None) -> list[str]:
        """The agents (of ``names``, or all) not yet in a final state."""
        pool = self._states if names is None else names
        return [n for n in pool if n in self._states and not self._states[n].ended]
