"""Teams the NATS tests run across processes (loaded by `orchestrace run/worker`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orchestrace import Agent, Conversation, Reply, Team, tool


@tool
async def nap() -> str:
    """Sleep for an hour; a worker killed meanwhile never comes back from it."""
    await asyncio.to_thread(Path(os.environ["NAP_MARKER"]).write_text, "napping")
    await asyncio.sleep(3600)
    return "rested"


def lead_script(conv: Conversation) -> Reply:
    """Ask the napper; end once the runtime says the message was not read."""
    if not conv.sent_tools():
        return Reply.call("send_message", recipient_ids=["napper"], content="are you there?")
    notices = [c for sender, c in conv.received() if sender == "orchestrace"]
    if notices:
        return Reply.say("told: " + notices[0].split(":", 1)[0])
    if any("not delivered" in r for r in conv.tool_results()):
        return Reply.say("told: not delivered")
    return Reply.call("wait_for_message")


crash = Team(
    "crash",
    [
        Agent("lead", task="Ask the napper.", script=lead_script),
        Agent("napper", task="Nap.", tools=[nap], script=[Reply.call("nap"), Reply.say("up")]),
    ],
)
