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
"""

from __future__ import annotations

import enum

import attrs

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.states import IntentState
from exoarmur.runtime import TimeoutCategory, message

__all__ = ["GateCheck", "Stage", "SwitchesCheck", "Verdict"]


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


@message("exoarmur.intent.switches_check", timeout=TimeoutCategory.KV_GET)
class SwitchesCheck:
    """To the gates: a kill switch covering `tenant` active now, as a kill's
    detail names it ("" if none), read once from the leader; a read that
    fails raises its code. For the code of a submission its tenant's limits
    refuse (the kill switches come first in the gates' order): it never lets
    anything through."""

    tenant: str
