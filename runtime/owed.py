"""Answers an actor still owes: asks its handlers deferred (`context.defer()`,
runtime/deferred.py) and have not resolved yet.

Invariants:
- An owed answer dies with the instance that owed it: at a crash each asker
  gets ACTOR_CRASHED at once (as a gen_server's callers do), not a timeout.
- At a stop, owed answers get until the stop deadline, as a running handler
  does; then their askers get the stop's code (dead-lettered).
- A late answer of an abandoned Deferred is void (it is marked settled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.endings import dead_letter, overran

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell
    from exoarmur.runtime.deferred import Deferred

__all__ = ["OwedAnswers"]


class OwedAnswers:
    """The deferred asks of one cell not yet answered (made by the first one)."""

    __slots__ = ("_owed", "_settled")

    def __init__(self) -> None:
        self._owed: set[Deferred] = set()
        self._settled: anyio.Event | None = None  # a stop waiting for the next answer

    def __bool__(self) -> bool:
        return bool(self._owed)

    def add(self, deferred: Deferred) -> None:
        self._owed.add(deferred)

    def discard(self, deferred: Deferred) -> None:
        self._owed.discard(deferred)
        if self._settled is not None:
            self._settled.set()

    async def settle_by_stop(self, cell: Cell, code: ReasonCode) -> None:
        """Wait for the answers until the stop deadline; then their askers get `code`."""
        with anyio.move_on_after(max(cell.stop_deadline - cell.system.now(), 0.0)):
            while True:
                # A crash, or the asker's own deadline, may have answered one.
                self._owed = {d for d in self._owed if not d.envelope.reply_to.done}  # type: ignore[union-attr]
                if not self._owed:
                    break
                self._settled = anyio.Event()
                await self._settled.wait()
        self._settled = None
        self.abandon(cell, code)

    def abandon(self, cell: Cell, code: ReasonCode) -> None:
        """Every asker still waiting gets `code` (dead-lettered)."""
        owed, self._owed = self._owed, set()
        for deferred in owed:
            deferred.settled = True
            reply = deferred.envelope.reply_to
            if reply is not None and not reply.done:
                dead_letter(cell, deferred.envelope, code, "its answer was deferred and never came")

    def abandon_at_crash(self, cell: Cell) -> None:
        """The instance that owed them crashed: each asker gets ACTOR_CRASHED now."""
        owed, self._owed = self._owed, set()
        for deferred in owed:
            deferred.settled = True
            overran(cell, deferred.envelope, ReasonCode.ACTOR_CRASHED)
