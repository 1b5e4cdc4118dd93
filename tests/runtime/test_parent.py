"""The parent protocol: after a crash the actor is SUSPENDED and its parent
decides: resume now, resume later, or stop. The system resumes at once."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import ActorSystem, ActorUnavailable, CellState, ExoarmurError, Overloaded, ReasonCode, handles, message
from exoarmur.runtime.errors import error_for
from tests.runtime.support import Add, Counter, Crash, Get, instance_of, wait_until

pytestmark = pytest.mark.anyio


class RecordingParent:
    """Decides nothing by itself: records crashes; the test resumes or stops."""

    def __init__(self) -> None:
        self.crashes: list[tuple[str, ReasonCode]] = []
        self.cells = []
        self.exits: list[str] = []

    def child_crashed(self, cell, error) -> None:
        self.crashes.append((cell.path, error.code))
        self.cells.append(cell)

    def child_exited(self, cell) -> None:
        self.exits.append(cell.path)


async def spawn_under(system, parent, actor_type, **options):
    """Spawn under `parent` (its drains in a host of their own); the handle."""
    host = await system.open_host(options["name"])
    return await system.spawn_child(actor_type, parent=parent, host=host, **options)


class Hooked(Counter):
    starts = 0

    async def started(self) -> None:
        type(self).starts += 1


class TestParent:
    async def test_crash_suspends_the_actor_and_tells_its_parent(self):
        """A crash moves the actor to SUSPENDED and calls the parent once with ACTOR_CRASHED."""
        parent = RecordingParent()
        async with ActorSystem() as system:
            child = await spawn_under(system, parent, Counter, name="c")
            ref = child.ref
            await ref.tell(Crash())
            await wait_until(lambda: parent.crashes)
            assert parent.crashes == [("c", ReasonCode.ACTOR_CRASHED)]
            assert child.state is CellState.SUSPENDED
            parent.cells[0].resume()

    async def test_mail_sent_to_a_suspended_actor_waits_within_its_policy(self):
        """While suspended, sends queue within capacity (nothing is handled) and overflow is refused."""
        parent = RecordingParent()
        async with ActorSystem() as system:
            child = await spawn_under(system, parent, Counter, name="c", capacity=3, overflow="reject")
            ref = child.ref
            await ref.tell(Crash())
            await wait_until(lambda: parent.crashes)
            for n in (1, 2, 3):
                await ref.tell(Add(n))
            with pytest.raises(Overloaded):
                await ref.tell(Add(4))
            await anyio.sleep(0.01)
            assert ref.statistics().depth == 3
            assert ref.statistics().processed == 1  # only the crash
            parent.cells[0].resume()
            await wait_until(lambda: ref.statistics().depth == 0)
            assert await ref.ask(Get()) == 6

    async def test_resume_makes_a_fresh_instance_and_runs_started_at_once(self):
        """resume() builds a new instance and runs `started` even with an empty mailbox."""
        parent = RecordingParent()
        Hooked.starts = 0
        async with ActorSystem() as system:
            child = await spawn_under(system, parent, Hooked, name="h", kwargs={"start": 5})
            ref = child.ref
            await ref.tell(Add(1))
            await ref.tell(Crash())
            await wait_until(lambda: parent.crashes)
            crashed = instance_of(ref)
            parent.cells[0].resume()
            await wait_until(lambda: Hooked.starts == 2)
            assert instance_of(ref) is not crashed
            assert system.info(ref.path).restarts == 1
            assert await ref.ask(Get()) == 5

    async def test_stopping_a_suspended_actor_dead_letters_its_mail(self):
        """A suspended actor that is stopped handles nothing: its queue is dead-lettered with ACTOR_STOPPED."""
        parent = RecordingParent()
        async with ActorSystem() as system:
            child = await spawn_under(system, parent, Counter, name="c")
            ref = child.ref
            await ref.tell(Crash())
            await wait_until(lambda: parent.crashes)
            for n in range(3):
                await ref.tell(Add(n))
            await system.stop(ref)
            assert system.dead_letters.counts() == {ReasonCode.ACTOR_STOPPED: 3}
            assert parent.exits == ["c"]
            with pytest.raises(ActorUnavailable):
                await ref.tell(Add(9))

    async def test_shutdown_with_a_suspended_actor_loses_nothing(self):
        """Shutting the system down while an actor is suspended dead-letters its queue with SHUTTING_DOWN."""
        parent = RecordingParent()
        async with ActorSystem() as system:
            child = await spawn_under(system, parent, Counter, name="c")
            ref = child.ref
            await ref.tell(Crash())
            await wait_until(lambda: parent.crashes)
            for n in range(4):
                await ref.tell(Add(n))
        assert system.dead_letters.counts() == {ReasonCode.SHUTTING_DOWN: 4}
        stats = ref.statistics()
        assert stats.accepted == stats.processed + 4

    async def test_system_as_parent_resumes_at_once(self):
        """Without a supervisor the system resumes a crashed actor immediately (Akka's default)."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c", kwargs={"start": 1})
            await ref.tell(Crash())
            assert await ref.ask(Get()) == 1
            assert system.info("c").state is CellState.RUNNING
            assert system.statistics().restarts == 1


class BuiltOnce(Counter):
    """The first instance builds; every fresh one after a crash raises what
    `failure()` makes in __init__. `Hooked` below adds a `started` hook, which takes the drain's
    other way to a fresh instance (awaited at its loop top)."""

    failure = staticmethod(lambda: RuntimeError("cannot build"))
    built = 0

    def __init__(self, **kwargs) -> None:
        if type(self).built:
            raise type(self).failure()
        type(self).built += 1
        super().__init__(**kwargs)


class BuiltOnceHooked(BuiltOnce):
    async def started(self) -> None:
        pass


class TestFreshInstance:
    @pytest.mark.parametrize("actor", [Counter, Hooked])
    async def test_mail_queued_behind_a_crash_is_handled_by_the_fresh_instance(self, actor):
        """The crash's envelope is not redelivered; what was queued behind it
        goes to the fresh instance, in order, in the same turn or the next."""
        async with ActorSystem() as system:
            ref = await system.spawn(actor, name="c")
            for m in (Add(1), Crash(), Add(2), Add(3)):
                ref.tell_nowait(m)
            assert await ref.ask(Get()) == 5
            assert instance_of(ref).seen == [2, 3]
            assert system.statistics().restarts == 1
            assert system.audit.counts() == {ReasonCode.ACTOR_CRASHED: 1}

    @pytest.mark.parametrize("actor", [BuiltOnce, BuiltOnceHooked])
    @pytest.mark.parametrize(
        "failure, code",
        [
            (lambda: RuntimeError("cannot build"), ReasonCode.ACTOR_CRASHED),
            (lambda: error_for(ReasonCode.TIMEOUT_NATS_CONNECT, "no server"), ReasonCode.TIMEOUT_NATS_CONNECT),
        ],
    )
    async def test_a_fresh_instance_that_cannot_be_built_is_a_failure_of_its_own(self, actor, failure, code):
        """__init__ failing after a crash is audited once (a coded error keeps its
        code) and the system, as parent, stops the actor: what was queued is
        dead-lettered with ACTOR_STOPPED, nothing is handled by a dead instance."""
        actor.built, actor.failure = 0, staticmethod(failure)
        async with ActorSystem() as system:
            ref = await system.spawn(actor, name="c")
            for m in (Add(1), Crash(), Add(2), Add(3)):
                ref.tell_nowait(m)
            await wait_until(lambda: "c" not in system.paths())  # stopped: unregistered
            assert instance_of(ref).seen == [1]
        assert [(e.kind, e.code) for e in system.audit.events] == [
            ("crashed", ReasonCode.ACTOR_CRASHED),
            ("crashed", code),
            ("dead_letter", ReasonCode.ACTOR_STOPPED),
            ("dead_letter", ReasonCode.ACTOR_STOPPED),
        ]
        assert system.dead_letters.counts() == {ReasonCode.ACTOR_STOPPED: 2}


@message("test.parent.late_crash")
class LateCrash:
    """Crash after `seconds`: a handler that began before a stop or a suspend."""

    seconds: float


class LateCrasher(Counter):
    @handles(LateCrash)
    async def late_crash(self, message: LateCrash) -> None:
        await anyio.sleep(message.seconds)
        raise RuntimeError("crashed after the stop began")


class LateCrasherConcurrent(Counter):
    @handles(LateCrash, concurrent=True)
    async def late_crash(self, message: LateCrash) -> None:
        await anyio.sleep(message.seconds)
        raise RuntimeError("crashed after the stop began")


class TestCrashWhileStopping:
    @pytest.mark.parametrize("actor", [LateCrasher, LateCrasherConcurrent])
    async def test_a_crash_after_the_stop_began_ends_the_instance_and_the_stop_goes_on(self, actor, tick):
        """The crash is audited once and its asker told ACTOR_CRASHED; nothing
        is restarted; what was still queued is dead-lettered with the stop's
        code; the stop ends and the system runs on."""
        async with ActorSystem() as system:
            ref = await system.spawn(actor, name="c")
            async with anyio.create_task_group() as tg:
                codes: list = []

                async def ask() -> None:
                    try:
                        await ref.ask(LateCrash(2 * tick), timeout=100 * tick)
                    except ExoarmurError as exc:
                        codes.append(exc.code)

                tg.start_soon(ask)
                await wait_until(lambda: ref.statistics().processed == 1)
                ref.tell_nowait(Add(1))
                await system.stop(ref, timeout=50 * tick)
            assert codes == [ReasonCode.ACTOR_CRASHED]
            assert "c" not in system.paths()  # stopped: unregistered
            assert system.statistics().restarts == 0
            # The sequential handler held the drain, so the Add waited and was
            # dead-lettered; beside a concurrent one the drain had taken it.
            queued_at_stop = {} if actor is LateCrasherConcurrent else {ReasonCode.ACTOR_STOPPED: 1}
            assert system.dead_letters.counts() == queued_at_stop
            other = await system.spawn(Counter, name="other")
            assert await other.ask(Add(2)) == 2
        assert system.audit.counts()[ReasonCode.ACTOR_CRASHED] == 1

    async def test_a_suspended_actor_left_at_an_error_in_the_body_is_swept(self):
        """The block's own exception propagates as itself, and an actor its
        parent never resumed ends STOPPED, its mail dead-lettered."""
        parent = RecordingParent()
        with pytest.raises(KeyError):
            async with ActorSystem() as system:
                child = await spawn_under(system, parent, Counter, name="c")
                ref = child.ref
                await ref.tell(Crash())
                await wait_until(lambda: parent.crashes)
                await ref.tell(Add(1))
                raise KeyError("boom")
        assert child.state is CellState.STOPPED
        assert system.dead_letters.counts() == {ReasonCode.SHUTTING_DOWN: 1}
