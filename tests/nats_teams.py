"""Teams the NATS tests run across processes (loaded by `orchestrace run/worker`)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
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


@tool
async def nap_until_resumed() -> str:
    """Nap until the test says go on (it creates the RESUME_MARKER file)."""
    await asyncio.to_thread(Path(os.environ["NAP_MARKER"]).write_text, "napping")
    resume = Path(os.environ["RESUME_MARKER"])
    # Another process writes the file: there is no event to wait on but its appearance.
    while not await asyncio.to_thread(resume.exists):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return "resumed"


def asker_script(conv: Conversation) -> Reply:
    """Say hello to the napper, wait for its answer, repeat it."""
    if not conv.sent_tools():
        return Reply.call("send_message", recipient_ids=["napper"], content="hello")
    answers = [c for sender, c in conv.received() if sender == "napper"]
    if answers:
        return Reply.say(f"got: {answers[0]}")
    return Reply.call("wait_for_message")


def napper_script(conv: Conversation) -> Reply:
    """Nap through the broker's restart, then answer what the lead sent before it."""
    sent = conv.sent_tools()
    if not sent:
        return Reply.call("nap_until_resumed")
    heard = [c for sender, c in conv.received() if sender == "lead"]
    if not heard:
        return Reply.call("wait_for_message")
    if "send_message" not in sent:
        return Reply.call("send_message", recipient_ids=["lead"], content=f"back: {heard[0]}")
    return Reply.say("done")


restart = Team(
    "restart",
    [
        Agent("lead", task="Greet the napper.", script=asker_script),
        Agent("napper", task="Nap.", tools=[nap_until_resumed], script=napper_script),
    ],
)


@tool
async def grind(seconds: float) -> str:
    """Hold the event loop for ``seconds``: CPU work that never awaits."""
    end = time.monotonic() + seconds
    digest = b""
    while time.monotonic() < end:
        digest = hashlib.sha256(digest).digest()
    return "ground"


def foreman_script(conv: Conversation) -> Reply:
    """Ask the grinder to work; repeat what comes back (its report, or a notice)."""
    if not conv.sent_tools():
        return Reply.call("send_message", recipient_ids=["grinder"], content="grind")
    heard = conv.received()
    if heard:
        sender, content = heard[0]
        return Reply.say(f"{sender}: {content.split(':', 1)[0]}")
    if any("not delivered" in r for r in conv.tool_results()):
        return Reply.say("not delivered")
    return Reply.call("wait_for_message")


busy = Team(
    "busy",
    [
        Agent("lead", task="Get the grinding done.", script=foreman_script),
        Agent(
            "grinder",
            task="Grind when asked.",
            tools=[grind],
            script=[
                Reply.call("wait_for_message"),
                Reply.call("grind", seconds=6),
                Reply.call("send_message", recipient_ids=["lead"], content="ground"),
                Reply.say("done"),
            ],
        ),
    ],
)


@tool
async def tick() -> str:
    """Count one step."""
    return "tick"


def _ticks(count: int) -> list[Reply]:
    return [*[Reply.call("tick")] * count, Reply.say("done")]


#: Three agents of five model calls each (four ticks, then an answer), run with a cap of
#: 8 model calls: under the cap in any one process, over it for the run.
tally = Team(
    "tally",
    [
        Agent("lead", task="Tick.", tools=[tick], script=_ticks(4)),
        Agent("a", task="Tick.", tools=[tick], script=_ticks(4)),
        Agent("b", task="Tick.", tools=[tick], script=_ticks(4)),
    ],
)


def waiter_script(conv: Conversation) -> Reply:
    """Wait once; say what woke the wait."""
    if not conv.sent_tools():
        return Reply.call("wait_for_message")
    return Reply.say(conv.tool_results()[-1].split(" (", 1)[0])


#: A lead that waits for a member that ends without a word: the lead must be woken by "no
#: one can send you a message", whichever process each runs in.
silent = Team(
    "silent",
    [
        Agent("lead", task="Wait for news.", script=waiter_script),
        Agent("quiet", task="Say nothing.", script=[Reply.say("nothing to say")]),
    ],
)
