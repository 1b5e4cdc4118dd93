"""Where drains run: a task group that spawns with the backend's own call.

An actor that goes idle and then gets mail costs one spawn, so a spawn is on
the message path. anyio's `TaskGroup.start_soon` builds a TaskHandle, an Event
and a CancelScope for every task (anyio >= 4.14): 25 to 35 µs here, against
5 to 8 µs for a trio nursery's `start_soon` or an `asyncio.TaskGroup`'s
`create_task`. A `Host` wraps the native group and keeps a task group's
contract: a task that raises cancels the others and its error propagates out
of `run_host`; `close()` cancels every task and returns once all have ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import sniffio

__all__ = ["Host", "run_host"]


class Host:
    """`start_soon(fn, *args, name=...)` runs `fn(*args)` as a task of this host."""

    __slots__ = ("start_soon", "_scope", "_closed")

    def __init__(self, start_soon: Callable[..., Any], scope: anyio.CancelScope, closed: anyio.Event) -> None:
        self.start_soon = start_soon
        self._scope = scope
        self._closed = closed

    def cancel(self) -> None:
        self._scope.cancel()

    async def close(self) -> None:
        self._scope.cancel()
        await self._closed.wait()


async def run_host(*, task_status: anyio.abc.TaskStatus[Host]) -> None:
    """Open a host, hand it to the starter, and keep it until it is cancelled."""
    closed = anyio.Event()
    try:
        with anyio.CancelScope() as scope:
            if sniffio.current_async_library() == "trio":
                import trio

                async with trio.open_nursery() as nursery:
                    task_status.started(Host(nursery.start_soon, scope, closed))
                    await anyio.sleep_forever()
            else:
                async with asyncio.TaskGroup() as group:
                    create_task = group.create_task

                    def start_soon(fn: Callable[..., Any], *args: Any, name: object = None) -> None:
                        coro = fn(*args)
                        try:
                            create_task(coro, name=None if name is None else str(name))
                        except RuntimeError:  # the group has ended
                            coro.close()
                            raise

                    task_status.started(Host(start_soon, scope, closed))
                    await anyio.sleep_forever()
    finally:
        closed.set()  # only once every task of the host has ended
