"""A CPU-bound team for ``bench.nats_hub``: eight members each burn CPU in a tool (hashing
on the event loop, as a tool doing real work would), then report to the lead.

In one process the members' work runs one after another on one core (one event loop, one
GIL); split over two workers it can use two. Each ``burn`` hashes ``BENCH_CPU_ROUNDS`` times
(default 300,000; ``python -m bench --size tiny`` sets fewer).
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

from orchestrace import Agent, Conversation, Reply, Team, tool

MEMBERS: Final = [f"m{i}" for i in range(1, 9)]
#: The environment variable that sets the hashes per ``burn`` (in the lead and every worker).
ROUNDS_VARIABLE: Final = "BENCH_CPU_ROUNDS"
ROUNDS: Final = int(os.environ.get(ROUNDS_VARIABLE) or 300_000)
#: The lead's final answer once every member reported.
ANSWER: Final = f"all {len(MEMBERS)} members reported"


@tool
async def burn(rounds: int) -> str:
    """Hash ``rounds`` times (CPU work that holds the event loop)."""
    digest = b"orchestrace"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def lead_script(conv: Conversation) -> Reply:
    """Wait for every member's report, then finish."""
    reported = {sender for sender, _ in conv.received()}
    if set(MEMBERS) <= reported:
        return Reply.say(ANSWER)
    return Reply.call("wait_for_message")


member_script: Final = [
    Reply.call("burn", rounds=ROUNDS),
    Reply.call("burn", rounds=ROUNDS),
    Reply.call("send_message", recipient_ids=["lead"], content="done"),
    Reply.say("done"),
]

team = Team(
    "cpu",
    [
        Agent("lead", task="Collect the reports.", script=lead_script),
        *(Agent(m, task="Work, then report.", tools=[burn], script=member_script) for m in MEMBERS),
    ],
)
