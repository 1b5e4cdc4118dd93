"""A ledger whose every apply first notes when it started (CLOCK_MONOTONIC,
which every process of the machine shares), for the kill-switch sweep: no
apply may start after a set was answered. Configured by dotted path:

    [execution_types.stamped]
    class = "exoarmur.benchmarks.stamped:Stamped"
    path = "stamped.jsonl"           # its ledger; the starts go to <path>.starts
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from exoarmur.actors.execution import Ledger
from exoarmur.actors.intents import IntentRecord


class Stamped(Ledger):
    name = "stamped"

    async def apply(self, intent: IntentRecord, key: str) -> None:
        line = orjson.dumps({"key": key, "started": time.monotonic()}) + b"\n"
        fd = os.open(starts_of(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        await super().apply(intent, key)


def starts_of(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".starts")


def starts(ledger: Path) -> dict[str, float]:
    """When each key's apply started (the latest, if several)."""
    path = starts_of(ledger)
    if not path.exists():
        return {}
    return {entry["key"]: entry["started"] for entry in map(orjson.loads, path.read_bytes().splitlines())}
