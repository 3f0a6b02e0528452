"""A run's model-call and token caps count every process of the run, against a real
``nats-server -js``: ``--max-model-calls 8`` allows 8 calls over the lead and its workers
together, not 8 in each."""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats_broker import Broker, running_broker
from test_nats import PROCESS_SECONDS, TEAMS, start_cli, workers

from runtime.limits import Budget, LimitExceeded, RunLimits
from runtime.nats_budget import BUDGET_KEY, SharedBudget
from runtime.nats_hub import NatsHub, connect
from telemetry.otlp_json import iter_spans_file


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_broker(tmp_path_factory.mktemp("nats")) as running:
        yield running


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    yield
    gc.collect()  # a socket left open is reported in the test that left it


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
    run_id = uuid.uuid4().hex
    lead_client = await connect(broker.url, name="lead")
    worker_client = await connect(broker.url, name="worker")
    lead = NatsHub(lead_client, run_id, host="lead", lead=True)
    worker = NatsHub(worker_client, run_id, host="worker")
    try:
        await lead.open()
        await worker.open()
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
    finally:
        for hub, client in ((worker, worker_client), (lead, lead_client)):
            await hub.close()
            await client.close()


@pytest.mark.asyncio
async def test_tokens_used_in_one_process_stop_the_next_call_in_another(broker: Broker) -> None:
    run_id = uuid.uuid4().hex
    lead_client = await connect(broker.url, name="lead")
    worker_client = await connect(broker.url, name="worker")
    lead = NatsHub(lead_client, run_id, host="lead", lead=True)
    worker = NatsHub(worker_client, run_id, host="worker")
    try:
        await lead.open()
        await worker.open()
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
    finally:
        await worker.close()
        await worker_client.close()
        await lead_client.close()


@pytest.mark.asyncio
async def test_an_uncapped_run_counts_without_the_broker(broker: Broker) -> None:
    client = await connect(broker.url, name="lead")
    hub = NatsHub(client, uuid.uuid4().hex, host="lead", lead=True)
    try:
        await hub.open()
        budget = hub.budget(RunLimits(max_model_calls=None, max_tokens_total=None))
        assert not isinstance(budget, SharedBudget)
    finally:
        await hub.close()
        await client.close()


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
