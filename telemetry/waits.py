"""Agents blocked in ``wait_for_message`` right now, and since when.

The hub opens a wait when an agent starts blocking and closes it when the wait returns for
any reason (a message, a timeout, no sender left, cancellation: it closes in a ``finally``).
Nothing else happens on that path — two dictionary operations. When metrics are collected,
the ``orchestrace.agents.waiting`` and ``orchestrace.agent.wait.longest`` gauges read
:meth:`OpenWaits.by_role` (see :class:`telemetry.metrics.AgentWaits`), so an alert can say
"an agent has been blocked for more than N minutes".

The register is process-wide, like the agents it describes: a hub does not know which meter
provider (if any) its run records to. It uses no OpenTelemetry API, so the hub can import it
without pulling in telemetry.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Final


class OpenWaits:
    """The waits in progress: when each began, and for which role."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: Seconds on a monotonic clock (injectable for tests).
        self.clock = clock
        self._open: dict[int, tuple[str, float]] = {}
        self._roles: set[str] = set()
        self._tokens = itertools.count()

    def begin(self, role: str) -> int:
        """An agent of ``role`` starts blocking; returns the token :meth:`end` takes."""
        token = next(self._tokens)
        self._open[token] = (role, self.clock())
        self._roles.add(role)
        return token

    def end(self, token: int) -> None:
        """The wait ``token`` is over (a second call does nothing)."""
        self._open.pop(token, None)

    def by_role(self) -> dict[str, tuple[int, float]]:
        """Role → (agents waiting, seconds the longest current wait has lasted).

        Every role that has ever waited is listed, with ``(0, 0.0)`` once none waits, so a
        gauge's series drops to zero rather than vanishing.
        """
        now = self.clock()
        found = dict.fromkeys(set(self._roles), (0, 0.0))
        for role, since in list(self._open.values()):
            count, longest = found.get(role, (0, 0.0))
            found[role] = (count + 1, max(longest, now - since))
        return found

    def __len__(self) -> int:
        return len(self._open)


#: The process's register, opened and closed by ``runtime.hub.Hub.wait``.
OPEN_WAITS: Final = OpenWaits()
