"""Batch handlers: one call for a run of consecutive envelopes of one type, in
order, under the earliest deadline; the outcome is every envelope's."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, TimeoutCategory, handles, message
from exoarmur.runtime.errors import error_for
from tests.runtime.support import Add, Get, Hold, ask_all, wait_until

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
        assert system.info(ref.path).restarts == 1
        crashed = [e for e in system.audit.events if e.code is ReasonCode.ACTOR_CRASHED]
        assert len(crashed) == 3  # one per asker


async def test_a_coded_error_answers_every_asker_once_each(tick):
    async with ActorSystem() as system:
        ref, calls, answers = await queued(system, tick, [Item(13), Item(2)])
        assert answers == {0: ReasonCode.KV_CONFLICT, 1: ReasonCode.KV_CONFLICT}
        assert system.info(ref.path).restarts == 0
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


def test_a_batch_handler_is_async_and_per_item_needs_batch():
    with pytest.raises(TypeError, match="async def"):

        class Bad(Actor):
            @handles(Item, batch=True)
            def items(self, batch): ...

    with pytest.raises(TypeError, match="per_item"):

        class AlsoBad(Actor):
            @handles(Item, per_item=True)
            async def items(self, batch): ...


@message("test.kernel.batch.lookup", timeout=TimeoutCategory.KV_GET)
class Lookup:
    n: int


class Looker(Actor):
    """Answers each Lookup on its own: n*10; 13 is a KV_CONFLICT, 99 waits
    for `release`, -1 crashes the whole run, 7 makes it return too few."""

    concurrency = 2

    def __init__(self, *, release: anyio.Event, calls: list, gate: anyio.Event | None = None) -> None:
        self.release = release
        self.calls = calls
        self.gate = gate or release  # what Hold waits for

    async def _answer(self, batch: list[Lookup]) -> list:
        self.calls.append([m.n for m in batch])
        await anyio.sleep(0)
        if any(m.n == 99 for m in batch):
            await self.release.wait()
        if any(m.n == -1 for m in batch):
            raise RuntimeError("lookup broke")
        if any(m.n == 7 for m in batch):
            return []
        return [error_for(ReasonCode.KV_CONFLICT, "unlucky") if m.n == 13 else m.n * 10 for m in batch]

    @handles(Lookup, batch=True, per_item=True, concurrent=True)
    async def lookup(self, batch: list[Lookup]) -> list:
        return await self._answer(batch)

    @handles(Hold)
    async def hold(self, m: Hold) -> None:
        await self.gate.wait()


class SerialLooker(Looker):
    @handles(Lookup, batch=True, per_item=True)
    async def lookup(self, batch: list[Lookup]) -> list:
        return await self._answer(batch)


async def asked_together(ref, messages, **options) -> dict:
    answers: dict[int, object] = {}
    await ask_all(ref, messages, answers, **options)
    return answers


@pytest.mark.parametrize("kind", [Looker, SerialLooker])
class TestPerItem:
    async def test_each_asker_gets_its_own_answer(self, kind):
        async with ActorSystem() as system:
            calls: list = []
            ref = await system.spawn(kind, name="l", kwargs={"release": anyio.Event(), "calls": calls})
            answers = await asked_together(ref, [Lookup(1), Lookup(13), Lookup(3)])
            assert answers == {0: 10, 1: ReasonCode.KV_CONFLICT, 2: 30}
            assert sorted(n for call in calls for n in call) == [1, 3, 13]
            conflicts = [e for e in system.audit.events if e.code is ReasonCode.KV_CONFLICT]
            assert [e.kind for e in conflicts] == ["answered"]  # once, for its asker

    async def test_a_crash_is_every_askers_and_one_for_the_parent(self, kind):
        async with ActorSystem() as system:
            release = anyio.Event()
            ref = await system.spawn(kind, name="l", kwargs={"release": release, "calls": []})
            await ref.tell(Hold())
            async with anyio.create_task_group() as tg:
                answers: dict = {}

                async def asks() -> None:
                    answers.update(await asked_together(ref, [Lookup(1), Lookup(-1), Lookup(2)]))

                tg.start_soon(asks)
                await wait_until(lambda: ref.statistics().depth == 3)
                release.set()
            assert answers == {0: ReasonCode.ACTOR_CRASHED, 1: ReasonCode.ACTOR_CRASHED, 2: ReasonCode.ACTOR_CRASHED}
            assert system.statistics().restarts == 1
            assert [e.path for e in system.audit.events if e.kind == "crashed"] == ["l"] * 3

    async def test_too_few_results_is_a_crash(self, kind):
        async with ActorSystem() as system:
            ref = await system.spawn(kind, name="l", kwargs={"release": anyio.Event(), "calls": []})
            answers = await asked_together(ref, [Lookup(7)])
            assert answers == {0: ReasonCode.ACTOR_CRASHED}
            await wait_until(lambda: system.statistics().restarts == 1)


async def test_a_concurrent_run_leaves_the_mailbox_free_and_each_asker_keeps_its_deadline(tick):
    """A run waiting on I/O holds no mailbox: the next run starts beside it.
    Within a run, an asker with an earlier deadline is answered at it (the
    category code), and the run goes on to the latest deadline."""
    async with ActorSystem() as system:
        release, gate, calls = anyio.Event(), anyio.Event(), []
        ref = await system.spawn(Looker, name="l", kwargs={"release": release, "calls": calls, "gate": gate})
        await ref.tell(Hold())  # so both asks queue up behind it, as one run
        await wait_until(lambda: ref.statistics().depth == 0)
        results: dict = {}

        async def ask(key, m, timeout):
            start = system.now()
            try:
                results[key] = (await ref.ask(m, timeout=timeout), system.now() - start)
            except ExoarmurError as exc:
                results[key] = (exc.code, system.now() - start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "short", Lookup(99), 2 * tick)
            tg.start_soon(ask, "long", Lookup(5), 10 * tick)
            await wait_until(lambda: ref.statistics().depth == 2)
            gate.set()
            await wait_until(lambda: [sorted(call) for call in calls] == [[5, 99]])
            assert await ref.ask(Lookup(4)) == 40  # a second run while the first waits
            await anyio.sleep(4 * tick)
            release.set()
        assert results["short"][0] is ReasonCode.TIMEOUT_KV_GET
        assert tick <= results["short"][1] <= 5 * tick  # at its own deadline (asyncio's real clock may stall)
        assert results["long"][0] == 50 and 3 * tick <= results["long"][1] <= 9 * tick
        assert system.statistics().late_replies == 1  # the short one's answer came after its deadline
