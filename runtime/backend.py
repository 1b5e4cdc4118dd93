"""The few primitives whose cost decides the ask and tell targets, per backend.

Everything else in the kernel uses anyio. Here, and only here, asyncio and trio
are used directly: a reply slot is a future with a deadline timer on asyncio and
a parked task inside a cancel scope on trio, each about as cheap as the raw
primitive it wraps.

A reply slot is resolved at most once (`resolve` returns False after the first
call): the winner of that race is the one place that decides the outcome and
emits its audit event.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

import outcome
import sniffio

Expire = Callable[["Reply"], BaseException]


class Reply:
    """Where an asker waits for its answer.

    `started` is set when a handler takes the envelope: it decides the code of a
    deadline that passes afterwards (the category code) versus before
    (DEADLINE_EXCEEDED), whichever side notices first.
    """

    __slots__ = ("started", "done", "outcome")

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.outcome: outcome.Outcome | None = None

    # Each backend defines:
    #   resolve(result: outcome.Outcome) -> bool   (False if already resolved)
    #   async wait(deadline, expire) -> value      (raises the coded error)


@types.coroutine
def _asyncio_yield():
    yield  # a bare yield hands control back to asyncio's loop for one pass


class AsyncioReply(Reply):
    __slots__ = ("_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._future = loop.create_future()

    def resolve(self, result: outcome.Outcome) -> bool:
        if self.done:
            return False
        self.done = True
        self.outcome = result
        if not self._future.done():
            self._future.set_result(None)
        return True

    def _on_deadline(self, expire: Expire) -> None:
        if not self.done:
            self.resolve(outcome.Error(expire(self)))

    async def wait(self, deadline: float, expire: Expire) -> Any:
        if not self.done:
            timer = self._loop.call_at(deadline, self._on_deadline, expire)
            try:
                await self._future
            except BaseException:
                self.done = True  # the asker is gone: a reply now is late
                raise
            finally:
                timer.cancel()
        return self.outcome.unwrap()  # type: ignore[union-attr]


class TrioReply(Reply):
    __slots__ = ("_task",)

    def __init__(self) -> None:
        super().__init__()
        self._task = None

    def resolve(self, result: outcome.Outcome) -> bool:
        if self.done:
            return False
        self.done = True
        self.outcome = result
        task, self._task = self._task, None
        if task is not None:
            _trio.lowlevel.reschedule(task)
        return True

    def _abort(self, _raise_cancel: object) -> object:
        self._task = None
        return _trio.lowlevel.Abort.SUCCEEDED

    async def wait(self, deadline: float, expire: Expire) -> Any:
        if not self.done:
            self._task = _trio.lowlevel.current_task()
            try:
                with _trio.CancelScope(deadline=deadline) as scope:
                    await _trio.lowlevel.wait_task_rescheduled(self._abort)
            except BaseException:
                self.done = True
                raise
            if scope.cancelled_caught and not self.done:
                self.done = True
                self.outcome = outcome.Error(expire(self))
        return self.outcome.unwrap()  # type: ignore[union-attr]


try:
    import trio as _trio
except ImportError:  # pragma: no cover - trio is a dependency
    _trio = None  # type: ignore[assignment]


class Backend:
    """What the kernel needs from the running event loop, resolved once."""

    __slots__ = ("name", "now", "checkpoint", "new_reply")

    def __init__(
        self,
        *,
        name: str,
        now: Callable[[], float],
        checkpoint: Callable[[], Any],
        new_reply: Callable[[], Reply],
    ) -> None:
        self.name = name
        self.now = now
        self.checkpoint = checkpoint
        self.new_reply = new_reply


def current_backend() -> Backend:
    """The backend of the running event loop.

    The runtime clock is the loop's own clock (what anyio.current_time() reads),
    because deadlines are handed to the loop's timers and cancel scopes. It is
    injected where the loop is made: trio.run(clock=MockClock(...)) in tests."""
    name = sniffio.current_async_library()
    if name == "asyncio":
        loop = asyncio.get_running_loop()
        return Backend(
            name=name,
            now=loop.time,
            checkpoint=_asyncio_yield,
            new_reply=lambda: AsyncioReply(loop),
        )
    if name == "trio":
        return Backend(
            name=name,
            now=_trio.current_time,
            checkpoint=_trio.lowlevel.checkpoint,
            new_reply=TrioReply,
        )
    raise RuntimeError(f"unsupported async library {name!r}")
