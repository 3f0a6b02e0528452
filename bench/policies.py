"""Scripted-model policies for the benchmark workloads.

Each policy is a :data:`runtime.scripted.Policy` (``Conversation -> Reply``) that also keeps
per-agent counters. It reads only the newest user turn of a conversation, so a policy costs
the same on turn 5 and on turn 500: the benchmark measures the runtime and its telemetry,
not a script that re-parses its whole history. Every message a policy decides to send and
every message it reads is counted, so a workload can check that all sent messages were
delivered.

Three shapes of agents:

* :class:`ExchangePolicy` — a lead and helpers. Each helper, per round, calls a ``lookup``
  tool, reports to the lead with ``send_message`` and waits for the lead's answer. The lead
  answers each report on its own turn, oldest first, and waits when nothing is pending; it
  ends when every helper has reported every round. The lead is the critical path, so any
  delay on an agent's step shows up in the wall time.
* :class:`PeerPolicy` — agents in a ring: each sends ``messages`` messages, one per turn, to
  peers in turn, then waits until it has received as many as it is owed, then ends.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from runtime.scripted import Conversation, Reply
from runtime.tools import Tool, ToolCall

_FROM: Final = re.compile(r'<agent-message from="([^"]*)">\n(.*?)\n</agent-message>', re.S)
NO_SENDERS_PREFIX: Final = "woke: no one"

LOOKUP: Final = {
    "name": "lookup",
    "description": "Look a key up in the shared notes.",
    "input_schema": {
        "type": "object",
        "properties": {"key": {"type": "string"}},
        "required": ["key"],
        "additionalProperties": False,
    },
}


def lookup_tool() -> Tool:
    """A cheap tool the helpers call between reports (its result is a short text)."""

    async def _lookup(call: ToolCall) -> str:
        return f"notes for {call.input['key']}: nothing new"

    return Tool(LOOKUP, _lookup)


def newest_user_text(conv: Conversation) -> str:
    """The text of the conversation's newest user turn (tool results or a plain turn)."""
    last = conv.request.messages[-1]
    if last["role"] != "user":
        return ""
    content = last["content"]
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if block.get("type") == "tool_result":
            parts.append(str(block.get("content", "")))
        elif block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def new_messages(conv: Conversation) -> tuple[list[tuple[str, str]], bool]:
    """Messages delivered in the newest turn, and whether the hub said no one can send."""
    if conv.turn == 0:
        return [], False
    text = newest_user_text(conv)
    return _FROM.findall(text), NO_SENDERS_PREFIX in text


@dataclass
class MessageCounts:
    """Messages the policies sent (one per recipient) and read, over a whole run."""

    sent: int = 0
    received: int = 0
    stranded: int = 0  # agents that ended because the hub woke them with no sender left

    def record(self, other: MessageCounts) -> None:
        """Add ``other``'s counts to these."""
        self.sent += other.sent
        self.received += other.received
        self.stranded += other.stranded


def _send(recipients: Sequence[str], content: str) -> Reply:
    return Reply(
        tool="send_message", tool_input={"recipient_ids": list(recipients), "content": content}
    )


_WAIT: Final = Reply(tool="wait_for_message", tool_input={})


def _done(text: str) -> Reply:
    return Reply(text=text, stop_reason="end_turn")


@dataclass
class _HelperState:
    round: int = 0  # reports sent so far
    answered: int = 0  # answers from the lead read so far
    step: str = "lookup"  # lookup -> report -> wait -> lookup ...
    finished: bool = False


@dataclass
class ExchangePolicy:
    """A lead and ``helpers`` helpers exchanging ``rounds`` reports and answers each."""

    helpers: Sequence[str]
    rounds: int
    lead: str = "lead"
    counts: MessageCounts = field(default_factory=MessageCounts)
    _helper: dict[str, _HelperState] = field(default_factory=dict)
    _pending: deque[str] = field(default_factory=deque)  # reports not yet answered
    _reports: int = 0
    _lead_done: bool = False

    def __call__(self, conv: Conversation) -> Reply:
        """The next reply of whichever agent ``conv`` belongs to."""
        messages, stranded = new_messages(conv)
        self.counts.received += len(messages)
        if conv.request.agent == self.lead:
            return self._lead_turn(messages, stranded)
        return self._helper_turn(conv.request.agent, messages, stranded)

    def _lead_turn(self, messages: list[tuple[str, str]], stranded: bool) -> Reply:
        for sender, _ in messages:
            self._reports += 1
            self._pending.append(sender)
        if self._pending:
            helper = self._pending.popleft()
            self.counts.sent += 1
            return _send([helper], f"ack {helper}: noted, carry on")
        if self._reports >= self.rounds * len(self.helpers) or self._lead_done:
            self._lead_done = True
            return _done(f"All {len(self.helpers)} helpers reported {self.rounds} times.")
        if stranded:
            self.counts.stranded += 1
            self._lead_done = True
            return _done("No helper is left to report.")
        return _WAIT

    def _helper_turn(self, name: str, messages: list[tuple[str, str]], stranded: bool) -> Reply:
        state = self._helper.setdefault(name, _HelperState())
        state.answered += sum(1 for sender, _ in messages if sender == self.lead)
        if state.finished:
            return _done("Done.")
        if state.step == "lookup":
            if state.round >= self.rounds:
                if state.answered >= self.rounds:
                    state.finished = True
                    return _done(f"{name}: all {self.rounds} reports answered.")
                return self._helper_wait(state, stranded)
            state.step = "report"
            return Reply(tool="lookup", tool_input={"key": f"{name}/{state.round}"})
        if state.step == "report":
            state.round += 1
            state.step = "wait"
            self.counts.sent += 1
            return _send([self.lead], f"report {state.round} from {name}: all good")
        # step == "wait": wait until the lead has answered this round's report
        if state.answered >= state.round:
            state.step = "lookup"
            return self._helper_turn(name, [], stranded=False)
        return self._helper_wait(state, stranded)

    def _helper_wait(self, state: _HelperState, stranded: bool) -> Reply:
        if stranded:
            self.counts.stranded += 1
            state.finished = True
            return _done("The lead is gone.")
        return _WAIT


@dataclass
class _PeerState:
    index: int
    sent: int = 0
    received: int = 0
    finished: bool = False


@dataclass
class PeerPolicy:
    """``peers`` agents in a ring, each sending ``messages`` messages and reading as many.

    Agent ``i`` sends its ``k``-th message to agent ``i + 1 + k mod (n - 1)``: every agent
    is owed exactly ``messages`` messages, so it can end once it has read them all and no
    message is ever sent to an agent that has ended.
    """

    peers: Sequence[str]
    messages: int
    counts: MessageCounts = field(default_factory=MessageCounts)
    _state: dict[str, _PeerState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._state = {name: _PeerState(i) for i, name in enumerate(self.peers)}

    def __call__(self, conv: Conversation) -> Reply:
        """The next reply of the peer ``conv`` belongs to."""
        state = self._state[conv.request.agent]
        messages, stranded = new_messages(conv)
        self.counts.received += len(messages)
        state.received += len(messages)
        if state.finished:
            return _done("Done.")
        n = len(self.peers)
        if state.sent < self.messages and n > 1:
            target = self.peers[(state.index + 1 + state.sent % (n - 1)) % n]
            state.sent += 1
            self.counts.sent += 1
            return _send([target], f"message {state.sent} from {conv.request.agent}")
        if state.received >= self.messages or n == 1:
            state.finished = True
            return _done(f"Sent {state.sent}, received {state.received}.")
        if stranded:
            self.counts.stranded += 1
            state.finished = True
            return _done("No one is left to send.")
        return _WAIT
