"""Concurrent handlers: many awaits open in one actor, bounded, each at its own
deadline, cancelled together when the instance dies, waited for at stop."""

from __future__ import annotations

from functools import partial

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, TimeoutCategory, handles, message
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.errors import error_for
from tests.runtime.support import Crash, Add, Counter, Get, Seen, ask_all, wait_until, instance_of, cell_of

pytestmark = pytest.mark.anyio


@message("test.kernel.concurrent.wait", timeout=TimeoutCategory.KV_GET)
class Wait:
    """Wait until the actor's release event is set, then answer `tag`."""

    tag: int


@message("test.kernel.concurrent.nap", timeout=TimeoutCategory.KV_GET)
class Nap:
    seconds: float


@message("test.kernel.concurrent.boom")
class Boom:
    pass


@message("test.kernel.concurrent.refuse")
class Refuse:
    pass


@message("test.kernel.concurrent.deadline")
class MyDeadline:
    pass


@message("test.kernel.concurrent.ask_counter")
class AskCounter:
    pass


class Pool(Actor):
    concurrency = 3

    def __init__(self, *, release: anyio.Event, log: list) -> None:
        self.release = release
        self.log = log
        self.running = 0
        self.peak = 0

    @handles(Wait, concurrent=True)
    async def wait(self, m: Wait) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.log.append(m.tag)
        return m.tag

    @handles(Nap, concurrent=True)
    async def nap(self, m: Nap) -> str:
        await anyio.sleep(m.seconds)
        return "rested"

    @handles(Boom, concurrent=True)
    async def boom(self, m: Boom) -> None:
        await anyio.sleep(0)
        raise RuntimeError("boom")

    @handles(Refuse, concurrent=True)
    async def refuse(self, m: Refuse) -> None:
        await anyio.sleep(0)
        raise error_for(ReasonCode.KV_CONFLICT, "refused")

    @handles(MyDeadline, concurrent=True)
    async def my_deadline(self, m: MyDeadline) -> float:
        await anyio.sleep(0)
        return CURRENT.get().deadline

    @handles(AskCounter, concurrent=True)
    async def ask_counter(self, m: AskCounter) -> tuple:
        counter = self.context.system.lookup("counter")
        return await counter.ask(Seen())

    @handles(Get)
    def get(self, m: Get) -> tuple[int, int]:
        return self.running, self.peak


async def spawn_pool(system: ActorSystem, release: anyio.Event, log: list):
    return await system.spawn(Pool, name="pool", kwargs={"release": release, "log": log})


class TestConcurrency:
    async def test_handlers_overlap_up_to_the_class_limit_and_all_answer(self, tick):
        """Ten waits on a pool of three: three run at once, never more, all ten answer."""
        release, log = anyio.Event(), []
        results: dict = {}
        async with ActorSystem() as system:
            ref = await spawn_pool(system, release, log)
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(ask_all, ref, [Wait(i) for i in range(10)], results, timeout=1000 * tick))
                actor = instance_of(system.lookup("pool"))
                await wait_until(lambda: actor.running == 3)
                await anyio.sleep(10 * tick)  # room for a fourth, were the limit not kept
                assert actor.running == 3 and ref.statistics().depth == 7
                release.set()
            assert results == {i: i for i in range(10)}
            assert actor.peak == 3
            assert sorted(log) == list(range(10))

    async def test_a_plain_handler_runs_while_concurrent_ones_wait(self):
        """While two concurrent handlers wait, the actor still answers a sync message."""
        release, log = anyio.Event(), []
        async with ActorSystem() as system:
            ref = await spawn_pool(system, release, log)
            results: dict = {}
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask_all, ref, [Wait(0), Wait(1)], results)
                await wait_until(lambda: instance_of(system.lookup("pool")).running == 2)
                assert await ref.ask(Get()) == (2, 2)
                release.set()
            assert results == {0: 0, 1: 1}

    async def test_each_runs_to_its_own_deadline_with_its_category_code(self, tick):
        """A nap past its deadline ends with TIMEOUT_KV_GET; a short one beside it answers."""
        release, log = anyio.Event(), []
        results: dict = {}
        async with ActorSystem() as system:
            ref = await spawn_pool(system, release, log)

            async def bounded(i, seconds, timeout):
                try:
                    results[i] = await ref.ask(Nap(seconds), timeout=timeout)
                except ExoarmurError as exc:
                    results[i] = exc.code

            async with anyio.create_task_group() as tg:
                tg.start_soon(bounded, 0, 100 * tick, 2 * tick)
                tg.start_soon(bounded, 1, tick, 10 * tick)
            assert results == {0: ReasonCode.TIMEOUT_KV_GET, 1: "rested"}

    async def test_a_coded_error_is_an_answer_not_a_crash(self):
        release, log = anyio.Event(), []
        async with ActorSystem() as system:
            ref = await spawn_pool(system, release, log)
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Refuse())
            assert caught.value.code is ReasonCode.KV_CONFLICT
            assert system.info("pool").restarts == 0

    async def test_a_crash_cancels_the_siblings_in_flight_and_the_actor_restarts(self):
        """One concurrent handler crashes: the others in flight end with ACTOR_CRASHED,
        each failure audited once, and the restarted actor handles new mail."""
        release, log = anyio.Event(), []
        results: dict = {}
        async with ActorSystem() as system:
            ref = await spawn_pool(system, release, log)
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask_all, ref, [Wait(0), Wait(1)], results)
                await wait_until(lambda: instance_of(system.lookup("pool")).running == 2)
                with pytest.raises(ExoarmurError) as caught:
                    await ref.ask(Boom())
                assert caught.value.code is ReasonCode.ACTOR_CRASHED
            assert results == {0: ReasonCode.ACTOR_CRASHED, 1: ReasonCode.ACTOR_CRASHED}
            assert log == []  # neither finished its work
            assert system.info("pool").restarts == 1
            assert await ref.ask(Get()) == (0, 0)  # a fresh instance
            crashed = [e for e in system.audit.events if e.code is ReasonCode.ACTOR_CRASHED]
            assert len(crashed) == 3  # the crash, and one per sibling's asker

    async def test_stop_waits_for_handlers_in_flight_until_the_stop_deadline(self, tick):
        """A graceful stop lets a short handler finish; one that outlives the stop
        deadline is cut and its asker told SHUTTING_DOWN."""
        release, log = anyio.Event(), []
        results: dict = {}
        async with ActorSystem() as system:
            ref = await spawn_pool(system, release, log)

            async def bounded(i, seconds):
                try:
                    results[i] = await ref.ask(Nap(seconds), timeout=1000 * tick)
                except ExoarmurError as exc:
                    results[i] = exc.code

            async with anyio.create_task_group() as tg:
                tg.start_soon(bounded, 0, tick)
                tg.start_soon(bounded, 1, 500 * tick)
                await wait_until(lambda: ref.statistics().depth == 0 and len(cell_of(system.lookup("pool")).inflight) == 2)
                await system.stop(ref, timeout=20 * tick)
            assert results == {0: "rested", 1: ReasonCode.ACTOR_STOPPED}

    async def test_a_send_from_a_concurrent_handler_inherits_its_own_envelope(self, tick):
        """Each task sees its own envelope: the deadline it reads, and the one a
        nested ask inherits, are its envelope's, not a sibling's."""
        release, log = anyio.Event(), []
        async with ActorSystem() as system:
            ref = await spawn_pool(system, release, log)
            await system.spawn(Counter, name="counter")
            before = system.now()
            deadline = await ref.ask(MyDeadline(), timeout=50 * tick)
            assert before + 50 * tick - tick <= deadline <= system.now() + 50 * tick
            seen_deadline = (await ref.ask(AskCounter(), timeout=30 * tick))[0]
            assert seen_deadline <= system.now() + 30 * tick

    async def test_system_shutdown_cuts_them_at_the_stop_timeout(self, tick):
        """The system shutting down mid-handler: each asker in flight hears
        SHUTTING_DOWN at the stop timeout, not at its own later deadline."""
        release, log = anyio.Event(), []
        results: dict = {}
        async with anyio.create_task_group() as outer:
            async with ActorSystem(stop_timeout=5 * tick) as system:
                ref = await spawn_pool(system, release, log)
                outer.start_soon(partial(ask_all, ref, [Wait(0), Wait(1)], results, timeout=1000 * tick))
                await wait_until(lambda: len(cell_of(system.lookup("pool")).inflight) == 2)
                stopping_at = system.now()
            assert system.now() - stopping_at < 100 * tick
        assert results == {0: ReasonCode.SHUTTING_DOWN, 1: ReasonCode.SHUTTING_DOWN}


class TestDeclaration:
    def test_only_an_async_handler_can_be_concurrent(self):
        with pytest.raises(TypeError, match="only an async def"):

            class Bad(Actor):
                @handles(Add, concurrent=True)
                def add(self, m: Add) -> None: ...

    def test_concurrency_must_be_a_positive_int(self):
        with pytest.raises(ValueError, match="concurrency"):

            class Bad(Actor):
                concurrency = 0

    def test_a_subclass_override_that_is_not_concurrent_is_not(self):
        class Base(Actor):
            @handles(Nap, concurrent=True)
            async def nap(self, m: Nap) -> None: ...

        class Child(Base):
            @handles(Nap)
            async def nap(self, m: Nap) -> None: ...

        assert Base._concurrent == {Nap}
        assert Child._concurrent == frozenset()


@message("test.kernel.task.fail_soon")
class FailSoon:
    pass


class Watcher(Actor):
    """Starts a task in `started` that waits on its event; records what happens to it."""

    def __init__(self, *, log: list, fail: list[anyio.Event]) -> None:
        self.log = log
        self.fail = fail.pop(0) if fail else anyio.Event()  # one per instance

    async def started(self) -> None:
        self.context.start_task(self.watch)

    async def watch(self) -> None:
        self.log.append("watching")
        try:
            await self.fail.wait()
        except BaseException:
            self.log.append("cancelled")
            raise
        raise RuntimeError("the watched thing died")

    async def stopping(self) -> None:
        self.log.append("stopping")

    @handles(Add)
    def add(self, m: Add) -> int:
        if m.n < 0:
            raise ValueError("negative")
        return m.n


class TestInstanceTasks:
    async def test_a_task_lives_until_after_the_stopping_hook(self):
        log: list = []
        async with ActorSystem() as system:
            ref = await system.spawn(Watcher, name="w", kwargs={"log": log, "fail": []})
            await wait_until(lambda: log == ["watching"])
            await system.stop(ref)
            await wait_until(lambda: len(log) == 3)
            assert log == ["watching", "stopping", "cancelled"]

    async def test_a_failing_task_crashes_the_actor_which_restarts_with_a_new_task(self):
        log: list = []
        fail = anyio.Event()
        async with ActorSystem() as system:
            ref = await system.spawn(Watcher, name="w", kwargs={"log": log, "fail": [fail]})
            await wait_until(lambda: log == ["watching"])
            fail.set()
            await wait_until(lambda: system.info("w").restarts == 1)
            assert await ref.ask(Add(3)) == 3  # the fresh instance
            crashes = [e for e in system.audit.events if e.code is ReasonCode.ACTOR_CRASHED]
            assert len(crashes) == 1 and "task watch" in crashes[0].detail
            await wait_until(lambda: log.count("watching") == 2)

    async def test_a_task_that_fails_after_its_instance_ended_is_audited_and_crashes_nothing(self):
        """A task that raises as it is cancelled (its instance crashed) is
        recorded, ACTOR_CRASHED "after its instance ended", and the fresh
        instance runs on: one restart, not two."""

        class Stubborn(Counter):
            async def started(self) -> None:
                self.context.start_task(self.hold)

            async def hold(self) -> None:
                try:
                    await anyio.sleep_forever()
                finally:
                    raise RuntimeError("raised while cancelled")

        async with ActorSystem() as system:
            ref = await system.spawn(Stubborn, name="s")
            await ref.tell(Crash())
            after = "task hold after its instance ended"
            await wait_until(lambda: any(after in e.detail for e in system.audit.events))
            assert system.info("s").restarts == 1
            assert await ref.ask(Add(2)) == 2

    async def test_a_handler_crash_cancels_the_instance_task(self):
        log: list = []
        async with ActorSystem() as system:
            ref = await system.spawn(Watcher, name="w", kwargs={"log": log, "fail": []})
            await wait_until(lambda: log == ["watching"])
            with pytest.raises(ExoarmurError):
                await ref.ask(Add(-1))
            await wait_until(lambda: log.count("watching") == 2)
            assert log[:2] == ["watching", "cancelled"]
