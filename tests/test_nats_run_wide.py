"""What holds for a whole run spread over processes, against a real ``nats-server -js``:
the model-call and token caps count every process (``--max-model-calls 8`` allows 8 calls
over the lead and its workers together, not 8 in each), and agents waiting in several
processes are woken with "no one can send you a message" as they would be in one."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from nats_broker import NATS_TEST_MARKS, Broker
from test_nats import PROCESS_SECONDS, TEAMS, final_answer, finished, in_process, start_cli, workers

from runtime.hub import Envelope, WakeReason
from runtime.limits import Budget, LimitExceeded, RunLimits
from runtime.nats_budget import BUDGET_KEY, SharedBudget
from runtime.nats_hub import NatsHub, connect
from telemetry.otlp_json import iter_spans_file

pytestmark = NATS_TEST_MARKS


@asynccontextmanager
async def _processes(broker: Broker) -> AsyncIterator[tuple[NatsHub, NatsHub]]:
    """A lead's hub and a worker's (two clients, as two processes have), open on one new
    run; closed afterwards."""
    run_id = uuid.uuid4().hex
    hubs: list[NatsHub] = []
    try:
        for host in ("lead", "worker"):
            client = await connect(broker.url, name=host)
            hubs.append(NatsHub(client, run_id, host=host, lead=host == "lead"))
            await hubs[-1].open()
        yield hubs[0], hubs[1]
    finally:
        for hub in reversed(hubs):
            await hub.close()
            await hub.client.close()


async def _calls(budget: Budget, count: int) -> tuple[int, list[str]]:
    """Ask for ``count`` model calls; how many were allowed, and the refusals' messages."""

    async def one() -> str | None:
        try:
            async with budget.model_slot():
                return None
        except LimitExceeded as exc:
            return str(exc)

    outcomes = await asyncio.gather(*(one() for _ in range(count)))
    refusals = [o for o in outcomes if o is not None]
    return count - len(refusals), refusals


@pytest.mark.asyncio
async def test_two_processes_share_the_run_s_model_calls(broker: Broker) -> None:
    """Sixteen calls asked for at once by two processes' budgets: exactly the cap's 5 are
    made, whatever the interleaving, and the broker holds the run's count."""
    async with _processes(broker) as (lead, worker):
        limits = RunLimits(max_model_calls=5)
        here, there = lead.budget(limits), worker.budget(limits)
        assert isinstance(here, SharedBudget)
        assert isinstance(there, SharedBudget)
        (made_here, refused_here), (made_there, refused_there) = await asyncio.gather(
            _calls(here, 8), _calls(there, 8)
        )
        assert made_here + made_there == 5
        assert set(refused_here + refused_there) == {"the run has made its limit of 5 model calls"}
        assert lead._kv is not None
        stored = json.loads((await lead._kv.get(BUDGET_KEY)).value or b"")
        assert stored == {"model_calls": 5, "tokens": 0}


@pytest.mark.asyncio
async def test_tokens_used_in_one_process_stop_the_next_call_in_another(broker: Broker) -> None:
    async with _processes(broker) as (lead, worker):
        limits = RunLimits(max_tokens_total=100, max_model_calls=None)
        here, there = lead.budget(limits), worker.budget(limits)
        assert await _calls(there, 1) == (1, [])
        async with here.model_slot():
            pass
        here.add_tokens(150)
        # Counted here at once: this process's next call is refused without a round trip.
        assert await _calls(here, 1) == (0, ["the run has used 150 tokens, over its limit of 100"])
        await lead.close()  # waits until the tokens are on the broker
        assert await _calls(there, 1) == (0, ["the run has used 150 tokens, over its limit of 100"])


@pytest.mark.asyncio
async def test_an_uncapped_run_counts_without_the_broker(broker: Broker) -> None:
    async with _processes(broker) as (lead, _):
        budget = lead.budget(RunLimits(max_model_calls=None, max_tokens_total=None))
        assert not isinstance(budget, SharedBudget)


def test_a_split_run_makes_no_more_model_calls_than_its_cap(broker: Broker, tmp_path: Path) -> None:
    """Three agents of five calls each over a lead and two workers, ``--max-model-calls 8``:
    8 ``chat`` spans in all, and the agents refused say why. Counted in each process, each
    would have made its five."""
    target = f"{TEAMS}:tally"
    spans = tmp_path / "tally.jsonl"
    with workers(broker, target, spans, ["--agents", "a"], ["--agents", "b"]):
        lead = start_cli(
            "--hub", broker.url, target, "--spans-file", str(spans), "--max-model-calls", "8"
        )
        _, err = lead.communicate(timeout=PROCESS_SECONDS)
    assert lead.returncode in (0, 1), err  # 1: the lead itself was refused a call
    assert "Traceback" not in err
    records = list(iter_spans_file(spans))
    assert len([r for r in records if r.name.startswith("chat ")]) == 8
    reasons = {
        r.attributes["gen_ai.agent.name"]: r.attributes.get("orchestrace.agent.end_reason")
        for r in records
        if r.name.startswith("invoke_agent ")
    }
    assert set(reasons) == {"lead", "a", "b"}
    assert "limit:max_model_calls" in reasons.values()
    assert set(reasons.values()) <= {"end_turn", "limit:max_model_calls"}


async def _host_a_and_b(lead: NatsHub, worker: NatsHub) -> None:
    """``a`` in the lead's process, ``b`` in the worker's, each known to both."""
    lead.register("a", "lead")
    worker.register("b", "member")
    await lead.knows({"a", "b"})
    await worker.knows({"a", "b"})


#: Waits that only "no one can send" can end within a test run.
FOREVER = 3600.0


@pytest.mark.asyncio
async def test_agents_waiting_in_two_processes_learn_that_no_one_can_send(broker: Broker) -> None:
    """b sends to a, then waits; a reads it and waits again: now both wait with nothing on
    its way, and both are woken with NO_SENDERS (their own timeouts are an hour)."""
    async with _processes(broker) as (lead, worker):
        await _host_a_and_b(lead, worker)

        async def a() -> tuple[WakeReason, list[str], WakeReason]:
            first = await lead.wait("a", FOREVER)
            read = [e.content for e in lead.drain("a")]
            return first, read, await lead.wait("a", FOREVER)

        async def b() -> WakeReason:
            await worker.send(Envelope(worker.new_message_id(), "b", "a", "hi", worker.now_ns()))
            return await worker.wait("b", FOREVER)

        async with asyncio.timeout(PROCESS_SECONDS):  # a hang detector only
            got_a, got_b = await asyncio.gather(a(), b())
        assert got_a == (WakeReason.MESSAGES, ["hi"], WakeReason.NO_SENDERS)
        assert got_b is WakeReason.NO_SENDERS


@pytest.mark.asyncio
async def test_an_agent_still_working_in_another_process_keeps_the_waiter_waiting(
    broker: Broker,
) -> None:
    """b, on the worker, never waits: a's wait ends by its own timeout, not NO_SENDERS."""
    async with _processes(broker) as (lead, worker):
        await _host_a_and_b(lead, worker)
        assert await lead.wait("a", 0.5) is WakeReason.TIMEOUT


def test_a_split_run_wakes_the_lead_when_its_member_ended_without_a_word(
    broker: Broker, tmp_path: Path
) -> None:
    """The member ends on a worker without sending; the lead, waiting with an hour's
    timeout in another process, is woken as in one process and answers the same."""
    target = f"{TEAMS}:silent"
    spans = tmp_path / "silent.jsonl"
    with workers(broker, target, spans, ["--agents", "quiet"]):
        lead = start_cli(
            "--hub", broker.url, target, "--wait-timeout", str(FOREVER), "--spans-file", ""
        )
        split = final_answer(finished(lead))
    local, _ = in_process(target)
    assert split == local == "woke: no one can send you a message"
