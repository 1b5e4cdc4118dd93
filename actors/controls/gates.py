"""The gates an intent passes before it executes, in one fixed order.

    1. the global kill switch         KILLED, KILL_SWITCH_ACTIVE
    2. the tenant's kill switch       KILLED, KILL_SWITCH_ACTIVE

Each `GateCheck` from an intent actor (actors/intents/gates.py) is answered
with the first refusal in that order, or a pass. The kill switches are read
from the stream leader for every check (actors/controls/switches.py); a read
that fails refuses, as an active switch would: the gates fail closed.

A refusal is not audited here: the intent writes the state it ends in, with
the code and the detail, and that transition is its audit record.
"""

from __future__ import annotations

from exoarmur.actors.controls.switches import read_switches
from exoarmur.actors.intents.gates import GateCheck, Verdict
from exoarmur.actors.intents.states import IntentState
from exoarmur.runtime import Actor, ActorRef, ExoarmurError, ReasonCode, handles
from exoarmur.runtime.margins import GATE_READ_SHARE

__all__ = ["Gates"]

KILLED = IntentState.KILLED


class Gates(Actor):
    """One per process: every intent of the process asks it."""

    mailbox_capacity = 10_000
    concurrency = 1024

    def __init__(self, *, controls: str) -> None:
        self.controls_path = controls  # the KvBucket of `exoarmur_controls`

    async def started(self) -> None:
        self.controls: ActorRef = self.context.system.lookup(self.controls_path)

    @handles(GateCheck, concurrent=True)
    async def check(self, m: GateCheck) -> Verdict:
        context = self.context
        checked = context.now()  # before the reads are sent: what freshness counts from
        # The reads get a share of the time, so one that hangs is answered as a refusal.
        deadline = None if context.deadline is None else checked + (context.deadline - checked) * GATE_READ_SHARE
        try:
            switches = await read_switches(self.controls, m.intent.tenant, deadline=deadline)
        except ExoarmurError as exc:
            detail = f"the kill switches could not be read ({exc.code.value}: {exc.detail}): failing closed"
            return Verdict(checked, KILLED, ReasonCode.KILL_SWITCH_ACTIVE.value, detail)
        for switch in switches:
            if switch.active:
                return Verdict(checked, KILLED, ReasonCode.KILL_SWITCH_ACTIVE.value, switch.says())
        return Verdict(checked)
