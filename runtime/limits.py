"""Limits that protect a paid API: agents, model calls, tokens and concurrency per run.

Each cap is configurable (``None`` = unlimited). Hitting one is never silent: a spawn over
the agent cap is an ``is_error`` tool result; a model call over the call or token budget
ends that agent with reason ``limit:<name>`` and an ERROR span; waiting for a free model
slot is recorded on the ``chat`` span as ``orchestrace.model.queue_seconds``.

When a run's agents are spread over processes (the hub on NATS), the model calls and tokens
count the whole run (:class:`runtime.nats_budget.SharedBudget`); the concurrency cap holds
in each process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from runtime.errors import ConfigurationError, OrchestraceError

DEFAULT_MAX_AGENTS: Final = 64
DEFAULT_MAX_MODEL_CALLS: Final = 1000
DEFAULT_MAX_TOKENS_TOTAL: Final = 5_000_000
DEFAULT_MAX_CONCURRENT_CALLS: Final = 16
DEFAULT_MAX_MESSAGE_CHARS: Final = 100_000


class LimitExceeded(OrchestraceError):
    """A per-run cap was reached; ``limit`` names it (``max_model_calls``, ...)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class RunLimits:
    """The caps of one run; ``None`` means unlimited.

    Raises :class:`orchestrace.ConfigurationError` for a cap that is not a whole
    number >= 1 (a concurrency cap of 0 would deadlock the run).
    """

    max_agents: int | None = DEFAULT_MAX_AGENTS
    max_model_calls: int | None = DEFAULT_MAX_MODEL_CALLS
    max_tokens_total: int | None = DEFAULT_MAX_TOKENS_TOTAL
    max_concurrent_calls: int | None = DEFAULT_MAX_CONCURRENT_CALLS
    max_message_chars: int | None = DEFAULT_MAX_MESSAGE_CHARS

    def __post_init__(self) -> None:
        # 0 concurrent calls would deadlock every agent; negative caps mean nothing.
        for name in (
            "max_agents",
            "max_model_calls",
            "max_tokens_total",
            "max_concurrent_calls",
            "max_message_chars",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigurationError(
                    f"RunLimits.{name} must be a whole number >= 1, or None for no limit; "
                    f"got {value!r}"
                )


@dataclass
class Budget:
    """What a run has used of its :class:`RunLimits`."""

    limits: RunLimits = field(default_factory=RunLimits)
    model_calls: int = 0
    tokens: int = 0
    _slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.limits.max_concurrent_calls is not None:
            self._slots = asyncio.Semaphore(self.limits.max_concurrent_calls)

    def check_spawn(self, existing: int, requested: int) -> None:
        """Raise :class:`LimitExceeded` if ``requested`` more agents break the agent cap."""
        cap = self.limits.max_agents
        if cap is not None and existing + requested > cap:
            raise LimitExceeded(
                "max_agents",
                f"agent limit reached: the run has {existing} of at most {cap} agents, "
                f"so at most {max(0, cap - existing)} more can be spawned (asked for {requested})",
            )

    def check_model_call(self) -> None:
        """Raise :class:`LimitExceeded` if another model call would break a cap."""
        calls, tokens = self.limits.max_model_calls, self.limits.max_tokens_total
        if calls is not None and self.model_calls >= calls:
            raise LimitExceeded(
                "max_model_calls", f"the run has made its limit of {calls} model calls"
            )
        if tokens is not None and self.tokens >= tokens:
            raise LimitExceeded(
                "max_tokens_total",
                f"the run has used {self.tokens} tokens, over its limit of {tokens}",
            )

    def check_message(self, content: str) -> str | None:
        """A problem description if ``content`` is over the message size cap."""
        cap = self.limits.max_message_chars
        if cap is not None and len(content) > cap:
            return f"content is {len(content)} characters; the limit is {cap}"
        return None

    async def reserve_call(self) -> None:
        """Count one model call, or raise :class:`LimitExceeded` if it would break a cap.

        A budget shared by the processes of a run counts on the broker here."""
        self.check_model_call()
        self.model_calls += 1

    @asynccontextmanager
    async def model_slot(self) -> AsyncIterator[float]:
        """Count a model call (:meth:`reserve_call`), then hold one of the concurrent
        model-call slots of this process; yields the seconds spent queued."""
        await self.reserve_call()
        if self._slots is None:
            yield 0.0
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self._slots:
            yield loop.time() - started

    def add_tokens(self, count: int) -> None:
        """Count tokens a model call used (a negative count, which a checked response
        never has, is not allowed to lower what the run has used)."""
        self.tokens += max(0, count)
