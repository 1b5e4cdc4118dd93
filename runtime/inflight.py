"""Concurrent handlers in flight: what lets one actor keep many I/O calls open.

A handler marked `@handles(M, concurrent=True)` (an `async def`) does not hold
the mailbox while it awaits: the drain starts it in a task of its own, in the
actor's host, and takes the next envelope. This is Akka's `pipeTo` and
`mapAsync(parallelism)` in one declaration; a NATS connection needs it to keep
64 requests open at once.

Invariants:
- At most `Actor.concurrency` run at once. When that many are in flight the
  drain takes nothing more until one ends, so the mailbox fills and its policy
  pushes back on senders (never an unbounded pile of tasks).
- Each runs in its own cancel scope at its envelope's deadline, or the stop
  deadline if that is earlier (`tighten`).
- They belong to one actor instance: a crash (of any handler) or a suspend
  cancels them all, and their askers learn `ACTOR_CRASHED`.
- Worker tasks are reused: one that finished lingers a scheduler pass or two
  and takes the next job from `jobs`, so a steady stream of requests does not
  pay a task spawn each (anyio's spawn is the dearest step on this path).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

__all__ = ["InFlight"]


class InFlight:
    """The cancel scopes of one cell's concurrent handlers now running."""

    __slots__ = ("limit", "_scopes", "_changed", "jobs", "idle")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._scopes: set[anyio.CancelScope] = set()
        self._changed: anyio.Event | None = None  # set when one ends
        # Started but not yet picked up by a lingering worker, and how many linger.
        self.jobs: deque[tuple[Any, ...]] = deque()
        self.idle = 0

    def __len__(self) -> int:
        return len(self._scopes)

    @property
    def full(self) -> bool:
        return len(self._scopes) >= self.limit

    def add(self, scope: anyio.CancelScope) -> None:
        self._scopes.add(scope)

    def discard(self, scope: anyio.CancelScope) -> None:
        self._scopes.discard(scope)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for_room(self) -> None:
        while self.full:
            await self._wait_change()

    async def wait_empty(self) -> None:
        while self._scopes:
            await self._wait_change()

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def tighten(self, deadline: float) -> None:
        """No handler in flight runs past `deadline` (a stop or a suspend)."""
        for scope in self._scopes:
            if deadline < scope.deadline:
                scope.deadline = deadline

    def cancel_all(self) -> None:
        for scope in self._scopes:
            scope.cancel()
