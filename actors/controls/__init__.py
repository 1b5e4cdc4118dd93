"""The gates in front of every effect: kill switches (and, in their order,
the gates that follow them).

    switches     the kill switches' KV keys and values, read from the leader
    gates        Gates: answers an intent's GateCheck, the gates in order
    killswitch   KillSwitches: set, clear, status over NATS, audited
"""

from exoarmur.actors.controls.gates import Gates
from exoarmur.actors.controls.killswitch import CHAIN, SUBJECT, KillSwitches
from exoarmur.actors.controls.switches import Switch, read_switches, switch_key

__all__ = ["CHAIN", "SUBJECT", "Gates", "KillSwitches", "Switch", "read_switches", "switch_key"]
