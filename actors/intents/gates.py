"""What an intent asks of the gates before it executes, and what it is answered.

The intent actor asks the gates actor of its process (`IntentSetting.gates`,
actors/controls/gates.py) twice on the way to an effect:

    GateCheck(record, Stage.ENTER)   from RECEIVED or APPROVED: every gate, in
                                     their fixed order (global kill switch,
                                     tenant kill switch, ...)
    GateCheck(record, Stage.KILL_SWITCHES)
                                     from APPROVED, and right before `apply`,
                                     when the last check is older than
                                     KILL_CHECK_FRESH: the kill switches,
                                     read again

and is answered a `Verdict`: passed, or the state the intent ends in with
its code and detail. A verdict carries `checked`, the runtime time at which
its reads were sent: an apply may start only within KILL_CHECK_FRESH of it
(runtime/margins.py; why that is enough: actors/controls/switches.py).

A gate that cannot tell (its store unreachable) refuses: the gates fail
closed. The intent actor keeps a refusal it was given and writes it, even
if the store only comes back later (`Gating.refusal`, actors/intents/gating.py).

`TenantSwitches` is the kill switches of each tenant as last read with a
`SwitchesCheck`, read again once stale, one read per tenant at a time: for
the tenant desk (the code of a refused submission) and for an execution
type's actor (an apply whose check went stale while it waited for its turn
is checked there, at its turn, instead of going back to the end of the line).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.states import IntentState
from exoarmur.runtime import ActorRef, SharedCalls, TimeoutCategory, message
from exoarmur.runtime.margins import KILL_CHECK_FRESH

__all__ = ["GateCheck", "Stage", "SwitchesChanged", "SwitchesCheck", "TenantSwitches", "Verdict"]


class Stage(enum.StrEnum):
    ENTER = "ENTER"  # every gate, in order
    KILL_SWITCHES = "KILL_SWITCHES"  # the kill switches again, before an apply


@attrs.frozen
class Verdict:
    """Every gate passed (`state` None, `retry_after` 0); the intent ends in
    `state` with `code`; or it looks again after `retry_after` seconds (the
    type's breaker is open and it waits for the half-open probe)."""

    checked: float  # runtime time the gates' reads were sent
    state: IntentState | None = None
    code: str = ""
    detail: str = ""
    retry_after: float = 0.0

    @property
    def passed(self) -> bool:
        return self.state is None and not self.retry_after


@message("exoarmur.intent.gates", timeout=TimeoutCategory.KV_GET)
class GateCheck:
    intent: IntentRecord
    stage: Stage = Stage.ENTER


@message("exoarmur.intent.switches_changed", timeout=TimeoutCategory.KV_GET)
class SwitchesChanged:
    """To the gates, from the process's watch: `tenant`'s kill switch (None:
    the global one) was written, so the clear readings it covers are not
    used again (the checks the change's `Recheck` wakes read it). Lost or
    late, it costs a wake-up that finds the old reading until it is
    SWITCHES_SHARED old."""

    tenant: str | None = None


@message("exoarmur.intent.switches_check", timeout=TimeoutCategory.KV_GET)
class SwitchesCheck:
    """To the gates: a kill switch covering `tenant` active now, as a kill's
    detail names it ("" if none), read once from the leader; a read that
    fails raises its code. The same reads as a `Stage.KILL_SWITCHES` check,
    without its patience: for the code of a submission its tenant's limits
    refuse, and for an apply whose check went stale at its turn (clear: it
    starts now; anything else: it is not started, and the intent asks the
    gates again)."""

    tenant: str


class TenantSwitches:
    """Per tenant: (the runtime time its switches' reads were sent, the
    words of an active switch or ""), read again once older than
    KILL_CHECK_FRESH, each read bounded by it too (an answer later than
    that is stale on arrival). `gates` finds the process's gates actor."""

    def __init__(self, gates: Callable[[], ActorRef | None], *, now: Callable[[], float]) -> None:
        self.gates = gates
        self.now = now
        self.seen: dict[str, tuple[float, str]] = {}
        self.reads: SharedCalls[str, tuple[float, str]] = SharedCalls()

    async def check(self, tenant: str) -> tuple[float, str] | None:
        """What the switches of `tenant` said, read within KILL_CHECK_FRESH;
        None if this process has no gates to ask. A read that fails raises
        its code."""
        seen = self.seen.get(tenant)
        if seen is not None and self.now() - seen[0] <= KILL_CHECK_FRESH:
            return seen
        gates = self.gates()
        if gates is None:
            return None
        return await self.reads.call(tenant, lambda: self._read(gates, tenant))

    async def _read(self, gates: ActorRef, tenant: str) -> tuple[float, str]:
        sent = self.now()
        detail: str = await gates.ask(SwitchesCheck(tenant), timeout=KILL_CHECK_FRESH)
        self.seen[tenant] = seen = (sent, detail)
        return seen
