"""A lead that spawns specialists from two templates, collects their work and dismisses them.

The editor (the team's only agent) has two templates: ``researcher`` (a ``lookup`` tool)
and ``writer`` (a ``word_count`` tool and ``submit_draft``, a tool that uses its
:class:`~orchestrace.ToolContext` to message the editor and tag its span). The editor

1. spawns two researchers with ``create_subagents(template="researcher", ...)`` — they are
   named ``researcher1`` and ``researcher2`` and run the template's instructions, tools and
   script — and checks on them with ``get_status``;
2. waits until both have reported (``wait_for_message``);
3. spawns a writer with the researchers' notes and waits for its draft;
4. checks ``get_status`` again, dismisses all three with ``kill_subagents`` and answers.

Spawned agents are children of the ``execute_tool create_subagents`` span that made them::

    orchestrace run examples/spawn_specialists.py
    python examples/spawn_specialists.py
"""

from __future__ import annotations

import re
from typing import Final

from orchestrace import Agent, Conversation, Reply, Team, ToolContext, ToolError, run_sync, tool

TASK: Final = "Write a short brief for new on-call engineers on span links and context propagation."

EDITOR: Final = "editor"
TOPICS: Final = ("span links", "context propagation")

NOTES: Final[dict[str, list[str]]] = {
    "span links": [
        "A span link points at a span that caused this one without making it the parent.",
        "A receive span can link to every send it delivered, even across agents.",
        "A link to a span whose trace was sampled out points at nothing.",
    ],
    "context propagation": [
        "The W3C traceparent header carries the trace id and the parent span id.",
        "A hop that drops the header starts a new trace.",
    ],
}


@tool
def lookup(topic: str, limit: int = 2) -> list[str]:
    """Look a topic up in the team's notes.

    Args:
        topic: the topic, e.g. "span links" (case-insensitive)
        limit: how many notes to return at most
    """
    notes = NOTES.get(topic.strip().lower())
    if notes is None:
        raise ToolError(f"no notes on {topic!r}; the notes cover: {', '.join(NOTES)}")
    return notes[: max(1, limit)]


@tool
def word_count(draft: str, max_words: int = 80) -> dict[str, int | bool]:
    """Count the words of a draft and check it against a length budget.

    Args:
        draft: the draft to count
        max_words: the most words the brief may have
    """
    words = len(draft.split())
    return {"words": words, "max_words": max_words, "within_budget": words <= max_words}


@tool
async def submit_draft(ctx: ToolContext, title: str, body: str) -> str:
    """Send a finished draft to the editor.

    Args:
        title: the brief's title
        body: the brief itself
    """
    ctx.span.set_attribute("app.draft.words", len(body.split()))
    return await ctx.send(EDITOR, f"{title}\n\n{body}")


# --- offline scripts ----------------------------------------------------------------------
_SPAWNED = re.compile(r"^spawned: (.+)$")


def spawned(conv: Conversation) -> list[str]:
    """Every agent the editor has spawned so far (from the create_subagents results)."""
    names: list[str] = []
    for result in conv.tool_results():
        match = _SPAWNED.match(result.splitlines()[0] if result else "")
        if match:
            names += [n.strip() for n in match.group(1).split(",")]
    return names


def editor_script(conv: Conversation) -> Reply:
    sent = conv.sent_tools()
    helpers = spawned(conv)
    researchers = [n for n in helpers if n.startswith("researcher")]
    writers = [n for n in helpers if n.startswith("writer")]
    reports = dict(conv.received())
    if not researchers:
        return Reply.call(
            "create_subagents",
            text="Two researchers first, one topic each.",
            template="researcher",
            base_instruction=f"Look your topic up with lookup and send {EDITOR} what the notes "
            "say, as bullets, with send_message. Then wait for further instructions.",
            per_subagent_instructions=[f"Topic: {topic}" for topic in TOPICS],
        )
    if sent.count("get_status") == 0:
        return Reply.call("get_status")
    if not set(researchers) <= set(reports):
        return Reply.call("wait_for_message")
    if not writers:
        notes = "\n\n".join(reports[r] for r in researchers)
        return Reply.call(
            "create_subagents",
            text="Both reports are in; now a writer.",
            template="writer",
            base_instruction="Write a brief of at most 80 words from these notes, check its "
            f"length with word_count, then send it with submit_draft.\n\n{notes}",
            per_subagent_instructions=["Audience: engineers new to the on-call rota."],
        )
    if not set(writers) <= set(reports):
        return Reply.call("wait_for_message")
    if sent.count("get_status") == 1:
        return Reply.call("get_status")
    if "kill_subagents" not in sent:
        return Reply.call("kill_subagents", subagent_ids=helpers)
    (writer,) = writers
    return Reply.say(
        f"{reports[writer]}\n\n(Researched by {', '.join(researchers)}; written by {writer}.)"
    )


def researcher_script(conv: Conversation) -> Reply:
    sent = conv.sent_tools()
    topic = next((t for t in TOPICS if t in conv.first_user_turn()), TOPICS[0])
    if "lookup" not in sent:
        # The second topic takes longer to think about, so the reports arrive one by one.
        return Reply.call("lookup", topic=topic, limit=2, think=1.0 + TOPICS.index(topic))
    if "send_message" not in sent:
        notes = NOTES[topic][:2]
        report = f"{topic}:\n" + "\n".join(f"- {n}" for n in notes)
        return Reply.call("send_message", recipient_ids=[EDITOR], content=report)
    if "wait_for_message" not in sent:
        return Reply.call("wait_for_message", think=0.5)
    return Reply.say("No further instructions; done.")


BRIEF_TITLE: Final = "On-call brief: following a request across agents"
BRIEF: Final = (
    "Every message between agents carries a W3C traceparent, so a run stays one trace; a hop "
    "that drops it starts a new one. Deliveries are receive spans with links to the sends "
    "they delivered, not children of them, so follow the links to see who caused what."
)


def writer_script(conv: Conversation) -> Reply:
    sent = conv.sent_tools()
    if "word_count" not in sent:
        # (A tool parameter named `text` could not be passed this way: Reply.call's own
        # `text=` is what the model says before the call.)
        return Reply.call("word_count", draft=BRIEF, max_words=80)
    if "submit_draft" not in sent:
        return Reply.call("submit_draft", title=BRIEF_TITLE, body=BRIEF)
    if "wait_for_message" not in sent:
        return Reply.call("wait_for_message", think=0.5)
    return Reply.say("No further instructions; done.")


editor = Agent(
    EDITOR,
    "You edit briefs written by specialists you spawn. Spawn researchers "
    "(create_subagents with template 'researcher', one topic each), check them with "
    "get_status, and wait_for_message until every researcher has reported. Then spawn one "
    "writer (template 'writer') and give it the notes in its instruction; wait for its "
    "draft. Check get_status, dismiss every specialist with kill_subagents, and answer with "
    "the writer's brief.",
    task=TASK,
    script=editor_script,
)
researcher = Agent(
    "researcher",
    "You research one topic with the lookup tool and report the notes to the editor with "
    "send_message. Report only what the notes say.",
    tools=[lookup],
    script=researcher_script,
)
writer = Agent(
    "writer",
    "You write short, plain briefs from the notes you are given. Check the length with "
    "word_count, then hand the brief in with submit_draft.",
    tools=[word_count, submit_draft],
    script=writer_script,
)

team = Team("specialists", [editor], templates=[researcher, writer])

if __name__ == "__main__":
    print(run_sync(team, task=TASK).text)
