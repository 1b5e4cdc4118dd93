"""Execution types for the CLI tests, configured by dotted path
(`[execution_types.approved] class = "tests.integration.cli_types:Approved"`)."""

from __future__ import annotations

import anyio

from exoarmur.actors.execution import Ledger, Noop, Reconciled
from exoarmur.actors.intents import IntentRecord


class Approved(Noop):
    name = "approved"
    approval = True


class Unhurried(Ledger):
    """A ledger whose apply takes `delay` seconds, and which notes each call:
    `<path>.calls` gets "apply <key>" when an apply starts and "reconcile
    <key>" for each reconcile (tests of the stop's drain)."""

    name = "unhurried"
    timeout = 10.0

    def __init__(self, *, path: str, delay: float = 1.0) -> None:
        super().__init__(path=path)
        self.delay = delay

    def note(self, what: str) -> None:
        with open(f"{self.path}.calls", "a") as calls:
            calls.write(what + "\n")

    async def apply(self, intent: IntentRecord, key: str) -> None:
        self.note(f"apply {key}")
        await anyio.sleep(self.delay)
        await super().apply(intent, key)

    async def reconcile(self, intent: IntentRecord, key: str) -> Reconciled:
        self.note(f"reconcile {key}")
        return await super().reconcile(intent, key)
