"""Fault points: where a chaos test kills the process, named.

Off unless the environment variable EXOARMUR_FAULTS names them, comma
separated, each optionally `NAME@N` (the Nth time the point is reached,
counting from 1; without it, the first):

    EXOARMUR_FAULTS=after_executing_written,after_apply@3 exoarmur run

At an armed point the process sends itself SIGKILL: no cleanup, no flush,
exactly what a power cut or the OOM killer leaves. The points:

    after_executing_written   EXECUTING is durable, apply not called
    after_apply               apply returned, SUCCEEDED not written
    after_succeeded_written   SUCCEEDED is durable, its audit record not appended
    mid_revert                REVERTING is durable, revert not called
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["ENVIRONMENT", "POINTS", "FaultPoints"]

ENVIRONMENT = "EXOARMUR_FAULTS"
POINTS = frozenset({"after_executing_written", "after_apply", "after_succeeded_written", "mid_revert"})


class FaultPoints:
    def __init__(self, armed: Mapping[str, int] | None = None) -> None:
        self.armed = dict(armed or {})
        self.hits: dict[str, int] = dict.fromkeys(self.armed, 0)

    @classmethod
    def parse(cls, text: str) -> FaultPoints:
        """From the variable's value; CONFIG_INVALID for an unknown point or a bad count."""
        armed: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, count = item.partition("@")
            if name not in POINTS:
                raise InvalidInput(
                    ReasonCode.CONFIG_INVALID, f"{ENVIRONMENT}: unknown point {name!r} (known: {', '.join(sorted(POINTS))})"
                )
            if count and not (count.isdigit() and int(count) >= 1):
                raise InvalidInput(ReasonCode.CONFIG_INVALID, f"{ENVIRONMENT}: {item!r}: the count must be an integer >= 1")
            armed[name] = int(count) if count else 1
        return cls(armed)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> FaultPoints:
        return cls.parse(environ.get(ENVIRONMENT, ""))

    def reached(self, name: str) -> None:
        """Count a pass through `name`; SIGKILL this process on the armed pass."""
        assert name in POINTS, name
        if name not in self.armed:
            return
        self.hits[name] += 1
        if self.hits[name] == self.armed[name]:
            os.kill(os.getpid(), signal.SIGKILL)
