"""The asyncio bridge (actors/nats/aio.py), on both backends: the caller's own
cancellation crosses it, and a CancelledError nobody asked for comes out as an
error instead of cancelling the caller's task group."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from exoarmur.actors.nats.aio import MIN_TIMERS, Bridge, StrayCancellation, open_bridge
from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, TimeoutCategory, handles, message

pytestmark = pytest.mark.anyio


@message("test.bridge.stray")
class Stray:
    pass


@message("test.bridge.hang", timeout=TimeoutCategory.NATS_REQUEST)
class Hang:
    pass


async def cancel_own_future() -> None:
    """What nats-py does to a pending call when it closes its transport."""
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


class Bridged(Actor):
    def __init__(self, *, seen: list) -> None:
        self.seen = seen
        self.bridge = Bridge()

    async def started(self) -> None:
        self.bridge = await open_bridge(self.context)

    @handles(Stray)
    async def stray(self, m: Stray) -> str:
        try:
            await self.bridge.call(cancel_own_future)
        except StrayCancellation as exc:
            return type(exc).__name__
        return "no error"

    @handles(Hang)
    async def hang(self, m: Hang) -> None:
        try:
            await self.bridge.call(asyncio.sleep, 60)
        finally:
            self.seen.append("cancelled")


class TestBridge:
    async def test_a_stray_cancellation_is_an_error_and_the_system_lives_on(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Bridged, name="bridged", kwargs={"seen": []})
            assert await ref.ask(Stray()) == "StrayCancellation"
            assert await ref.ask(Stray()) == "StrayCancellation"  # the actor and its drain are unharmed
            other = await system.spawn(Bridged, name="other", kwargs={"seen": []})
            assert await other.ask(Stray()) == "StrayCancellation"

    async def test_the_callers_deadline_still_cancels_the_asyncio_side(self):
        seen: list = []
        async with ActorSystem() as system:
            ref = await system.spawn(Bridged, name="bridged", kwargs={"seen": seen})
            started = anyio.current_time()
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Hang(), timeout=0.2)
            assert caught.value.code is ReasonCode.TIMEOUT_NATS_REQUEST
            assert anyio.current_time() - started < 0.2 * 1.1 + 0.05
            await anyio.sleep(0.05)
            assert seen == ["cancelled"]
            assert await ref.ask(Stray()) == "StrayCancellation"


@asynccontextmanager
async def a_bridge(backend: str) -> AsyncIterator[Bridge]:
    if backend != "trio":
        yield Bridge()
        return
    import trio_asyncio

    async with trio_asyncio.open_loop() as loop:
        yield Bridge(loop)


async def test_a_stray_cancellation_in_a_shielded_cleanup_after_a_cancel_is_still_an_error(anyio_backend_name):
    """The shape of NatsConnection's close after its instance was cancelled:
    the close's own stray CancelledError must reach `except Exception`."""
    async with a_bridge(anyio_backend_name) as bridge:
        await cleanup_after_a_cancel(bridge)


async def cleanup_after_a_cancel(bridge: Bridge) -> None:
    log: list[str] = []
    with anyio.CancelScope() as scope:
        try:
            scope.cancel()
            await anyio.sleep_forever()  # cancelled at once
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await bridge.call(cancel_own_future)
                except Exception as exc:  # noqa: BLE001 - what a best-effort close does
                    log.append(type(exc).__name__)
                log.append("cleanup went on")
    assert log == ["StrayCancellation", "cleanup went on"]
    assert scope.cancelled_caught


@message("test.bridge.timers")
class Timers:
    count: int


class Payload:
    """What a timer's context holds (an actor's envelope, in the real case)."""


HELD: contextvars.ContextVar[Payload] = contextvars.ContextVar("held")


class TimerMaker(Actor):
    """Makes `count` hour-long timers on its bridge's loop, each in a context
    of its own holding a Payload, and cancels them all (as every answered
    nats-py request cancels its timeout timer)."""

    def __init__(self, *, payloads: list) -> None:
        self.payloads = payloads
        self.bridge = Bridge()

    async def started(self) -> None:
        self.bridge = await open_bridge(self.context)

    @handles(Timers)
    async def timers(self, m: Timers) -> None:
        await self.bridge.call(make_and_cancel_timers, m.count, self.payloads)


async def make_and_cancel_timers(count: int, payloads: list) -> None:
    loop = asyncio.get_running_loop()
    handles = []
    for _ in range(count):
        payload = Payload()
        payloads.append(weakref.ref(payload))
        context = contextvars.copy_context()
        context.run(HELD.set, payload)
        del payload
        handles.append(context.run(loop.call_later, 3600, lambda: None))
    await asyncio.sleep(0.01)  # the loop takes them into its heap
    for handle in handles:
        handle.cancel()


async def test_cancelled_timers_on_the_bridge_do_not_keep_their_context_alive():
    """A cancelled timer is dropped from the loop long before it would have
    fired, with the context (and so the envelope) it was made in. On trio
    this is the bridge's trio-asyncio loop, which on its own keeps them."""
    payloads: list = []
    async with ActorSystem() as system:
        maker = await system.spawn(TimerMaker, name="maker", kwargs={"payloads": payloads})
        await maker.ask(Timers(1000))
        gc.collect()
        alive = sum(ref() is not None for ref in payloads)
        assert alive <= MIN_TIMERS + 1, f"{alive} of 1000 cancelled timers' contexts are still alive"
