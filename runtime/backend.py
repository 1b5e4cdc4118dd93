"""The few primitives whose cost decides the ask and tell targets, per backend.

Everything else in the kernel uses anyio. Here, and only here, asyncio and trio
are used directly: a reply slot is a future on asyncio and a parked task on
trio, its deadline in one shared heap per loop (`DeadlineHeap`: one wake-up for
the earliest), each about as cheap as the raw primitive it wraps. A callback reply
(`ActorRef.ask_then`) wakes no task: resolving it calls a function.

A reply slot is resolved at most once (`resolve` returns False after the first
call): the winner of that race is the one place that decides the outcome and
emits its audit event.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import outcome
import sniffio

from exoarmur.runtime.margins import PARK

Expire = Callable[["Reply"], BaseException]


class Reply:
    """Where an asker waits for its answer.

    `started` is set when a handler takes the envelope: it decides the code of a
    deadline that passes afterwards (the category code) versus before
    (DEADLINE_EXCEEDED), whichever side notices first. Its deadline goes into
    the loop's shared heap (`arm`, once); resolving it early leaves a stale
    entry there, counted (`resolved_early`), which holds only the reply: a
    resolved reply drops what it held for its expiry and its answer (until
    the heap drops the entry, nothing more is kept alive by it).
    """

    __slots__ = ("started", "done", "outcome", "_timers", "_armed", "_expire")

    def __init__(self, timers: DeadlineHeap) -> None:
        self.started = False
        self.done = False
        self.outcome: outcome.Outcome | None = None
        self._timers = timers
        self._armed = False
        self._expire: Expire | None = None

    def reserve(self) -> int:
        """This reply's place among the timers, taken before an eager handler
        runs (`arm(..., place)` after it, if it did not answer): the asks it
        makes at the same deadline expire after this one, as if it had queued."""
        return self._timers.reserve()

    def arm(self, deadline: float, expire: Expire, place: int = 0) -> None:
        """Put the deadline in the heap (once)."""
        if not (self.done or self._armed):
            self._armed = True
            self._expire = expire
            self._timers.add(deadline, self, place)

    # Each kind defines:
    #   resolve(result: outcome.Outcome) -> bool   (False if already resolved)
    # and an asker's, on each backend:
    #   async wait(deadline, expire) -> value      (raises the coded error)
    # resolve's first lines (done, outcome, the stale heap entry) are the same
    # in each kind, written out: every ask resolves one or more replies.


class CallbackReply(Reply):
    """A reply slot that calls `callback(outcome)` instead of waking a task
    (`ActorRef.ask_then`), on either backend."""

    __slots__ = ("_callback",)

    def __init__(self, timers: DeadlineHeap, callback: Callable[[outcome.Outcome], None]) -> None:
        super().__init__(timers)
        self._callback = callback

    def resolve(self, result: outcome.Outcome) -> bool:
        if self.done:
            return False
        self.done = True
        self.outcome = result
        if self._armed:
            self._expire = None
            self._timers.resolved_early()
        callback, self._callback = self._callback, None
        callback(result)
        return True


@types.coroutine
def _asyncio_yield():
    yield  # a bare yield hands control back to asyncio's loop for one pass


class AsyncioReply(Reply):
    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop, timers: AsyncioTimers) -> None:
        self.started = self.done = self._armed = False  # Reply's fields, set here: one per ask
        self.outcome = self._expire = None
        self._timers = timers
        self._future = loop.create_future()

    def resolve(self, result: outcome.Outcome) -> bool:
        if self.done:
            return False
        self.done = True
        self.outcome = result
        if self._armed:
            self._expire = None
            self._timers.resolved_early()
        if not self._future.done():
            self._future.set_result(None)
        return True

    async def wait(self, deadline: float, expire: Expire) -> Any:
        if not self.done:
            self.arm(deadline, expire)
            try:
                await self._future
            except BaseException:
                self.done = True  # the asker is gone: a reply now is late
                raise
        result, self.outcome = self.outcome, None  # read once (unwrap); a stale heap entry keeps nothing
        return result.unwrap()  # type: ignore[union-attr]


class AsyncioPark:
    """Where idle drains wait on one asyncio loop for `cell.schedule()` to
    wake them (True) instead of a new drain being spawned: an anyio spawn
    costs 25-35 µs here, a wake a few. One timer for all of them: every
    PARK a sweep ends (False) the drains parked since before the
    previous sweep, so a drain stays parked PARK to twice that, and a
    park costs no timer of its own. Whoever resolves a drain's future clears
    `cell.parked` first, so it is resolved once."""

    __slots__ = ("_loop", "_older", "_newer", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._older: dict[Any, asyncio.Future] = {}  # parked before the last sweep
        self._newer: dict[Any, asyncio.Future] = {}  # parked since
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, cell: Any) -> bool:
        parked = self._loop.create_future()
        cell.parked = self._newer[cell] = parked
        if self._timer is None:
            self._timer = self._loop.call_later(PARK, self._sweep)
        try:
            return await parked
        finally:
            if cell.parked is parked:
                cell.parked = None  # cancelled while parked

    def _sweep(self) -> None:
        older, self._older, self._newer = self._older, self._newer, {}
        self._timer = self._loop.call_later(PARK, self._sweep) if self._older else None
        for cell, parked in older.items():
            # Still parked since before the last sweep (a task being cancelled
            # has its future done already: its own `finally` clears it).
            if cell.parked is parked and not parked.done():
                cell.parked = None
                parked.set_result(False)


class TrioReply(Reply):
    __slots__ = ("_task",)

    def __init__(self, timers: TrioTimers) -> None:
        super().__init__(timers)
        self._task = None

    def resolve(self, result: outcome.Outcome) -> bool:
        if self.done:
            return False
        self.done = True
        self.outcome = result
        if self._armed:
            self._expire = None
            self._timers.resolved_early()
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
            self.arm(deadline, expire)
            try:
                await _trio.lowlevel.wait_task_rescheduled(self._abort)
            except BaseException:
                self.done = True  # the asker is gone: a reply now is late
                raise
        result, self.outcome = self.outcome, None  # read once (unwrap); a stale heap entry keeps nothing
        return result.unwrap()  # type: ignore[union-attr]


class DeadlineHeap(ABC):
    """Every waiting ask's deadline, in one heap, and one wake-up for the
    earliest (a backend's `_wake_by`).

    A timer per ask costs more: on trio a cancel scope costs more than a whole
    scheduler pass; on asyncio `call_at` and its `cancel` cost ~2.7 µs here
    (a Python TimerHandle, compared in Python in the loop's heap), a push of
    a tuple ~0.6 µs. Invariants: the wake-up is never later than the earliest
    entry (an earlier `add` moves it forward); entries of replies resolved
    early are dropped once they make up half the heap, so the heap stays
    within twice the number of waiting asks.
    """

    __slots__ = ("_heap", "_seq", "_stale")

    COMPACT_AT = 1024

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Reply]] = []
        self._seq = 0
        self._stale = 0

    def add(self, deadline: float, reply: Reply, place: int = 0) -> None:
        """`place`: one `reserve()` gave earlier, to expire before the deadlines
        added since at the same instant (0: after all of them)."""
        if not place:
            self._seq += 1
            place = self._seq
        heapq.heappush(self._heap, (deadline, place, reply))
        self._wake_by(deadline)

    def reserve(self) -> int:
        """A place among equal deadlines, for an `add` that may come later."""
        self._seq += 1
        return self._seq

    @abstractmethod
    def _wake_by(self, deadline: float) -> None:
        """Make sure the backend wakes up by `deadline` to expire what is due."""

    def resolved_early(self) -> None:
        self._stale += 1
        heap = self._heap
        if self._stale > self.COMPACT_AT and 2 * self._stale > len(heap):
            heap[:] = [entry for entry in heap if not entry[2].done]
            heapq.heapify(heap)
            self._stale = 0

    def _expire_due(self, now: float) -> None:
        heap = self._heap
        while heap and (heap[0][0] <= now or heap[0][2].done):
            reply = heapq.heappop(heap)[2]
            if reply.done:
                self._stale = max(self._stale - 1, 0)
                continue
            # Resolve through the reply so its task is rescheduled.
            reply.resolve(outcome.Error(reply._expire(reply)))  # type: ignore[attr-defined,misc]
            self._stale = max(self._stale - 1, 0)  # resolve() counted it as early


class AsyncioTimers(DeadlineHeap):
    """The heap's wake-up is one `loop.call_at` for its earliest entry."""

    __slots__ = ("_loop", "_handle", "_handle_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = math.inf

    def _wake_by(self, deadline: float) -> None:
        if deadline < self._handle_at:
            if self._handle is not None:
                self._handle.cancel()
            self._handle_at = deadline
            self._handle = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        # asyncio runs a handle when its time is within the clock's resolution:
        # what was due at the wake-up is due now.
        now = max(self._loop.time(), self._handle_at)
        self._handle, self._handle_at = None, math.inf
        self._expire_due(now)
        if self._heap:
            self._wake_by(self._heap[0][0])


class TrioTimers(DeadlineHeap):
    """The heap's wake-up is one watcher task, asleep in a cancel scope whose
    deadline is the earliest entry's."""

    __slots__ = ("_scope",)

    def __init__(self) -> None:
        super().__init__()
        self._scope: Any = None  # the watcher's sleep; its deadline is its wake-up

    def _wake_by(self, deadline: float) -> None:
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    async def run(self) -> None:
        """The watcher task: lives in the actor system's task group."""
        while True:
            self._expire_due(_trio.current_time())
            wake = self._heap[0][0] if self._heap else math.inf
            with _trio.CancelScope(deadline=wake) as self._scope:
                await _trio.sleep_forever()
            self._scope = None


try:
    import trio as _trio
except ImportError:  # pragma: no cover - trio is a dependency
    _trio = None  # type: ignore[assignment]


class Backend:
    """What the kernel needs from the running event loop, resolved once."""

    __slots__ = ("name", "now", "checkpoint", "new_reply", "new_callback_reply", "park", "service")

    def __init__(
        self,
        *,
        name: str,
        now: Callable[[], float],
        checkpoint: Callable[[], Any],
        new_reply: Callable[[], Reply],
        new_callback_reply: Callable[[Callable[[outcome.Outcome], None]], Any],
        park: Callable[[Any], Awaitable[bool]] | None = None,
        service: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.now = now
        self.checkpoint = checkpoint
        self.new_reply = new_reply
        self.new_callback_reply = new_callback_reply  # (callback) -> a reply with `arm(deadline, expire)`
        # Where an idle drain waits a while for mail instead of ending (None:
        # a spawn is cheap enough that it ends).
        self.park = park
        # A task the system must run for the backend's lifetime (trio's timers).
        self.service = service


def current_backend() -> Backend:
    """The backend of the running event loop.

    The runtime clock is the loop's own clock (what anyio.current_time() reads),
    because deadlines are handed to the loop's timers and cancel scopes. It is
    injected where the loop is made: trio.run(clock=MockClock(...)) in tests."""
    name = sniffio.current_async_library()
    if name == "asyncio":
        loop = asyncio.get_running_loop()
        # The default loop's time() is time.monotonic(); calling it directly
        # saves a Python frame per read (two reads per message).
        now = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        timers = AsyncioTimers(loop)
        return Backend(
            name=name,
            now=now,
            checkpoint=_asyncio_yield,
            new_reply=partial(AsyncioReply, loop, timers),
            new_callback_reply=partial(CallbackReply, timers),
            park=AsyncioPark(loop),
        )
    if name == "trio":
        timers = TrioTimers()
        return Backend(
            name=name,
            # The run's clock itself (SystemClock, or a MockClock in tests):
            # one frame cheaper per read than trio.current_time().
            now=_trio.lowlevel.current_clock().current_time,
            checkpoint=_trio.lowlevel.checkpoint,
            new_reply=partial(TrioReply, timers),
            new_callback_reply=partial(CallbackReply, timers),
            service=timers.run,
        )
    raise RuntimeError(f"unsupported async library {name!r}")
