"""Signals (runtime messages ahead of user mail, outside the capacity) and hosts
(task groups for a supervisor's children)."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, ReasonCode, handles, message
from tests.runtime.support import Add, Counter, Get, instance_of, wait_until

pytestmark = pytest.mark.anyio


def inbox_of(ref):
    """The inbox of the instance running now behind `ref`."""
    return instance_of(ref).context.inbox()


@message("test.kernel.signals.ping")
class Ping:
    n: int


class Listener(Counter):
    mailbox_capacity = 2
    overflow = "reject"

    def __init__(self, *, start: int = 0) -> None:
        super().__init__(start=start)
        self.order: list[str] = []

    @handles(Ping)
    def ping(self, message: Ping) -> None:
        self.order.append(f"signal {message.n}")

    @handles(Add)
    def add(self, message: Add) -> int:
        self.order.append(f"add {message.n}")
        return super().add(message)


class TestSignals:
    async def test_signals_go_ahead_of_user_mail_and_past_a_full_mailbox(self):
        """A signal is handled before queued user mail, even when the mailbox is full."""
        async with ActorSystem() as system:
            ref = await system.spawn(Listener, name="l")
            await ref.tell(Add(1))
            await ref.tell(Add(2))  # full (capacity 2), drain not run yet
            inbox_of(ref).signal(Ping(7))
            await wait_until(lambda: len(instance_of(ref).order) == 3)
            assert instance_of(ref).order == ["signal 7", "add 1", "add 2"]
            stats = ref.statistics()
            assert stats.accepted == stats.processed == 3

    async def test_signal_to_a_stopped_actor_is_dead_lettered(self):
        """A signal never vanishes: to a stopped actor it is a dead letter."""
        async with ActorSystem() as system:
            ref = await system.spawn(Listener, name="l")
            inbox = inbox_of(ref)
            await system.stop(ref)
            inbox.signal(Ping(1))
            assert system.dead_letters.counts() == {ReasonCode.ACTOR_STOPPED: 1}

    async def test_signal_without_a_handler_is_a_type_error(self):
        """Signalling a message the actor does not handle is a bug in the runtime, raised at once."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            with pytest.raises(TypeError):
                inbox_of(ref).signal(Ping(1))


@message("test.kernel.signals.hold")
class Hold:
    pass


class Busy(Listener):
    """Listener with a handler that waits for `release`; Ping(-1) raises."""

    def __init__(self, *, release: anyio.Event) -> None:
        super().__init__()
        self.release = release

    @handles(Hold)
    async def hold(self, message: Hold) -> None:
        self.order.append("hold")
        await self.release.wait()
        self.order.append("held")

    @handles(Ping)
    def ping(self, message: Ping) -> None:
        if message.n < 0:
            raise ValueError("signal handler bug")
        self.order.append(f"signal {message.n}")


@message("test.signals.ask_self")
class AskSelf:
    pass


class SelfAsking(Listener):
    """Its signal handler asks its own actor, eagerly: that ask must wait."""

    @handles(AskSelf)
    def ask_self(self, message: AskSelf) -> None:
        self.order.append("signal starts")
        self.context.self_ref.ask_then(Add(1), lambda result: self.order.append("answered"), eager=True)
        self.order.append("signal ends")


class TestSignalNow:
    """A supervisor's one_for_one decision, in the crashed child's stack."""

    async def test_a_handler_run_now_is_not_entered_again_from_inside(self):
        """While a signal runs now, the actor counts as busy: its own eager
        ask inside is queued and handled after, by a drain."""
        async with ActorSystem() as system:
            ref = await system.spawn(SelfAsking, name="s")
            inbox_of(ref).signal_now(AskSelf())
            assert instance_of(ref).order == ["signal starts", "signal ends"]
            await wait_until(lambda: "answered" in instance_of(ref).order)
            assert instance_of(ref).order == ["signal starts", "signal ends", "add 1", "answered"]

    async def test_to_an_idle_actor_it_is_handled_before_the_call_returns(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Busy, name="b", kwargs={"release": anyio.Event()})
            inbox_of(ref).signal_now(Ping(1))
            assert instance_of(ref).order == ["signal 1"]
            stats = ref.statistics()
            assert stats.accepted == stats.processed == 1

    async def test_to_a_busy_actor_it_waits_until_the_handler_under_way_ends(self):
        """Never inside another handler of the actor: a handler under way (here
        waiting), or mail queued, and the signal is queued as `signal` queues it."""
        release = anyio.Event()
        async with ActorSystem() as system:
            ref = await system.spawn(Busy, name="b", kwargs={"release": release})
            await ref.tell(Hold())
            await wait_until(lambda: instance_of(ref).order == ["hold"])
            await ref.tell(Add(1))
            inbox_of(ref).signal_now(Ping(2))
            assert instance_of(ref).order == ["hold"]
            release.set()
            await wait_until(lambda: len(instance_of(ref).order) == 4)
            order = instance_of(ref).order
            assert order[:2] == ["hold", "held"] and sorted(order[2:]) == ["add 1", "signal 2"]

    async def test_a_raising_handler_crashes_the_instance_not_the_caller(self):
        async with ActorSystem() as system:
            ref = await system.spawn(Busy, name="b", kwargs={"release": anyio.Event()})
            first = instance_of(ref)
            inbox_of(ref).signal_now(Ping(-1))  # does not raise here
            await wait_until(lambda: system.statistics().restarts == 1)
            assert instance_of(ref) is not first
            crashes = [e for e in system.audit.events if e.kind == "crashed"]
            assert len(crashes) == 1 and "signal handler bug" in crashes[0].detail


class TestHost:
    async def test_actors_hosted_in_a_closed_host_stop_running(self, tick):
        """Closing a host cancels the drains it hosts and returns only once they ended."""

        class Sleeper(Actor):
            ended = False

            @handles(Get)
            async def get(self, message: Get) -> None:
                try:
                    await anyio.sleep(100 * tick)
                finally:
                    type(self).ended = True

        async with ActorSystem() as system:
            host = await system.open_host("sup")
            ref = (await system.spawn_child(Sleeper, name="sup/s", parent=system, host=host)).ref
            await ref.tell(Get(), timeout=1000 * tick)
            await wait_until(lambda: ref.statistics().processed == 1)
            await host.close()
            assert Sleeper.ended
            await anyio.sleep(tick)  # the system's own block carries on
