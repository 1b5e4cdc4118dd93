"""Batch handlers: one call for a run of consecutive envelopes of one type, in
order, under the earliest deadline; the outcome is every envelope's."""

from __future__ import annotations

import anyio
import pytest

from runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, TimeoutCategory, handles, message
from runtime.errors import error_for
from tests.runtime.support import Add, Get, Hold, wait_until

pytestmark = pytest.mark.anyio


@message("test.kernel.batch.item", timeout=TimeoutCategory.NATS_PUBLISH)
class Item:
    n: int


class Batcher(Actor):
    def __init__(self, *, release: anyio.Event, calls: list) -> None:
        self.release = release
        self.calls = calls
        self.total = 0

    @handles(Hold)
    async def hold(self, m: Hold) -> None:
        await self.release.wait()

    @handles(Item, batch=True)
    async def items(self, batch: list[Item]) -> int:
        self.calls.append([m.n for m in batch])
        await anyio.sleep(0)
        if any(m.n < 0 for m in batch):
            raise RuntimeError("a negative item")
        if any(m.n == 13 for m in batch):
            raise error_for(ReasonCode.KV_CONFLICT, "unlucky")
        if any(m.n == 99 for m in batch):
            await anyio.sleep(1000)
        self.total += sum(m.n for m in batch)
        return len(batch)

    @handles(Add)
    def add(self, m: Add) -> int:
        self.total += m.n
        return self.total

    @handles(Get)
    def get(self, m: Get) -> int:
        return self.total


async def queued(system, tick, messages, **ask_options):
    """Spawn a Batcher held busy, queue `messages` (as asks), release it; the answers."""
    release, calls = anyio.Event(), []
    ref = await system.spawn(Batcher, name="b", kwargs={"release": release, "calls": calls})
    await ref.tell(Hold())
    await wait_until(lambda: ref.statistics().depth == 0)
    answers: dict[int, object] = {}

    async def ask(i, m):
        try:
            answers[i] = await ref.ask(m, **ask_options)
        except ExoarmurError as exc:
            answers[i] = exc.code

    async with anyio.create_task_group() as tg:
        for i, m in enumerate(messages):
            tg.start_soon(ask, i, m)
            await wait_until(lambda i=i: ref.statistics().depth == i + 1)  # queued in this order
        release.set()
    return ref, calls, answers


async def test_a_run_of_one_type_is_one_call_in_mailbox_order(tick):
    async with ActorSystem() as system:
        ref, calls, answers = await queued(system, tick, [Item(1), Item(2), Item(3), Add(10), Item(4)])
        assert calls == [[1, 2, 3], [4]]
        assert answers == {0: 3, 1: 3, 2: 3, 3: 16, 4: 1}
        assert await ref.ask(Get()) == 20


async def test_a_crash_fails_every_asker_of_the_run_and_the_parent_hears_once(tick):
    async with ActorSystem() as system:
        ref, calls, answers = await queued(system, tick, [Item(1), Item(-1), Item(2)])
        assert answers == {0: ReasonCode.ACTOR_CRASHED, 1: ReasonCode.ACTOR_CRASHED, 2: ReasonCode.ACTOR_CRASHED}
        assert ref._cell.restarts == 1
        crashed = [e for e in system.audit.events if e.code is ReasonCode.ACTOR_CRASHED]
        assert len(crashed) == 3  # one per asker


async def test_a_coded_error_answers_every_asker_once_each(tick):
    async with ActorSystem() as system:
        ref, calls, answers = await queued(system, tick, [Item(13), Item(2)])
        assert answers == {0: ReasonCode.KV_CONFLICT, 1: ReasonCode.KV_CONFLICT}
        assert ref._cell.restarts == 0
        assert len([e for e in system.audit.events if e.code is ReasonCode.KV_CONFLICT]) == 2


async def test_a_run_is_cut_at_its_earliest_deadline_with_the_category_code(tick):
    async with ActorSystem() as system:
        ref, calls, answers = await queued(system, tick, [Item(99), Item(1)], timeout=50 * tick)
        assert answers == {0: ReasonCode.TIMEOUT_NATS_PUBLISH, 1: ReasonCode.TIMEOUT_NATS_PUBLISH}


async def test_expired_envelopes_are_dead_lettered_not_batched(tick):
    async with ActorSystem() as system:
        release, calls = anyio.Event(), []
        ref = await system.spawn(Batcher, name="b", kwargs={"release": release, "calls": calls})
        await ref.tell(Hold())
        await wait_until(lambda: ref.statistics().depth == 0)
        await ref.tell(Item(1), timeout=1000 * tick)
        await ref.tell(Item(2), timeout=tick)  # expires while queued
        await ref.tell(Item(3), timeout=1000 * tick)
        await anyio.sleep(3 * tick)
        release.set()
        await wait_until(lambda: calls)
        assert calls == [[1, 3]]
        assert ref.statistics().expired == 1


def test_a_batch_handler_is_async_and_not_concurrent():
    with pytest.raises(TypeError, match="batch handler"):

        class Bad(Actor):
            @handles(Item, batch=True)
            def items(self, batch): ...

    with pytest.raises(TypeError, match="batch handler"):

        class AlsoBad(Actor):
            @handles(Item, batch=True, concurrent=True)
            async def items(self, batch): ...
