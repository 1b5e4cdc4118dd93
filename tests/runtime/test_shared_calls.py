"""SharedCalls: one call per key at a time; the callers that come meanwhile
share its value or its error; a cancelled caller hands the call on."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import SharedCalls

pytestmark = pytest.mark.anyio


async def test_callers_that_come_while_a_call_is_in_flight_share_it():
    shared: SharedCalls[str, int] = SharedCalls()
    calls, release, got = [], anyio.Event(), []

    async def call() -> int:
        calls.append(1)
        await release.wait()
        return len(calls)

    async def one(key: str) -> None:
        got.append((key, await shared.call(key, call)))

    async with anyio.create_task_group() as group:
        for key in ("a", "a", "a", "b"):
            group.start_soon(one, key)
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == 2  # one for "a", one for "b"
        release.set()
    assert sorted(got) == [("a", 2), ("a", 2), ("a", 2), ("b", 2)]
    assert await shared.call("a", call) == 3  # ended: the next caller calls again


async def test_an_error_is_raised_to_every_caller_of_that_call():
    shared: SharedCalls[str, int] = SharedCalls()
    release, raised = anyio.Event(), []

    async def call() -> int:
        await release.wait()
        raise LookupError("gone")

    async def one() -> None:
        with pytest.raises(LookupError) as caught:
            await shared.call("a", call)
        raised.append(str(caught.value))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert raised == ["gone"] * 3


async def test_a_cancelled_caller_hands_the_call_to_the_next_in_line():
    shared: SharedCalls[str, str] = SharedCalls()
    calls, got = [], []

    async def call() -> str:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep_forever()  # the first caller's, cut by its own scope
        return "second"

    async def waiter() -> None:
        got.append(await shared.call("a", call))

    async with anyio.create_task_group() as group:
        with anyio.CancelScope() as first:
            group.start_soon(waiter)  # waits behind the first once it has begun

            async def cut() -> None:
                await anyio.wait_all_tasks_blocked()
                first.cancel()

            group.start_soon(cut)
            await shared.call("a", call)
    assert got == ["second"] and len(calls) == 2
