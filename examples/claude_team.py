"""An on-call pair meant for real Claude: a lead that delegates, an analyst with a tool.

The ``oncall`` lead gets the incident, asks the ``analyst`` to investigate, waits for the
report and decides which team to page. The analyst reads service metrics with
``query_metrics`` (typed parameters: the model can only ask for services and metrics that
exist) and reports back. The instructions are written for Claude: who does what, which
tool to use when, when to stop. Each agent also has a script, so the file runs offline::

    ANTHROPIC_API_KEY=sk-ant-... python examples/claude_team.py       # on Claude
    python examples/claude_team.py                                    # offline (scripts)
    orchestrace run examples/claude_team.py --offline                 # scripts, key or not

On Claude every request is a ``chat`` span with token usage; the SDK's retries are events
on it. ``ORCHESTRACE_MODEL`` (or ``orchestrace run --model``) picks the model.
"""

from __future__ import annotations

from typing import Final, Literal

from orchestrace import Agent, Conversation, Reply, Team, run_sync, tool

TASK: Final = (
    "Alert: checkout p95 latency has been above its SLO for the last hour. Find out why and "
    "tell me which team to page."
)

Service = Literal["checkout", "payments", "search"]
Metric = Literal["p95_latency_ms", "error_rate_pct"]

#: (baseline, last hour) for each service and metric.
METRICS: Final[dict[str, dict[str, tuple[float, float]]]] = {
    "checkout": {"p95_latency_ms": (420, 1380), "error_rate_pct": (0.2, 0.3)},
    "payments": {"p95_latency_ms": (310, 1240), "error_rate_pct": (0.1, 4.8)},
    "search": {"p95_latency_ms": (180, 190), "error_rate_pct": (0.1, 0.1)},
}


@tool
def query_metrics(service: Service, metric: Metric) -> dict[str, str | float]:
    """Read one metric of one service: its baseline (last week) and its last hour.

    Args:
        service: the service to query
        metric: p95_latency_ms (request latency, 95th percentile) or error_rate_pct
            (percentage of requests that failed)
    """
    baseline, last_hour = METRICS[service][metric]
    return {
        "service": service,
        "metric": metric,
        "baseline": baseline,
        "last_hour": last_hour,
        "change_pct": round(100 * (last_hour - baseline) / baseline),
    }


# --- offline scripts ----------------------------------------------------------------------
#: What the analyst looks at, in order, when it plays its script.
QUERIES: Final[list[tuple[Service, Metric]]] = [
    ("checkout", "p95_latency_ms"),
    ("checkout", "error_rate_pct"),
    ("payments", "p95_latency_ms"),
    ("payments", "error_rate_pct"),
]

REPORT: Final = (
    "Checkout p95 is 1380 ms (baseline 420) but its error rate is flat (0.3%). Payments, "
    "which checkout calls, went from 310 to 1240 ms p95 and from 0.1% to 4.8% errors in the "
    "same hour. Checkout is slow because it waits on payments."
)
ANSWER: Final = (
    "Page the payments team. Payments' error rate rose from 0.1% to 4.8% and its p95 "
    "latency from 310 to 1240 ms in the last hour; checkout's p95 (420 to 1380 ms) rose "
    "with it while its own error rate stayed flat, so checkout is slow because it waits on "
    "payments."
)


def oncall_script(conv: Conversation) -> Reply:
    if not conv.sent_tools():
        return Reply.call(
            "send_message",
            recipient_ids=["analyst"],
            content="Checkout p95 latency is over its SLO since about an hour ago. Which "
            "service is the cause? Compare the last hour with the baseline.",
        )
    if not any(sender == "analyst" for sender, _ in conv.received()):
        return Reply.call("wait_for_message")
    return Reply.say(ANSWER)


def analyst_script(conv: Conversation) -> Reply:
    if not any(sender == "oncall" for sender, _ in conv.received()):
        return Reply.call("wait_for_message")
    queried = conv.sent_tools().count("query_metrics")
    if queried < len(QUERIES):
        service, metric = QUERIES[queried]
        return Reply.call("query_metrics", service=service, metric=metric)
    if "send_message" not in conv.sent_tools():
        return Reply.call("send_message", recipient_ids=["oncall"], content=REPORT)
    return Reply.say("Reported to oncall.")


oncall = Agent(
    "oncall",
    "You are the on-call incident lead. You do not read metrics yourself: delegate the "
    "investigation to the analyst with send_message (one clear question), then call "
    "wait_for_message until the analyst's report arrives. Then answer in at most three "
    "sentences: which team to page and the numbers that show why. If the report does not "
    "settle it, ask the analyst one follow-up question.",
    task=TASK,
    script=oncall_script,
)
analyst = Agent(
    "analyst",
    "You investigate incidents with query_metrics. Compare each metric's last hour with its "
    "baseline; start with the alerting service, then check the services it depends on "
    "(checkout calls payments and search). Quote only numbers the tool returned. When you "
    "know the cause, send oncall one short report with send_message, then end your turn.",
    tools=[query_metrics],
    task="Wait for the on-call lead's question (wait_for_message), investigate it, and "
    "report back with send_message.",
    max_turns=12,
    script=analyst_script,
)

team = Team("incident", [oncall, analyst])

if __name__ == "__main__":
    result = run_sync(team, task=TASK)
    print(result.text)
