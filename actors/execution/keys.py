"""One call per intent key at a time, within a process.

A reconcile must never overtake an apply (or revert) of the same key that is
still running: an apply whose asker gave up (its deadline passed, its actor
restarted) may still be writing, shielded, and a reconcile that reads the
effector meanwhile would answer NOT_APPLIED and let a second apply follow.
So every call for a key waits for the one before it to end, up to its own
deadline; past it, the caller gets a coded timeout and asks again later.

The table outlives the execution type's actor (its supervisor hands the
same one to every instance), so a call left running by an instance that
crashed still holds its key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

__all__ = ["KeyCalls"]


class KeyCalls:
    def __init__(self) -> None:
        self._running: dict[str, anyio.Event] = {}

    @asynccontextmanager
    async def alone(self, key: str) -> AsyncIterator[None]:
        """Hold `key` for the block, once every earlier call for it has
        ended; the wait is bounded by the caller's cancel scope."""
        while (running := self._running.get(key)) is not None:
            await running.wait()
        done = self._running[key] = anyio.Event()
        try:
            yield
        finally:
            del self._running[key]
            done.set()
