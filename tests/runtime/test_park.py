"""Parked drains on asyncio (runtime/backend.py, AsyncioPark): one sweep timer
ends those parked since before the previous sweep, and keeps doing so even
when a parked task is cancelled in the same pass as a sweep."""

from __future__ import annotations

import asyncio

from exoarmur.runtime.backend import AsyncioPark
from exoarmur.runtime.margins import PARK


class Cell:
    parked = None


def test_a_drain_parked_through_two_sweeps_ends_and_a_woken_one_goes_on():
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        park = AsyncioPark(loop)
        idle, busy = Cell(), Cell()
        idle_ends = loop.create_task(park(idle))
        busy_goes_on = loop.create_task(park(busy))
        await asyncio.sleep(0)
        busy.parked.set_result(True)  # as a send wakes it
        return await asyncio.wait_for(idle_ends, 3 * PARK), await busy_goes_on

    assert asyncio.run(main()) == (False, True)


def test_a_task_cancelled_in_the_sweeps_pass_does_not_stop_later_sweeps():
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        park = AsyncioPark(loop)
        first, second = Cell(), Cell()
        cancelled = loop.create_task(park(first))
        await asyncio.sleep(0)
        park._timer.cancel()
        park._sweep()  # as the timer firing: `first` is now the older generation
        await asyncio.sleep(0)
        park._timer.cancel()
        cancelled.cancel()  # its future is cancelled now, its `finally` runs later
        park._sweep()  # must neither raise nor stop sweeping
        later = loop.create_task(park(second))
        return await asyncio.wait_for(later, 4 * PARK)

    assert asyncio.run(main()) is False
