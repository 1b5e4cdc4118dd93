"""Actors: dispatch by message type, lifecycle hooks, one envelope at a time,
deadline scopes, crashes and restarts, deadlines inherited by nested sends."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import (
    Actor,
    ActorCrashed,
    ActorSystem,
    DeadlineExceeded,
    InvalidInput,
    ReasonCode,
    handles,
    message,
)
from exoarmur.runtime.margins import PARK
from tests.runtime.support import (
    cell_of,
    Add,
    Counter,
    Crash,
    Forward,
    Get,
    PlainSleep,
    Seen,
    Sleep,
    Unhandled,
    wait_until,
)

pytestmark = pytest.mark.anyio


@message("test.kernel.actor.probe")
class Probe:
    pass


@message("test.kernel.actor.cas")
class Cas:
    pass


@message("test.kernel.actor.give_up")
class GiveUp:
    pass


class TestDispatch:
    async def test_handler_is_chosen_by_message_type(self):
        """Each message type goes to the handler declared for it."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c", kwargs={"start": 10})
            assert await ref.ask(Add(5)) == 15
            assert await ref.ask(Get()) == 15

    async def test_message_without_handler_is_refused_at_send_with_envelope_invalid(self):
        """A message the actor has no handler for is an ENVELOPE_INVALID at the sender; the actor lives on."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            with pytest.raises(InvalidInput) as caught:
                await ref.tell(Unhandled())
            assert caught.value.code is ReasonCode.ENVELOPE_INVALID
            assert await ref.ask(Add(1)) == 1
            assert system.audit.counts()[ReasonCode.ENVELOPE_INVALID] == 1

    def test_two_handlers_for_one_type_fail_at_class_definition(self):
        """Declaring two handlers for the same message type in one class is a TypeError."""
        with pytest.raises(TypeError):

            class Twice(Actor):
                @handles(Probe)
                def one(self, message): ...

                @handles(Probe)
                def two(self, message): ...

    def test_handles_refuses_a_class_that_is_not_a_message(self):
        """@handles only accepts @message classes."""
        with pytest.raises(InvalidInput):
            handles(int)

    async def test_subclass_inherits_and_overrides_handlers(self):
        """A subclass keeps its parent's handlers and may replace one."""

        class Doubling(Counter):
            @handles(Add)
            def add(self, message: Add) -> int:
                self.total += 2 * message.n
                return self.total

        async with ActorSystem() as system:
            ref = await system.spawn(Doubling, name="d")
            assert await ref.ask(Add(3)) == 6
            assert await ref.ask(Get()) == 6

    async def test_only_handlers_marked_remote_export_their_messages(self):
        """`remote=True` exports a handler's message types for the wire; a
        subclass that overrides the handler without it takes the export back."""

        class Exporting(Counter):
            @handles(Add, remote=True)
            def add(self, message: Add) -> int:
                return 0

        class Private(Exporting):
            @handles(Add)
            def add(self, message: Add) -> int:
                return 1

        async with ActorSystem() as system:
            exporting = await system.spawn(Exporting, name="e")
            private = await system.spawn(Private, name="p")
            counter = await system.spawn(Counter, name="c")
            assert exporting.exported(Add) and not exporting.exported(Get)
            assert not private.exported(Add)
            assert not counter.exported(Add)


class TestLifecycle:
    async def test_started_runs_before_first_message_and_stopping_at_stop(self):
        """`started` runs at spawn, before any handler; `stopping` runs once at stop."""
        events: list[str] = []

        class Hooked(Actor):
            async def started(self) -> None:
                events.append("started")

            async def stopping(self) -> None:
                events.append("stopping")

            @handles(Probe)
            def probe(self, message: Probe) -> None:
                events.append("probe")

        async with ActorSystem() as system:
            ref = await system.spawn(Hooked, name="h")
            await ref.ask(Probe())
            await system.stop(ref)
            assert events == ["started", "probe", "stopping"]
            assert system.paths() == []

    async def test_started_that_raises_fails_spawn_with_actor_crashed(self):
        """A `started` hook that raises makes spawn raise ACTOR_CRASHED; the path stays free."""

        class Broken(Actor):
            async def started(self) -> None:
                raise RuntimeError("no")

        async with ActorSystem() as system:
            with pytest.raises(ActorCrashed):
                await system.spawn(Broken, name="b")
            assert "b" not in system.paths()
            await system.spawn(Counter, name="b")

    async def test_an_init_that_raises_a_coded_error_fails_spawn_with_that_code(self):
        """A coded error from `__init__` (a bad option) reaches the spawner as
        itself, audited once; anything else is ACTOR_CRASHED. The path stays free."""

        class Picky(Actor):
            def __init__(self, *, limit: int) -> None:
                if limit <= 0:
                    raise InvalidInput(ReasonCode.CONFIG_INVALID, f"limit must be > 0, got {limit}")

        class Clumsy(Actor):
            def __init__(self) -> None:
                raise RuntimeError("no")

        async with ActorSystem() as system:
            with pytest.raises(InvalidInput) as caught:
                await system.spawn(Picky, name="p", kwargs={"limit": 0})
            assert caught.value.code is ReasonCode.CONFIG_INVALID
            with pytest.raises(ActorCrashed):
                await system.spawn(Clumsy, name="c")
            assert system.audit.counts() == {ReasonCode.CONFIG_INVALID: 1, ReasonCode.ACTOR_CRASHED: 1}
            assert system.paths() == []
            await system.spawn(Picky, name="p", kwargs={"limit": 1})

    async def test_idle_actor_holds_no_task(self):
        """After its mailbox empties, an actor's drain ends: once twice
        PARK have passed (asyncio parks it up to that long) no task is
        left for it."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            cell = cell_of(ref)
            assert not cell.scheduled
            await ref.ask(Add(1))
            await wait_until(lambda: not cell.scheduled)
            await anyio.sleep(3 * PARK)
            assert not cell.scheduled and cell.parked is None

    async def test_a_send_soon_after_wakes_the_parked_drain_instead_of_spawning(self):
        """On asyncio (where a spawn costs most) the idle drain waits parked a
        moment and the next send wakes it; on trio it has ended and a new one
        is spawned. Either way the message is handled."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            cell = cell_of(ref)
            spawns = []
            start_soon = cell.start_soon
            cell.start_soon = lambda fn, *args, **kw: (spawns.append(fn), start_soon(fn, *args, **kw))
            await ref.tell(Add(1))  # a tell is queued (an ask of an idle actor runs in the asker)
            await wait_until(lambda: not cell.scheduled)
            parks = system.backend.park is not None
            assert (cell.parked is not None) is parks
            await ref.tell(Add(2))
            await wait_until(lambda: cell.mailbox.processed == 2)
            assert cell.actor.total == 3
            assert len(spawns) == (1 if parks else 2)
            cell.start_soon = start_soon


class TestOneAtATime:
    async def test_async_handlers_never_overlap(self, tick):
        """An actor runs one envelope at a time even when its handlers suspend."""
        running = 0
        peak = 0

        class Slow(Actor):
            @handles(Probe)
            async def probe(self, message: Probe) -> None:
                nonlocal running, peak
                running += 1
                peak = max(peak, running)
                await anyio.sleep(tick / 10)
                running -= 1

        async with ActorSystem() as system:
            ref = await system.spawn(Slow, name="s")
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(ref.ask, Probe())
        assert peak == 1


class TestDeadlineScope:
    async def test_async_handler_is_cancelled_at_the_deadline_with_category_code(
        self, tick, anyio_backend_name
    ):
        """An async handler still running at the deadline is cancelled; the asker gets the message's category code."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            start = system.now()
            with pytest.raises(DeadlineExceeded) as caught:
                await ref.ask(Sleep(100 * tick), timeout=tick)
            elapsed = system.now() - start
            assert caught.value.code is ReasonCode.TIMEOUT_KV_GET
            if anyio_backend_name == "trio":
                assert elapsed == pytest.approx(tick)
            else:
                assert tick <= elapsed < tick * 1.5
            assert await ref.ask(Add(1)) == 1  # the actor is fine
            assert system.audit.counts() == {ReasonCode.TIMEOUT_KV_GET: 1}

    async def test_uncategorised_message_overrun_is_deadline_exceeded(self, tick):
        """A message without a timeout category that overruns fails with DEADLINE_EXCEEDED."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            with pytest.raises(DeadlineExceeded) as caught:
                await ref.ask(PlainSleep(100 * tick), timeout=tick)
            assert caught.value.code is ReasonCode.DEADLINE_EXCEEDED

    async def test_told_async_handler_does_not_outlive_its_deadline(self, tick):
        """A fire-and-forget envelope's handler is cancelled at its deadline too, and audited once."""
        finished: list[float] = []

        class Watch(Actor):
            @handles(Sleep)
            async def sleep(self, message: Sleep) -> None:
                try:
                    await anyio.sleep(message.seconds)
                finally:
                    finished.append(self.context.now())

        async with ActorSystem() as system:
            ref = await system.spawn(Watch, name="w")
            start = system.now()
            await ref.tell(Sleep(100 * tick), timeout=tick)
            await wait_until(lambda: finished, timeout=10 * tick)
            assert finished[0] - start == pytest.approx(tick, abs=tick * 0.5)
            assert system.audit.counts() == {ReasonCode.TIMEOUT_KV_GET: 1}

    async def test_no_handler_outlives_its_envelope_deadline(self, tick):
        """Over many envelopes with random-looking deadlines, every handler ends by its deadline."""
        overruns: list[float] = []

        class Measure(Actor):
            @handles(Sleep)
            async def sleep(self, message: Sleep) -> None:
                deadline = self.context.deadline
                try:
                    await anyio.sleep(message.seconds)
                finally:
                    late = self.context.now() - deadline
                    if late > tick * 0.2:
                        overruns.append(late)

        async with ActorSystem() as system:
            ref = await system.spawn(Measure, name="m", capacity=100)
            for i in range(40):
                # Half finish in time, half overrun their deadline.
                await ref.tell(Sleep(((i * 7) % 10) * tick / 10), timeout=(i % 2 + 0.5) * tick / 2)
            await wait_until(lambda: ref.statistics().processed + ref.statistics().expired == 40, timeout=100 * tick)
        assert overruns == []

    async def test_plain_handler_is_never_called_after_its_deadline(self, tick):
        """A plain-def handler whose envelope expired in the queue is not called."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            # Block the actor with an async handler, queue an Add that expires behind it.
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: ref.ask(Sleep(2 * tick), timeout=10 * tick))
                await wait_until(lambda: ref.statistics().processed == 1)
                await ref.tell(Add(1), timeout=tick)
            assert await ref.ask(Get()) == 0
            assert ref.statistics().expired == 1


class TestCrash:
    async def test_crash_raises_actor_crashed_at_once_not_at_deadline(self, tick):
        """A handler that raises gives its asker ACTOR_CRASHED immediately."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            start = system.now()
            with pytest.raises(ActorCrashed) as caught:
                await ref.ask(Crash(), timeout=100 * tick)
            assert system.now() - start < tick
            assert caught.value.code is ReasonCode.ACTOR_CRASHED
            assert isinstance(caught.value.__cause__, ValueError)
            assert system.audit.counts() == {ReasonCode.ACTOR_CRASHED: 1}

    async def test_crashed_actor_restarts_fresh_and_keeps_its_mailbox(self):
        """After a crash the actor is a new instance and the envelopes queued behind the crash are handled."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c", kwargs={"start": 100})
            await ref.tell(Add(1))
            await ref.tell(Crash())
            await ref.tell(Add(2))
            await ref.tell(Add(3))
            assert await ref.ask(Get()) == 100 + 2 + 3
            assert system.statistics().restarts == 1
            assert system.dead_letters.total == 0

    async def test_crash_of_a_told_envelope_is_audited_once(self):
        """A tell that crashes the handler emits exactly one ACTOR_CRASHED event."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            for _ in range(5):
                await ref.tell(Crash())
            assert await ref.ask(Get()) == 0
            assert system.audit.counts() == {ReasonCode.ACTOR_CRASHED: 5}

    async def test_a_crash_resumed_at_once_goes_on_with_the_turn_and_the_turn_still_ends(self):
        """Resumed in the crash's own stack (the system resumes at once), the
        fresh instance goes on with the same turn: no scheduler pass per
        crash. The turn's budget still counts crashed envelopes, so a
        crash-looping actor yields every `throughput` envelopes."""
        passes = 0
        seen: list[int] = []

        class Brittle(Actor):
            throughput = 4

            @handles(Add)
            def add(self, m: Add) -> None:
                seen.append(passes)
                raise ValueError("brittle")

        async def count_passes() -> None:
            nonlocal passes
            while True:
                passes += 1
                await anyio.sleep(0)

        async with ActorSystem() as system:
            ref = await system.spawn(Brittle, name="b")
            async with anyio.create_task_group() as tg:
                tg.start_soon(count_passes)
                await anyio.sleep(0)
                for n in range(12):
                    await ref.tell(Add(n))
                for _ in range(1000):  # passes, not time: the ticker keeps trio's MockClock still
                    if len(seen) == 12:
                        break
                    await anyio.sleep(0)
                tg.cancel_scope.cancel()
            turns = [seen[i : i + 4] for i in range(0, 12, 4)]
            assert all(len(set(turn)) == 1 for turn in turns)  # four crashes, not one pass between
            # The turns end: the ticker ran between two of them at least (trio
            # may run two drain turns back to back, reversing a batch's order).
            assert turns[0][0] < turns[2][0]
            assert system.statistics().restarts == 12

    async def test_crashing_async_handler_raises_actor_crashed(self):
        """An async handler that raises also gives ACTOR_CRASHED."""

        class AsyncCrash(Actor):
            @handles(Probe)
            async def probe(self, message: Probe) -> None:
                await anyio.sleep(0)
                raise KeyError("gone")

        async with ActorSystem() as system:
            ref = await system.spawn(AsyncCrash, name="a")
            with pytest.raises(ActorCrashed):
                await ref.ask(Probe())


class TestLateReply:
    async def test_reply_after_the_asker_gave_up_is_counted_and_dropped(self, tick):
        """An asker cancelled before the answer makes the answer late: counted, not delivered."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            with anyio.move_on_after(tick):
                await ref.ask(Sleep(2 * tick), timeout=10 * tick)
            await wait_until(lambda: system.statistics().late_replies == 1, timeout=10 * tick)
            assert system.statistics().late_replies == 1


class TestDeadlinePropagation:
    async def test_nested_send_gets_the_earlier_of_its_own_and_the_handlers_deadline(self, tick):
        """A send from inside a handler never gets a later deadline than the handler's envelope."""
        async with ActorSystem() as system:
            await system.spawn(Counter, name="target")
            front = await system.spawn(Counter, name="front")
            # Bounds, not a point: real time passes between these lines on asyncio.
            start = system.now()
            inner_deadline, *_ = await front.ask(Forward("target", 100 * tick), timeout=2 * tick)
            end = system.now()
            assert start + 2 * tick <= inner_deadline <= end + 2 * tick  # the handler's, not its own
            start = system.now()
            inner_deadline, *_ = await front.ask(Forward("target", tick), timeout=50 * tick)
            end = system.now()
            assert start + tick <= inner_deadline <= end + tick  # its own, the earlier one

    async def test_nested_send_inherits_tenant_and_trace_and_names_its_sender(self):
        """A send from inside a handler carries the handler's tenant and trace id, and the handler's path as sender."""
        async with ActorSystem() as system:
            await system.spawn(Counter, name="target")
            front = await system.spawn(Counter, name="front")
            _, tenant, trace, sender = await front.ask(
                Forward("target", 5.0), tenant="acme", trace_id="trace-1"
            )
            assert (tenant, trace, sender) == ("acme", "trace-1", "front")

    async def test_send_outside_any_handler_uses_the_policy_default(self):
        """Without a timeout, the deadline is now + the message category's policy default."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            start = system.now()
            deadline, tenant, trace, sender = await ref.ask(Seen())
            assert deadline == pytest.approx(start + 30.0, abs=0.5)
            assert (tenant, trace, sender) == (None, None, None)


class TestRestartFailure:
    async def test_actor_whose_restart_fails_stops_with_actor_stopped(self):
        """If the fresh instance cannot start, the actor stops: queued and later sends get ACTOR_STOPPED."""
        from exoarmur.runtime import ActorUnavailable

        attempts = 0

        class FragileStart(Counter):
            async def started(self) -> None:
                nonlocal attempts
                attempts += 1
                if attempts > 1:
                    raise RuntimeError("cannot come back")

        async with ActorSystem() as system:
            ref = await system.spawn(FragileStart, name="f")
            await ref.tell(Crash())
            await ref.tell(Add(1))
            await wait_until(lambda: "f" not in system.paths())
            with pytest.raises(ActorUnavailable) as caught:
                await ref.tell(Add(2))
            assert caught.value.code is ReasonCode.ACTOR_STOPPED
            assert system.dead_letters.counts() == {ReasonCode.ACTOR_STOPPED: 1}
            assert system.audit.counts()[ReasonCode.ACTOR_CRASHED] == 2  # the crash, the failed start


class TestMessagesAndDeadlines:
    async def test_infinite_timeout_is_refused(self):
        """There is no "wait forever": an infinite or NaN deadline is ENVELOPE_INVALID."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            for bad in (float("inf"), float("nan")):
                with pytest.raises(InvalidInput):
                    await ref.tell(Add(1), timeout=bad)
            assert ref.statistics().accepted == 0

    def test_subclass_of_a_message_is_not_a_message_until_decorated(self):
        """A wire name belongs to the decorated class only, not to its subclasses."""
        from exoarmur.runtime import wire_name

        class Sub(Add):
            pass

        with pytest.raises(InvalidInput):
            wire_name(Sub)


class TestCodedAnswers:
    async def test_coded_error_raised_by_a_handler_is_an_answer_not_a_crash(self):
        """A handler raising an ExoarmurError answers the asker with it, audited once; no restart."""
        from exoarmur.runtime import Conflict

        class Store(Counter):
            @handles(Cas)
            def cas(self, message: Cas) -> None:
                raise Conflict(ReasonCode.KV_CONFLICT, "revision 3 != 2")

        async with ActorSystem() as system:
            ref = await system.spawn(Store, name="s", kwargs={"start": 7})
            with pytest.raises(Conflict) as caught:
                await ref.ask(Cas())
            assert caught.value.code is ReasonCode.KV_CONFLICT
            await ref.tell(Cas())  # told: audited, nobody to answer
            assert await ref.ask(Get()) == 7  # same instance, state kept
            assert system.statistics().restarts == 0
            assert system.audit.counts() == {ReasonCode.KV_CONFLICT: 2}

    async def test_raising_actor_crashed_is_a_crash(self):
        """ActorCrashed raised by a handler means the handler crashed: restart, ACTOR_CRASHED."""

        class Quitter(Counter):
            @handles(GiveUp)
            async def give_up(self, message: GiveUp) -> None:
                raise ActorCrashed(ReasonCode.ACTOR_CRASHED, "giving up")

        async with ActorSystem() as system:
            ref = await system.spawn(Quitter, name="q")
            with pytest.raises(ActorCrashed):
                await ref.ask(GiveUp())
            assert await ref.ask(Get()) == 0
            assert system.statistics().restarts == 1
