"""A research team: a planner asks, a researcher looks things up, a critic reviews.

The planner (the lead) sends the question to the researcher and waits. The researcher
looks the topic up with its ``lookup`` tool and sends a draft to the critic; the critic
reviews it, tells the researcher what is missing and gives the planner its verdict; the
researcher looks up the missing caveat and sends the planner its final findings. Once the
planner has heard from both, it answers. Every hop is a ``send`` span, and each
``receive`` span links to the sends it delivered::

    orchestrace run examples/research_team.py      # live lines, the answer, the summary
    python examples/research_team.py               # just the answer

Without ``ANTHROPIC_API_KEY`` each agent plays its ``script``; with it, the same team runs
on Claude and the scripts are ignored.
"""

from __future__ import annotations

from typing import Final, Literal

from orchestrace import Agent, Conversation, Reply, Team, ToolError, run_sync, tool

TASK: Final = "What are span links, and what should we watch out for when we use them?"

Aspect = Literal["facts", "caveats"]

#: The team's research notes: topic -> aspect -> notes.
NOTES: Final[dict[str, dict[Aspect, list[str]]]] = {
    "span links": {
        "facts": [
            "A span link points at another span that caused or relates to this one, "
            "without making it the parent.",
            "A consumer that handles a batch can link one receive span to every send it delivered.",
            "Links are set when a span starts; each carries the linked span's context and "
            "its own attributes.",
        ],
        "caveats": [
            "A link to a span whose trace was sampled out points at nothing.",
            "Not every tracing UI draws links; some only list them as references.",
        ],
    },
    "context propagation": {
        "facts": [
            "The W3C traceparent header carries the trace id and the parent span id.",
            "Baggage travels beside the trace context for application key-values.",
        ],
        "caveats": ["A hop that drops the header starts a new trace."],
    },
}


@tool
def lookup(topic: str, aspect: Aspect = "facts", limit: int = 2) -> list[str]:
    """Look a topic up in the team's research notes.

    Args:
        topic: the topic to look up, e.g. "span links" (case-insensitive)
        aspect: "facts" for what holds, "caveats" for pitfalls and limits
        limit: how many notes to return at most (1 to 5)
    """
    notes = NOTES.get(topic.strip().lower())
    if notes is None:
        raise ToolError(f"no notes on {topic!r}; the notes cover: {', '.join(NOTES)}")
    return notes[aspect][: max(1, min(limit, 5))]


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


DRAFT: Final = "Draft on span links:\n" + bullets(NOTES["span links"]["facts"][:2])
REVIEW_FOR_RESEARCHER: Final = (
    "The draft is accurate, but it does not say what happens when the linked span was "
    "sampled out. Add that caveat before you report."
)
VERDICT: Final = (
    "Review: the researcher's facts check out against the notes; I asked for the "
    "sampling caveat to be added."
)
FINDINGS: Final = (
    "Findings on span links:\n"
    + bullets(NOTES["span links"]["facts"][:2])
    + "\nCaveat:\n"
    + bullets(NOTES["span links"]["caveats"][:1])
)
ANSWER: Final = (
    "Span links connect a span to the spans that caused it without making them its parent, "
    "so one receive span can point at every send it delivered. Watch out for sampling: a "
    "link to a span whose trace was sampled out points at nothing. (Researched by the "
    "researcher, reviewed by the critic.)"
)


def planner_script(conv: Conversation) -> Reply:
    """Ask the researcher, wait until both the researcher and the critic have reported."""
    if not conv.sent_tools():
        return Reply.call(
            "send_message",
            recipient_ids=["researcher"],
            content=f"{TASK} Look it up, have the critic review your draft, then send me "
            "your findings.",
        )
    heard_from = {sender for sender, _ in conv.received()}
    if not {"researcher", "critic"} <= heard_from:
        return Reply.call("wait_for_message")
    return Reply.say(ANSWER)


# Lists are fine where each turn's move does not depend on timing: wait_for_message
# returns at once if the message is already there.
researcher_script: Final = [
    Reply.call("wait_for_message"),
    Reply.call("lookup", topic="span links", limit=2),
    Reply.call("send_message", recipient_ids=["critic"], content=DRAFT),
    Reply.call("wait_for_message"),
    Reply.call("lookup", topic="span links", aspect="caveats", limit=1),
    Reply.call("send_message", recipient_ids=["planner"], content=FINDINGS),
    Reply.say("Reported to the planner."),
]

critic_script: Final = [
    Reply.call("wait_for_message"),
    Reply.call("send_message", recipient_ids=["researcher"], content=REVIEW_FOR_RESEARCHER),
    Reply.call("send_message", recipient_ids=["planner"], content=VERDICT, think=0.5),
    Reply.say("Review sent."),
]

planner = Agent(
    "planner",
    "You plan the team's answer. Send the question to the researcher with send_message, "
    "then call wait_for_message until you have heard from both the researcher (findings) "
    "and the critic (review). Then answer the user in two or three sentences, using only "
    "what they reported.",
    task=TASK,
    script=planner_script,
)
researcher = Agent(
    "researcher",
    "You research topics with the lookup tool; report only what the notes say. Send your "
    "draft to the critic, wait for the review and fix what it asks for (look it up), then "
    "send your final findings to the planner.",
    tools=[lookup],
    script=researcher_script,
)
critic = Agent(
    "critic",
    "You review the researcher's drafts for accuracy and missing caveats. Tell the "
    "researcher what to fix, and give the planner a one-line verdict.",
    script=critic_script,
)

team = Team("research", [planner, researcher, critic])

if __name__ == "__main__":
    print(run_sync(team, task=TASK).text)
