"""Where drains run: a task group, with trio's own spawn where that is safe.

An actor that goes idle and then gets mail costs one spawn, so a spawn is on
the message path. anyio's `TaskGroup.start_soon` builds a TaskHandle, an Event
and a CancelScope for every task (anyio >= 4.14): 25 to 35 µs here.

- On trio the host is a trio nursery and spawns with its own `start_soon`
  (5 to 8 µs). anyio's cancel scopes on trio are trio's, so shields, deadlines
  and repeated cancellation behave as in anyio's task group.
- On asyncio the host stays anyio's task group. A task spawned natively would
  sit outside anyio's scope tree: cancelling the host would cut through a
  shielded cleanup inside it, and a cancellation the task swallowed would not
  be delivered again.

Either way a `Host` keeps a task group's contract: a task that raises cancels
the others and its error propagates out of `run_host`; `close()` cancels every
task and returns once all have ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import sniffio

__all__ = ["Host", "run_host"]


class Host:
    """`start_soon(fn, *args, name=...)` runs `fn(*args)` as a task of this host."""

    __slots__ = ("start_soon", "_scope", "_closed")

    def __init__(self, start_soon: Callable[..., Any], scope: Any, closed: anyio.Event) -> None:
        self.start_soon = start_soon
        self._scope = scope
        self._closed = closed

    async def close(self) -> None:
        self._scope.cancel()
        await self._closed.wait()


async def run_host(*, task_status: anyio.abc.TaskStatus[Host]) -> None:
    """Open a host, hand it to the starter, and keep it until it is cancelled."""
    closed = anyio.Event()
    if sniffio.current_async_library() == "trio":
        import trio

        opened = trio.open_nursery()
    else:
        opened = anyio.create_task_group()
    try:
        async with opened as group:  # both have start_soon and cancel_scope
            task_status.started(Host(group.start_soon, group.cancel_scope, closed))
            await anyio.sleep_forever()
    finally:
        closed.set()  # only once every task of the host has ended
