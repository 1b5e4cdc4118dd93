"""Execution intents: the record and its states, intent actors, ownership leases, replay.

How an intent survives kill -9: actors/intents/intent.py.
"""

from exoarmur.actors.intents.effects import Apply, Effect, Outcome, Reconcile, Reconciled, Revert, TypeInfo
from exoarmur.actors.intents.faults import FaultPoints
from exoarmur.actors.intents.intent import IntentActor, IntentSetting
from exoarmur.actors.intents.leases import Lapsed, LeaseRemaining, OwnerLease
from exoarmur.actors.intents.messages import Activate
from exoarmur.actors.intents.record import IntentRecord, intent_key
from exoarmur.actors.intents.resume import Resumer
from exoarmur.actors.intents.states import IN_EFFECT, TERMINAL, TRANSITIONS, IntentState
from exoarmur.actors.intents.store import IntentStore

__all__ = [
    "IN_EFFECT",
    "TERMINAL",
    "TRANSITIONS",
    "Activate",
    "Apply",
    "Effect",
    "FaultPoints",
    "IntentActor",
    "IntentRecord",
    "IntentSetting",
    "IntentState",
    "IntentStore",
    "Lapsed",
    "LeaseRemaining",
    "Outcome",
    "OwnerLease",
    "Reconcile",
    "Reconciled",
    "Resumer",
    "Revert",
    "TypeInfo",
    "intent_key",
]
