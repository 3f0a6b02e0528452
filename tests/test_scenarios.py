"""Both built-in scenarios on the scripted model: span tree, links, summary, live view."""

from __future__ import annotations

import pytest
from support import Traced, run_traced, span_tree

from runtime.hub import AgentState

COOKBOOK_SPAWN_SUMMARY = """\
  helper1: 1×sleep, 1×send_message, 1×wait_for_message
  helper2: 1×sleep, 1×send_message, 1×wait_for_message
  helper3: 1×sleep, 1×send_message, 1×wait_for_message
  lead: 3×wait_for_message, 1×create_subagents, 1×get_status, 1×kill_subagents"""

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


@pytest.mark.parametrize("scenario", ["spawn", "team"])
async def test_span_tree_snapshot(traced: Traced, scenario: str, snapshot) -> None:
    result = await run_traced(traced, scenario)
    assert result.lead.state is AgentState.DONE
    assert span_tree(traced.spans) == snapshot


@pytest.mark.parametrize("scenario", ["spawn", "team"])
async def test_one_trace_and_every_receive_link_resolves_to_a_send(
    traced: Traced, scenario: str
) -> None:
    await run_traced(traced, scenario)
    spans = traced.spans
    assert len({s.context.trace_id for s in spans}) == 1
    by_id = {s.context.span_id: s for s in spans}
    receives = traced.named("receive ")
    assert receives, "the scenario delivers messages"
    for receive in receives:
        assert len(receive.links) == (receive.attributes or {})["messaging.batch.message_count"]
        for link in receive.links:
            target = by_id[link.context.span_id]
            assert link.context.trace_id == receive.context.trace_id
            assert target.name.startswith("send ")
            assert target.kind.name == "PRODUCER"
            assert target.name == f"send {(receive.attributes or {})['gen_ai.agent.name']}"
            assert (link.attributes or {})["orchestrace.message.wait_seconds"] >= 0


async def test_spawn_summary_matches_the_cookbook(traced: Traced) -> None:
    await run_traced(traced, "spawn")
    text = traced.summary.summary().render()
    cookbook_block = text.split("Tool-call summary:\n", 1)[1].split("\n\n", 1)[0]
    assert cookbook_block == COOKBOOK_SPAWN_SUMMARY


async def test_spawn_live_view_prints_the_cookbook_lines(traced: Traced) -> None:
    await run_traced(traced, "spawn")
    live = traced.live_out.getvalue().splitlines()
    assert "  [helper1] sleep({'seconds': 1}) → slept 1s" in live
    assert (
        "  [helper1] send_message({'recipient_ids': ['lead'], 'content': 'done, slept 1s'})"
        " → delivered to ['lead']" in live
    )
    assert "  [lead] ← received from helper1: done, slept 1s" in live
    assert (
        "  [lead] kill_subagents({'subagent_ids': ['helper1', 'helper2', 'helper3']})"
        " → cancelled: helper1, helper2, helper3" in live
    )
    # a wait is printed before the delivery it woke for, as in the original cookbook
    wait = live.index("  [lead] wait_for_message({}) → woke: new messages")
    assert live[wait + 1] == "  [lead] ← received from helper1: done, slept 1s"


async def test_spawned_helpers_are_children_of_create_subagents(traced: Traced) -> None:
    await run_traced(traced, "spawn")
    (create,) = traced.named("execute_tool create_subagents")
    helpers = [s for s in traced.named("invoke_agent helper")]
    assert len(helpers) == 3
    assert all(h.parent is not None and h.parent.span_id == create.context.span_id for h in helpers)
    states = {(h.attributes or {})["orchestrace.agent.state"] for h in helpers}
    assert states == {"killed"}


async def test_team_members_are_children_of_the_workflow(traced: Traced) -> None:
    await run_traced(traced, "team")
    (root,) = traced.named("invoke_workflow team")
    agents = traced.named("invoke_agent ")
    assert sorted(s.name for s in agents) == [
        "invoke_agent helper1",
        "invoke_agent helper2",
        "invoke_agent lead",
    ]
    assert all(a.parent is not None and a.parent.span_id == root.context.span_id for a in agents)
    # everyone ends on their own: the lead's wrap-up reaches both members before they end
    assert {(a.attributes or {})["orchestrace.agent.state"] for a in agents} == {"done"}
    sends = traced.named("send ")
    assert {(s.attributes or {})["orchestrace.message.outcome"] for s in sends} == {"delivered"}


async def test_no_task_is_left_behind(traced: Traced) -> None:
    import asyncio

    await run_traced(traced, "spawn")
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_chat_content_only_with_capture(traced: Traced) -> None:
    from telemetry.spans import ContentPolicy

    await run_traced(traced, "spawn", content=ContentPolicy(40, capture=True))
    chat = traced.named("chat ")[0].attributes or {}
    assert chat["gen_ai.system_instructions"] == "You are the lead."
    assert chat["gen_ai.input.messages"].startswith('[{"role": "user"')
    assert len(chat["gen_ai.input.messages"]) == 40
    assert chat["gen_ai.output.messages"].startswith('[{"role": "assistant"')


async def test_no_chat_content_without_capture(traced: Traced) -> None:
    await run_traced(traced, "spawn")
    for span in traced.named("chat "):
        assert "gen_ai.input.messages" not in (span.attributes or {})
        assert "gen_ai.output.messages" not in (span.attributes or {})


async def test_the_command_line_offers_exactly_the_scenarios_that_exist() -> None:
    from runtime.run_defaults import SCENARIO_NAMES
    from runtime.scenarios import SCENARIOS

    assert tuple(sorted(SCENARIOS)) == SCENARIO_NAMES
