"""The gates an intent passes before it executes, in one fixed order.

    1. the global kill switch         KILLED, KILL_SWITCH_ACTIVE
    2. the tenant's kill switch       KILLED, KILL_SWITCH_ACTIVE
    3. approval, if its type asks     waits in AWAITING_APPROVAL (APPROVAL_REQUIRED);
                                      DENIED, APPROVAL_DENIED; EXPIRED, APPROVAL_EXPIRED
    4. the type's breaker             open: looks again after its cooldown while the
                                      deadline leaves room (the type's `wait_for_breaker`),
                                      else FAILED, BREAKER_OPEN

Each `GateCheck` from an intent actor (actors/intents/gates.py) is answered
with the first refusal in that order, the wait, or a pass. The kill
switches are read from the stream leader (actors/controls/switches.py),
one read per tenant at a time: the checks that come while it is in flight
share it, and a reading that found them clear answers the checks of the
next SWITCHES_SHARED too. Every verdict carries when its reads were sent,
and an apply starts only within KILL_CHECK_FRESH of that, so a shared
reading never lets an apply start after a set has answered. A read that
fails refuses, as an active switch would: the gates fail closed. An approval is read from the leader
too (actors/intents/approvals.py); one that cannot be read is waited for,
never taken as given. The breaker is the one its supervisor keeps for the
type's actor, looked at where sends are refused (`ActorRef.refusing`): no
read, no hop. A `KILL_SWITCHES` check (before an apply) reads only the
switches: the rest was decided on the way to APPROVED, and an apply that
meets a breaker opened since is refused before it starts (the intent then
ends FAILED, BREAKER_OPEN: actors/intents/intent.py).

A refusal is not audited here: the intent writes the state it ends in, with
the code and the detail, and that transition is its audit record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import anyio
from datetime import datetime, timezone

from exoarmur.actors.controls.switches import Switch, read_switches
from exoarmur.actors.intents import IntentRecord, TypeInfo, intent_key
from exoarmur.actors.intents.approvals import Approval, Decision
from exoarmur.actors.intents.gates import GateCheck, Stage, SwitchesChanged, SwitchesCheck, Verdict
from exoarmur.actors.intents.kills import failing_closed
from exoarmur.actors.intents.states import IntentState
from exoarmur.actors.nats import Get, KvEntry
from exoarmur.runtime import Actor, ActorRef, ExoarmurError, ReasonCode, SharedCalls, handles
from exoarmur.runtime.margins import (
    GATE_READ_SHARE,
    SWITCHES_SHARED,
    SWITCHES_UNKNOWN_GRACE,
    UNKNOWN_RETRY_FIRST,
    UNKNOWN_RETRY_MAX,
)

__all__ = ["Gates"]

S = IntentState
CLEAR_READINGS = 4_096  # tenants whose last clear reading is kept
Reading = tuple[float, tuple[Switch, Switch]]  # (runtime time its reads were sent, global and tenant switch)


class Gates(Actor):
    """One per process: every intent of the process asks it."""

    mailbox_capacity = 10_000
    concurrency = 1024

    def __init__(
        self,
        *,
        controls: str,
        approvals: str,
        types: Mapping[str, TypeInfo],
        unknown_grace: float = SWITCHES_UNKNOWN_GRACE,
    ) -> None:
        self.controls_path = controls  # the KvBucket of `exoarmur_controls`
        self.approvals_path = approvals  # the KvBucket of `exoarmur_approvals`
        self.types = types
        self.unknown_grace = unknown_grace
        self.clear: dict[str, Reading] = {}  # per tenant, the last reading that found its switches clear
        self.changes = 0  # switch changes seen: a read sent before one is not shared after it
        self.reads: SharedCalls[tuple[str, int], Reading] = SharedCalls()

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.controls: ActorRef = lookup(self.controls_path)
        self.approvals: ActorRef = lookup(self.approvals_path)

    @handles(GateCheck, concurrent=True)
    async def check(self, m: GateCheck) -> Verdict:
        context, record = self.context, m.intent
        read = await self._switches(record.tenant)
        if isinstance(read, Verdict):
            return read
        checked, switches = read
        deadline = self._read_deadline(context.now())
        for switch in switches:
            if switch.active:
                return Verdict(checked, S.KILLED, ReasonCode.KILL_SWITCH_ACTIVE.value, switch.says())
        info = self.types.get(record.type)
        if m.stage is not Stage.ENTER or info is None:
            return Verdict(checked)
        passed = Verdict(checked)
        asks, problem = info.asks_approval(record)
        if problem:  # the type's bug: reported, and the intent waits for a person
            context.report_failure(ReasonCode.EXECUTION_FAILED, problem)
        if asks:
            passed = await self._approval(record, info, checked, deadline)
            if not passed.passed:
                return passed
        return self._breaker(record, info, checked) or passed

    @handles(SwitchesCheck, concurrent=True)
    async def switches_check(self, m: SwitchesCheck) -> str:
        checked = self.context.now()
        for switch in await read_switches(self.controls, m.tenant, deadline=self._read_deadline(checked)):
            if switch.active:
                return switch.says()
        return ""

    async def _switches(self, tenant: str) -> Reading | Verdict:
        """(when the reads that answered were sent, the switches): a clear
        reading sent within SWITCHES_SHARED, the read in flight, or a new
        read; or, once they could not be read for `unknown_grace` from this
        check's start (a store failing over is waited out, one that stays
        away is not), the refusal. A read is shared, the grace is not: a
        check that joins a failing read tries again on its own time."""
        context = self.context
        clear = self.clear.get(tenant)
        if clear is not None and context.now() - clear[0] <= SWITCHES_SHARED:
            return clear
        give_up, pause = context.now() + self.unknown_grace, UNKNOWN_RETRY_FIRST
        while True:
            changes = self.changes
            code, detail = ReasonCode.TIMEOUT_KV_GET, "no answer from NATS within the grace"
            with anyio.move_on_after(max(give_up - context.now(), 0.0)):  # a shared read may be given more time
                try:
                    return await self.reads.call((tenant, changes), lambda: self._read_switches(tenant, changes, give_up))
                except ExoarmurError as exc:
                    code, detail = exc.code, exc.detail
            if context.now() + pause >= give_up:
                refusal = failing_closed(code.value, detail)
                return Verdict(context.now(), S.KILLED, ReasonCode.KILL_SWITCH_ACTIVE.value, refusal)
            await anyio.sleep(pause)
            pause = min(pause * 2, UNKNOWN_RETRY_MAX)

    @handles(SwitchesChanged)
    def switches_changed(self, m: SwitchesChanged) -> None:
        if m.tenant is None:
            self.clear.clear()
        else:
            self.clear.pop(m.tenant, None)
        self.changes += 1

    async def _read_switches(self, tenant: str, changes: int, give_up: float) -> Reading:
        """One read of the tenant's switches, kept if they are clear and no
        switch changed meanwhile; no later than `give_up` (the grace of the
        check that sent it)."""
        checked = self.context.now()  # before the reads are sent: what freshness counts from
        deadline = min(give_up, self._read_deadline(checked) or give_up)
        reading = checked, await read_switches(self.controls, tenant, deadline=deadline)
        if changes == self.changes and not any(switch.active for switch in reading[1]):
            if len(self.clear) >= CLEAR_READINGS:  # tenants by the thousand: start again
                self.clear.clear()
            self.clear[tenant] = reading
        return reading

    def _read_deadline(self, now: float) -> float | None:
        """A share of the time left, so a read that hangs comes back as a failure."""
        deadline = self.context.deadline
        return None if deadline is None else now + (deadline - now) * GATE_READ_SHARE

    def _breaker(self, record: IntentRecord, info: TypeInfo, checked: float) -> Verdict | None:
        """None while the type's actor takes work; else wait or fail."""
        actor = self.context.system.find(info.path)
        if actor is None or actor.refusing() is not ReasonCode.BREAKER_OPEN:
            return None
        code, detail = ReasonCode.BREAKER_OPEN.value, f"execution type {info.name}'s breaker is open"
        if info.breaker_pause and time.time() + info.breaker_pause < record.deadline:
            return Verdict(checked, code=code, detail=detail, retry_after=info.breaker_pause)
        return Verdict(checked, S.FAILED, code, detail)

    async def _approval(self, record: IntentRecord, info: TypeInfo, checked: float, deadline: float | None) -> Verdict:
        try:
            entry: KvEntry | None = await self.approvals.ask(Get(intent_key(record.tenant, record.id)), deadline=deadline)
            approval = None if entry is None else Approval.from_entry(entry)
            unread = ""
        except ExoarmurError as exc:  # waited for, never taken as given
            approval, unread = None, f" (the approval could not be read: {exc.code.value})"
        if approval is not None and approval.decision is Decision.APPROVED:
            return Verdict(checked, detail=approval.says())
        if approval is not None:
            return Verdict(checked, S.DENIED, ReasonCode.APPROVAL_DENIED.value, approval.says())
        until = info.approval_deadline(record)
        if time.time() >= until:
            return Verdict(checked, S.EXPIRED, ReasonCode.APPROVAL_EXPIRED.value, f"not approved by {_when(until)}")
        detail = f"waits for an approval until {_when(until)}{unread}"
        return Verdict(checked, S.AWAITING_APPROVAL, ReasonCode.APPROVAL_REQUIRED.value, detail)


def _when(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="seconds")
