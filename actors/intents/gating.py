"""The intent actor's side of the gates: when to ask them, what to do with
the answer, and what it keeps between asks.

An intent on its way to an effect asks the gates actor (actors/controls/
gates.py) every gate from RECEIVED (`Stage.ENTER`) and the kill switches
again right before an apply whenever the last check that passed is older
than KILL_CHECK_FRESH (`Stage.KILL_SWITCHES`). The answer is one of:

    passed              `gated` is set to the time the check's reads were
                        sent: an apply may start until `not_after`
    AWAITING_APPROVAL   written, then waited in until a `Recheck` (an
                        approval stored, a switch set), APPROVAL_POLL or
                        the approval deadline, whichever comes first
    retry_after         the type's breaker is open: looked at again after
                        its cooldown (never a hot loop)
    a refusal           KILLED, DENIED, EXPIRED or FAILED, kept in `refusal`
                        until it is written: an answer that comes later (the
                        store back, a switch cleared) never undoes it
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from exoarmur.actors.intents.effects import TypeInfo
from exoarmur.actors.intents.gates import GateCheck, Stage, Verdict
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.states import IntentState
from exoarmur.runtime import ActorRef
from exoarmur.runtime.margins import APPROVAL_POLL, GATE_CHECK, KILL_CHECK_FRESH

__all__ = ["Gating"]

S = IntentState
Write = Callable[..., Awaitable[IntentRecord]]  # IntentActor._write(record, state, **change)


class Gating:
    """One intent's gate checks: asked through `gates` (None: a process
    without gates, where everything passes), refusals written by `write`."""

    def __init__(
        self,
        *,
        gates: ActorRef | None,
        types: Mapping[str, TypeInfo],
        now: Callable[[], float],
        write: Write,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.gates = gates
        self.types = types
        self.now = now  # the runtime clock: freshness, pauses
        self.wall = wall  # the records' clock: the approval deadline
        self.write = write
        self.gated = -math.inf  # runtime time of the reads of the last check that passed
        self.refusal: Verdict | None = None
        self.wake = anyio.Event()  # set by `recheck`: a decision waited for may have changed

    @property
    def not_after(self) -> float:
        """The runtime time after which no apply may start on the last check."""
        return self.gated + KILL_CHECK_FRESH

    def recheck(self) -> None:
        self.wake.set()

    async def switches_clear(self, record: IntentRecord) -> bool:
        """Whether the kill switches were seen clear within KILL_CHECK_FRESH
        (read again if not); KILLED is written if they are not."""
        if self.refusal is None and self.now() - self.gated <= KILL_CHECK_FRESH:
            return True
        return await self.check(record, Stage.KILL_SWITCHES) is not None

    async def check(self, record: IntentRecord, stage: Stage) -> Verdict | None:
        """The gates' pass for `record`, or None: a refusal written, or the
        intent waiting for an approval or for its type's breaker."""
        if self.refusal is None:
            if self.gates is None:
                self.gated = self.now()
                return Verdict(self.gated)
            verdict: Verdict = await self.gates.ask(GateCheck(record, stage), timeout=GATE_CHECK)
            if verdict.passed:
                self.gated = verdict.checked
                return verdict
            if verdict.state is S.AWAITING_APPROVAL:
                await self._await_decision(record, verdict)
                return None
            if verdict.retry_after:
                await anyio.sleep(min(verdict.retry_after, APPROVAL_POLL))
                return None
            self.refusal = verdict
        refusal = self.refusal
        assert refusal.state is not None
        await self.write(record, refusal.state, code=refusal.code, detail=refusal.detail)
        return None

    async def _await_decision(self, record: IntentRecord, verdict: Verdict) -> None:
        """AWAITING_APPROVAL written, or, once it is, a wait for a change."""
        if record.state is not S.AWAITING_APPROVAL:
            await self.write(record, S.AWAITING_APPROVAL, code=verdict.code, detail=verdict.detail)
            return
        info = self.types[record.type]
        with anyio.move_on_after(min(APPROVAL_POLL, max(info.approval_deadline(record) - self.wall(), 0.0))):
            await self.wake.wait()
        self.wake = anyio.Event()
