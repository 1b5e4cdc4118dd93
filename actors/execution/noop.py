"""The `noop` execution type: applies nothing, and every apply took effect."""

from __future__ import annotations

from exoarmur.actors.execution.api import ExecutionType
from exoarmur.actors.intents.effects import Reconciled
from exoarmur.actors.intents.record import IntentRecord

__all__ = ["Noop"]


class Noop(ExecutionType):
    """Does nothing, at once: for trying the intent path and measuring its cost."""

    name = "noop"

    async def apply(self, intent: IntentRecord, key: str) -> None:
        return None

    async def reconcile(self, intent: IntentRecord, key: str) -> Reconciled:
        return Reconciled.APPLIED
