"""Calling asyncio code (nats-py) from an actor on any backend.

On asyncio the call is a plain await. On trio it goes through a trio-asyncio
loop that the calling actor keeps open for as long as its instance lives
(`open_bridge`, run with `context.start_task`), and the loop is passed
explicitly, so no context variable has to reach the task that calls.
Cancellation crosses the bridge both ways: a trio cancel scope cancels the
asyncio task it is waiting on. A CancelledError that no scope of the caller
asked for (asyncio code cancelling a future of its own under the caller, as
nats-py does when it closes a transport) comes out as `StrayCancellation`, an
error: raised as a cancellation it would cancel the caller's whole task group.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import sniffio

from exoarmur.runtime import ActorContext

__all__ = ["Bridge", "StrayCancellation", "open_bridge"]

T = TypeVar("T")


class StrayCancellation(ConnectionError):
    """The asyncio side raised CancelledError without being asked to. In
    nats-py that means a connection went away under the call."""


class Bridge:
    """Runs asyncio coroutine functions; `loop` is the trio-asyncio loop on trio."""

    __slots__ = ("loop",)

    def __init__(self, loop: Any = None) -> None:
        self.loop = loop

    async def call(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        try:
            if self.loop is None:
                return await fn(*args, **kwargs)
            import trio_asyncio

            return await trio_asyncio.aio_as_trio(fn, loop=self.loop)(*args, **kwargs)
        except asyncio.CancelledError:
            # On trio the caller's own cancellation arrives as trio.Cancelled.
            if self.loop is None and _cancel_requested():
                raise
            raise StrayCancellation(f"{getattr(fn, '__qualname__', fn)} raised CancelledError unasked") from None

    def soon(self, fn: Callable[..., object], /, *args: Any) -> None:
        """Run the plain function `fn(*args)` on the asyncio side without
        waiting for it: now on asyncio, on trio at the trio-asyncio loop's
        next pass (`call_soon`, callable from trio). To start nats-py work
        from a plain-`def` handler; its end comes back through a callback
        (which calls `actor_side`)."""
        if self.loop is None:
            fn(*args)
        else:
            self.loop.call_soon(fn, *args)

    def actor_side(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Call runtime code (a tell, a failure report) from an asyncio callback.
        On trio, sniffio says "asyncio" inside trio-asyncio's callbacks, and a
        task spawned from there would get anyio's asyncio backend: the call
        runs with sniffio saying "trio" again."""
        if self.loop is None:
            return fn(*args)
        # trio-asyncio names the library in sniffio's thread-local while a
        # callback runs; anyio reads it when a task is spawned.
        previous, sniffio.thread_local.name = sniffio.thread_local.name, "trio"
        try:
            return fn(*args)
        finally:
            sniffio.thread_local.name = previous


def _cancel_requested() -> bool:
    """anyio cancelled the task (`cancelling()`: it calls `task.cancel()`) for
    a scope still in effect for the caller (-inf: anyio's word for it). Either
    alone misleads: `cancelling()` stays up in a shielded cleanup after a
    cancel, and a scope cancelled in the same pass as a stray cancel has not
    cancelled the task (anyio cancels it at its next await)."""
    task = asyncio.current_task()
    if task is None or not task.cancelling():
        return False
    return anyio.current_effective_deadline() == -math.inf


# asyncio's own loop rebuilds its heap without the cancelled timers past
# this many (base_events' _MIN_SCHEDULED_TIMER_HANDLES) when over half are.
MIN_TIMERS = 100


def drop_cancelled_timers(loop: Any) -> None:
    """Have a trio-asyncio loop drop cancelled timers as asyncio's loop does.
    Its own `_timer_handle_cancelled` does nothing, so a cancelled timer
    stays in its heap until it would have fired, and a cancelled handle
    still holds the contextvars Context it was made in: the actor's
    envelope and message. A nats-py request's timeout timer would keep its
    record for JS_BACKSTOP seconds (tens of KB per intent at load)."""
    cancelled = 0

    def timer_handle_cancelled(handle: Any) -> None:
        nonlocal cancelled
        cancelled += 1
        if cancelled > MIN_TIMERS and cancelled * 2 > len(loop._timers):
            live = [h for h in loop._timers if not h._cancelled]  # a new list: closing may iterate the old one
            heapq.heapify(live)
            loop._timers = live
            cancelled = 0

    loop._timer_handle_cancelled = timer_handle_cancelled


async def open_bridge(context: ActorContext) -> Bridge:
    """The bridge for this actor instance: on trio a trio-asyncio loop held open
    by a task of the instance (closed when the instance ends)."""
    if sniffio.current_async_library() != "trio":
        return Bridge()
    import trio_asyncio

    ready: list[Bridge] = []
    opened = anyio.Event()

    async def hold_loop() -> None:
        async with trio_asyncio.open_loop() as loop:
            drop_cancelled_timers(loop)
            ready.append(Bridge(loop))
            opened.set()
            await anyio.sleep_forever()

    context.start_task(hold_loop)
    await opened.wait()
    return ready[0]
