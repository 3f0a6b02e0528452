"""A run's model-call and token budget shared by every process of the run.

The two counters live in the run's registry bucket under one key, ``budget``
(``{"model_calls": n, "tokens": t}``), and every change is a compare-and-set on that key's
revision: a model call is counted only if the counters it was checked against are still the
latest, so ``--max-model-calls 100`` allows 100 calls over all the processes together, not
100 in each. Tokens are added after each call in the background (and counted here at once,
so this process's next check sees them); the concurrency cap stays per process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, Final

import nats.js.errors
from nats.js.kv import KeyValue

from runtime.hub import TransportError
from runtime.limits import Budget, RunLimits
from telemetry.logs import get_logger

log = get_logger("orchestrace.nats")

#: The registry key holding the run's counters (no agent key looks like it: those are
#: ``agent.<name>``).
BUDGET_KEY: Final = "budget"

Retrying = Callable[[Callable[[], Coroutine[Any, Any, None]]], Coroutine[Any, Any, None]]


class SharedBudget(Budget):
    """A :class:`~runtime.limits.Budget` whose model calls and tokens count the run's
    processes together, through ``store`` (the run's key-value bucket).

    ``retrying`` runs one attempt until the broker takes it (raising
    :class:`~runtime.hub.TransportError` once it gives up); ``soon`` runs background work
    that closing the hub waits for. If the broker stays unreachable, this process counts on
    by itself (logged) rather than stopping its agents.
    """

    def __init__(
        self,
        limits: RunLimits,
        store: KeyValue,
        *,
        retrying: Retrying,
        soon: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        super().__init__(limits)
        self._store = store
        self._retrying = retrying
        self._soon = soon
        self._lock = asyncio.Lock()
        self._revision = 0  # of the counters last read or written; 0: none yet
        self._stored_calls = 0
        self._stored_tokens = 0
        self._unsent_tokens = 0

    async def reserve_call(self) -> None:
        """Count one model call for the whole run, or raise
        :class:`~runtime.limits.LimitExceeded` if the run has used its calls or tokens."""
        await self._change(calls=1)

    def add_tokens(self, count: int) -> None:
        """Count ``count`` tokens here at once and for the run in the background."""
        self._unsent_tokens += max(0, count)
        self.tokens = self._stored_tokens + self._unsent_tokens
        self._soon(self._send_tokens())

    async def _send_tokens(self) -> None:
        if self._unsent_tokens:
            await self._change(calls=0)

    async def _change(self, *, calls: int) -> None:
        async with self._lock:
            try:
                await self._retrying(lambda: self._compare_and_set(calls))
            except TransportError as exc:
                log.warning("run budget not shared; counting in this process", error=str(exc))
                self._see(self._stored_calls, self._stored_tokens)
                if calls:
                    self.check_model_call()
                self._stored_calls += calls
                self._stored_tokens += self._unsent_tokens
                self._unsent_tokens = 0
                self._see(self._stored_calls, self._stored_tokens)

    async def _compare_and_set(self, calls: int) -> None:
        """Write the counters plus this change over the revision they were read at;
        re-read and check again whenever another process got there first."""
        while True:
            self._see(self._stored_calls, self._stored_tokens)
            if calls:
                self.check_model_call()
            new_calls = self._stored_calls + calls
            new_tokens = self._stored_tokens + self._unsent_tokens
            value = json.dumps({"model_calls": new_calls, "tokens": new_tokens}).encode()
            try:
                revision = await self._store.update(BUDGET_KEY, value, last=self._revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                await self._read()
                continue
            self._revision = revision
            self._unsent_tokens -= new_tokens - self._stored_tokens
            self._stored_calls, self._stored_tokens = new_calls, new_tokens
            self._see(new_calls, new_tokens)
            return

    async def _read(self) -> None:
        try:
            entry = await self._store.get(BUDGET_KEY)
        except nats.js.errors.KeyNotFoundError:
            self._revision, self._stored_calls, self._stored_tokens = 0, 0, 0
            return
        counters = json.loads(entry.value or b"{}")
        self._revision = entry.revision or 0
        self._stored_calls = int(counters.get("model_calls", 0))
        self._stored_tokens = int(counters.get("tokens", 0))

    def _see(self, calls: int, tokens: int) -> None:
        """What the run has used, as far as this process knows now."""
        self.model_calls = calls
        self.tokens = tokens + self._unsent_tokens
