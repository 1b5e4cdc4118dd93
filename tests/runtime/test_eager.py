"""Eager dispatch: an ask of an idle actor whose handler is a plain `def` is
handled in the asker's stack (`ActorCell.handle_now`), with exactly the
outcomes the drain would give it."""

from __future__ import annotations

import anyio
import outcome
import pytest

from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, handles, message
from exoarmur.runtime.eager import EAGER_DEPTH
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.errors import error_for
from tests.runtime.support import Add, Counter, Crash, Gate, Get, Hold, Sleep, wait_until, instance_of, cell_of

pytestmark = pytest.mark.anyio


def count_spawns(cell) -> list:
    spawns: list = []
    start_soon = cell.start_soon
    cell.start_soon = lambda fn, *args, **kw: (spawns.append(fn), start_soon(fn, *args, **kw))
    return spawns


@message("test.eager.whoami")
class WhoAmI:
    pass


@message("test.eager.tell_self")
class TellSelf:
    n: int


@message("test.eager.stop_self")
class StopSelf:
    pass


@message("test.eager.pass_on")
class PassOn:
    """Ask the next actor of the chain eagerly; the last one answers its depth."""

    left: int


class Eager(Counter):
    @handles(WhoAmI)
    def whoami(self, m: WhoAmI) -> tuple:
        here = CURRENT.get()
        return here.path, self.context.system.eager_depth

    @handles(TellSelf)
    def tell_self(self, m: TellSelf) -> int:
        self.context.self_ref.tell_nowait(Add(m.n))  # queued: this actor is busy now
        return self.total

    @handles(StopSelf)
    def stop_self(self, m: StopSelf) -> str:
        self.context.stop()
        return "stopping"


class Link(Actor):
    """One link of a chain: `PassOn(n)` goes on to link n-1 (an eager
    ask_then); link 0 answers how deep in eager calls it ran."""

    def __init__(self, *, index: int, depths: list) -> None:
        self.index = index
        self.depths = depths

    @handles(PassOn)
    def pass_on(self, m: PassOn):
        system = self.context.system
        self.depths.append(system.eager_depth)
        if m.left == 0:
            return system.eager_depth
        later = self.context.defer()
        system.lookup(f"link{self.index - 1}").ask_then(PassOn(m.left - 1), later.resolve, eager=True)
        return later


class TestEagerAsk:
    async def test_an_idle_actor_is_asked_in_the_askers_task_with_no_drain(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Eager, name="e")
            spawns = count_spawns(cell_of(ref))
            assert await ref.ask(WhoAmI()) == ("e", 1)  # its own context, one eager call deep
            assert await ref.ask(Add(2)) == 2
            assert spawns == []
            assert CURRENT.get() is None  # the asker's context is back
            stats = ref.statistics()
            assert stats.accepted == stats.processed == 2 and stats.depth == 0
            assert system.eager_depth == 0

    async def test_a_busy_actor_queues_the_ask_behind_its_mail(self):
        """Mail queued or a handler under way: the ask waits its turn (order kept)."""
        release = anyio.Event()
        async with ActorSystem() as system:
            ref = await system.spawn(Gate, name="g", kwargs={"release": release})
            await ref.tell(Hold())
            await ref.tell(Add(1))
            async with anyio.create_task_group() as tg:
                answers: list = []

                async def ask_get() -> None:
                    answers.append(await ref.ask(Get()))

                tg.start_soon(ask_get)
                await wait_until(lambda: ref.statistics().depth == 2)  # Add and Get queued
                assert answers == []
                release.set()
            assert answers == [[1]]

    async def test_an_async_handler_is_left_to_the_drain(self, tick):
        async with ActorSystem() as system:
            ref = await system.spawn(Eager, name="e")
            spawns = count_spawns(cell_of(ref))
            assert await ref.ask(Sleep(0)) == "slept"
            assert len(spawns) == 1

    async def test_a_crash_answers_actor_crashed_and_the_parent_restarts_it(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Eager, name="e", kwargs={"start": 5})
            first = instance_of(ref)
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Crash())  # raises in this task, crashes the actor
            assert caught.value.code is ReasonCode.ACTOR_CRASHED
            await wait_until(lambda: instance_of(ref) is not first)
            assert await ref.ask(Get()) == 5  # a fresh instance, same mailbox
            assert system.statistics().restarts == 1
            assert system.audit.counts() == {ReasonCode.ACTOR_CRASHED: 1}

    async def test_a_coded_error_raised_is_the_answer_not_a_crash(self):
        class Refuses(Actor):
            @handles(Get)
            def get(self, m: Get) -> None:
                raise error_for(ReasonCode.KV_CONFLICT, "taken")

        async with ActorSystem() as system:
            ref = await system.spawn(Refuses, name="r")
            first = instance_of(ref)
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Get())
            assert caught.value.code is ReasonCode.KV_CONFLICT
            assert instance_of(ref) is first and system.statistics().restarts == 0

    async def test_sends_to_itself_meanwhile_queue_and_a_drain_takes_them(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Eager, name="e")
            assert await ref.ask(TellSelf(3)) == 0  # the Add(3) it told itself is not handled yet
            await wait_until(lambda: instance_of(ref).total == 3)
            assert ref.statistics().processed == 2

    async def test_a_stop_from_the_handler_ends_the_actor(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Eager, name="e")
            assert await ref.ask(StopSelf()) == "stopping"
            with anyio.fail_after(5):
                await cell_of(ref).wait_stopped()
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Get())
            assert caught.value.code is ReasonCode.ACTOR_STOPPED

    async def test_a_loop_of_asks_still_lets_other_tasks_run(self):
        """Each eager ask yields once, as an ask that waited would."""
        async with ActorSystem() as system:
            ref = await system.spawn(Eager, name="e")
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.sleep(0)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                await anyio.sleep(0)
                before = ticks
                for _ in range(50):
                    await ref.ask(Add(1))
                tg.cancel_scope.cancel()
            assert ticks - before >= 40

    async def test_a_gated_mailbox_refuses_with_its_code(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Eager, name="e")
            cell_of(ref).fail_fast(ReasonCode.BREAKER_OPEN)
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Get())
            assert caught.value.code is ReasonCode.BREAKER_OPEN
            assert ref.statistics().processed == 0


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt: not an Exception, so not a crash."""


class TestEagerInterrupted:
    async def test_a_base_exception_reaches_the_asker_and_the_actor_is_left_clean(self):
        """As in the drain: the envelope in hand ends SHUTTING_DOWN (audited),
        the exception goes on up, and the actor takes the next ask."""

        class Interrupted(Eager):
            @handles(Hold)
            def hold(self, m: Hold) -> None:
                raise Interrupt()

        async with ActorSystem() as system:
            ref = await system.spawn(Interrupted, name="i")
            with pytest.raises(Interrupt):
                await ref.ask(Hold())
            assert system.audit.counts() == {ReasonCode.SHUTTING_DOWN: 1}
            assert not cell_of(ref).scheduled and system.eager_depth == 0 and CURRENT.get() is None
            assert await ref.ask(Add(1)) == 1


class TestEagerAskThen:
    async def test_nesting_stops_at_eager_depth_and_every_link_answers(self):
        """A chain longer than EAGER_DEPTH: the first EAGER_DEPTH links run in
        one stack, the rest queue; the answer comes back all the same."""
        length = 3 * EAGER_DEPTH
        depths: list = []
        async with ActorSystem() as system:
            for i in range(length):
                await system.spawn(Link, name=f"link{i}", kwargs={"index": i, "depths": depths})
            last = system.lookup(f"link{length - 1}")
            await last.ask(PassOn(length - 1))
            assert len(depths) == length
            assert max(depths) == EAGER_DEPTH and depths[:EAGER_DEPTH] == list(range(1, EAGER_DEPTH + 1))
            assert system.eager_depth == 0

    async def test_the_callback_runs_before_ask_then_returns_only_when_eager(self):
        seen: list = []

        class Asker(Actor):
            @handles(Add)
            def add(self, m: Add) -> list:
                target = self.context.system.lookup("e")
                target.ask_then(Get(), lambda r: seen.append(("queued", r.unwrap())))
                seen.append("between")
                target.ask_then(Get(), lambda r: seen.append(("eager", r.unwrap())), eager=True)
                seen.append("after")
                return list(seen)

        async with ActorSystem() as system:
            await system.spawn(Eager, name="e", kwargs={"start": 7})
            asker = await system.spawn(Asker, name="a")
            # The first (queued) ask makes "e" busy, so the eager one queues too.
            assert await asker.ask(Add(0)) == ["between", "after"]
            await wait_until(lambda: len(seen) == 4)
            assert seen[2:] == [("queued", 7), ("eager", 7)]
            seen.clear()
            await wait_until(lambda: not cell_of(system.lookup("e")).scheduled)  # its drain is done

            class EagerOnly(Asker):
                @handles(Add)
                def add(self, m: Add) -> list:
                    target = self.context.system.lookup("e")
                    target.ask_then(Get(), lambda r: seen.append(("eager", r.unwrap())), eager=True)
                    seen.append("after")
                    return list(seen)

            only = await system.spawn(EagerOnly, name="only")
            assert await only.ask(Add(0)) == [("eager", 7), "after"]

    async def test_an_eager_crash_reaches_the_callback_as_actor_crashed(self):
        got: list = []

        class Asker(Actor):
            @handles(Add)
            def add(self, m: Add) -> None:
                self.context.system.lookup("e").ask_then(Crash(), got.append, eager=True)

        async with ActorSystem() as system:
            await system.spawn(Eager, name="e")
            asker = await system.spawn(Asker, name="a")
            await asker.ask(Add(0))
            (result,) = got
            assert isinstance(result, outcome.Error) and result.error.code is ReasonCode.ACTOR_CRASHED
