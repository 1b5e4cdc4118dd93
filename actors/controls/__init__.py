"""The gates in front of every effect: kill switches and approvals (and,
in their order, the gates still to come).

    switches     the kill switches' KV keys and values, read from the leader
    gates        Gates: answers an intent's GateCheck, the gates in order
    killswitch   KillSwitches: set, clear, status over NATS, audited
    watch        ControlWatch: wakes the intents a changed decision concerns

Approvals are stored by the intent service (actors/intents/approving.py)
and read here, at their place in the gates' order.
"""

from exoarmur.actors.controls.gates import Gates
from exoarmur.actors.controls.killswitch import CHAIN, SUBJECT, KillSwitches
from exoarmur.actors.controls.switches import Switch, read_switches, switch_key
from exoarmur.actors.controls.watch import ControlWatch

__all__ = ["CHAIN", "SUBJECT", "ControlWatch", "Gates", "KillSwitches", "Switch", "read_switches", "switch_key"]
