"""Mailbox: capacity, overflow policies, expiry while queued, control lane, statistics."""

from __future__ import annotations

import math

import anyio
import pytest

from exoarmur.runtime import (
    ActorSystem,
    ActorUnavailable,
    DeadlineExceeded,
    MailboxConfig,
    Overflow,
    Overloaded,
    ReasonCode,
    handles,
    message,
)
from exoarmur.runtime.mailbox import Mailbox, validate_capacity
from tests.runtime.support import Add, Counter, Gate, Get, Hold, blocked_gate, wait_until

pytestmark = pytest.mark.anyio


class TestCapacity:
    @pytest.mark.parametrize("bad", [0, -1, math.inf, -math.inf, math.nan, 2.5, "10", None, True])
    def test_zero_negative_infinite_or_non_int_capacity_is_value_error(self, bad):
        """Capacity must be a positive finite int."""
        with pytest.raises(ValueError):
            validate_capacity(bad)
        with pytest.raises(ValueError):
            Mailbox(capacity=bad, overflow=Overflow.REJECT)

    def test_actor_class_with_bad_capacity_fails_at_definition(self):
        """A class-level capacity of 0 is refused when the class is defined."""
        from exoarmur.runtime import Actor

        with pytest.raises(ValueError):

            class Bad(Actor):
                mailbox_capacity = 0

    async def test_config_override_replaces_class_capacity_for_matching_paths(self):
        """A mailbox override in config wins over the actor class's capacity."""
        overrides = {"small/*": MailboxConfig(capacity=2, overflow="reject")}
        async with ActorSystem(mailboxes=overrides) as system:
            small = await system.spawn(Counter, name="small/one")
            big = await system.spawn(Counter, name="big/one")
            assert small.statistics().capacity == 2
            assert big.statistics().capacity == Counter.mailbox_capacity


    async def test_partial_override_keeps_the_other_setting_from_spawn_or_class(self):
        """An override of capacity only keeps the overflow of the spawn call or the class."""
        overrides = {"small/*": MailboxConfig(capacity=2)}
        async with ActorSystem(mailboxes=overrides) as system:
            small = await system.spawn(Counter, name="small/one", overflow="reject")
            for n in range(2):
                await small.tell(Add(n))
            with pytest.raises(Overloaded):
                await small.tell(Add(2))  # capacity from config, overflow from spawn
            assert small.statistics().capacity == 2


@message("test.kernel.urgent_add")
class UrgentAdd:
    n: int


class UrgentGate(Gate):
    """A Gate whose UrgentAdd is urgent: it ends work taken, say."""

    @handles(UrgentAdd, urgent=True)
    def urgent_add(self, message: UrgentAdd) -> int:
        self.added.append(message.n)
        return len(self.added)


class TestUrgent:
    @pytest.mark.parametrize("overflow", ["reject", "wait", "shed_oldest"])
    async def test_urgent_mail_goes_first_in_its_own_order_and_past_a_full_mailbox(self, overflow):
        """Queued ahead of the ordinary mail; a full mailbox (capacity 3) takes
        it at once, whatever its policy, up to as many again; one more is
        refused; nothing ordinary is shed for it."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(UrgentGate, name="g", kwargs={"release": release}, overflow=overflow)
            await gate.tell(Hold())
            await wait_until(lambda: gate.statistics().depth == 0)
            for n in range(3):
                await gate.tell(Add(n))
            await gate.tell(UrgentAdd(100))
            gate.tell_nowait(UrgentAdd(101))
            await gate.tell(UrgentAdd(102))
            with pytest.raises(Overloaded) as caught:
                gate.tell_nowait(UrgentAdd(103))
            assert caught.value.code is ReasonCode.OVERLOAD_MAILBOX_FULL
            assert gate.statistics().depth == 6
            release.set()
            await wait_until(lambda: gate.statistics().depth == 0)
            assert await gate.ask(Get()) == [100, 101, 102, 0, 1, 2]

    async def test_shed_oldest_sheds_the_oldest_ordinary_envelope_never_an_urgent_one(self):
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(UrgentGate, name="g", kwargs={"release": release}, overflow="shed_oldest")
            await gate.tell(Hold())
            await wait_until(lambda: gate.statistics().depth == 0)
            await gate.tell(UrgentAdd(100))
            for n in range(3):
                await gate.tell(Add(n))  # the third sheds Add(0), not UrgentAdd(100)
            release.set()
            await wait_until(lambda: gate.statistics().depth == 0)
            assert await gate.ask(Get()) == [100, 1, 2]
            assert gate.statistics().shed == 1

    def test_an_override_without_urgent_is_ordinary_again(self):
        class Calm(UrgentGate):
            @handles(UrgentAdd)
            def urgent_add(self, message: UrgentAdd) -> int:
                return 0

        assert UrgentGate._urgent == {UrgentAdd} and Calm._urgent == frozenset()


class TestRejectPolicy:
    async def test_full_mailbox_rejects_at_once_with_overload_code(self):
        """Policy reject: the send past capacity raises OVERLOAD_MAILBOX_FULL at once."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c", capacity=3, overflow="reject")
            for n in range(3):
                await ref.tell(Add(n))  # no yield: the drain has not run yet
            with pytest.raises(Overloaded) as caught:
                await ref.tell(Add(99))
            assert caught.value.code is ReasonCode.OVERLOAD_MAILBOX_FULL
            stats = ref.statistics()
            assert (stats.accepted, stats.rejected, stats.depth) == (3, 1, 3)
            await wait_until(lambda: ref.statistics().depth == 0)
            assert await ref.ask(Get()) == 0 + 1 + 2
            assert system.audit.counts()[ReasonCode.OVERLOAD_MAILBOX_FULL] == 1


class TestWaitPolicy:
    async def test_full_mailbox_makes_sender_wait_until_room(self, tick):
        """Policy wait: the sender blocks while full and is delivered once a slot frees."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(Gate, name="g", kwargs={"release": release}, overflow="wait")
            await gate.tell(Hold())
            await wait_until(lambda: gate.statistics().depth == 0)  # Hold is being handled
            for n in range(3):
                await gate.tell(Add(n))
            delivered = anyio.Event()

            async def late_sender():
                await gate.tell(Add(3), timeout=10 * tick)
                delivered.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(late_sender)
                await wait_until(lambda: gate.statistics().waiting_senders == 1)
                assert not delivered.is_set()
                release.set()
            assert delivered.is_set()
            assert await gate.ask(Get()) == [0, 1, 2, 3]

    async def test_waiting_sender_gets_deadline_code_at_its_deadline(self, tick, anyio_backend_name):
        """Policy wait: no room before the sender's deadline -> DEADLINE_EXCEEDED, nothing enqueued."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await blocked_gate(system, release, overflow="wait")
            start = system.now()
            with pytest.raises(DeadlineExceeded) as caught:
                await gate.tell(Add(3), timeout=2 * tick)
            elapsed = system.now() - start
            assert caught.value.code is ReasonCode.DEADLINE_EXCEEDED
            if anyio_backend_name == "trio":
                assert elapsed == pytest.approx(2 * tick)
            else:
                assert 2 * tick <= elapsed < 2 * tick + 0.5
            assert gate.statistics().depth == 3
            assert gate.statistics().waiting_senders == 0
            assert system.audit.counts()[ReasonCode.DEADLINE_EXCEEDED] == 1
            release.set()
            assert await gate.ask(Get()) == [0, 1, 2]

    async def test_waiting_senders_are_served_in_fifo_order(self, tick):
        """Policy wait: senders blocked on a full mailbox enter it in the order they came."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await blocked_gate(system, release, overflow="wait")
            async with anyio.create_task_group() as tg:
                for n in range(3, 8):
                    tg.start_soon(lambda n=n: gate.tell(Add(n), timeout=10 * tick))
                    await wait_until(lambda n=n: gate.statistics().waiting_senders == n - 2)
                release.set()
            assert await gate.ask(Get()) == list(range(8))

    async def test_shutdown_wakes_waiting_senders_with_shutting_down(self, tick):
        """A sender waiting for room when the system stops gets SHUTTING_DOWN, not a hang."""
        release = anyio.Event()
        outcome: list[object] = []
        async with ActorSystem(stop_timeout=tick) as system:
            gate = await blocked_gate(system, release, overflow="wait")

            async def blocked_sender():
                try:
                    await gate.tell(Add(3), timeout=100 * tick)
                except ActorUnavailable as exc:
                    outcome.append(exc.code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(blocked_sender)
                await wait_until(lambda: gate.statistics().waiting_senders == 1)
                await system.shutdown()
        assert outcome == [ReasonCode.SHUTTING_DOWN]


class TestShedOldestPolicy:
    async def test_full_mailbox_sheds_oldest_and_dead_letters_it_with_code(self):
        """Policy shed_oldest: the oldest queued envelopes are dead-lettered with OVERLOAD_SHED."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c", capacity=3, overflow="shed_oldest")
            for n in range(1, 6):
                await ref.tell(Add(n))
            assert ref.statistics().shed == 2
            assert system.dead_letters.count(ReasonCode.OVERLOAD_SHED) == 2
            shed = [d.envelope.message.n for d in system.dead_letters.recent()]
            assert shed == [1, 2]
            await wait_until(lambda: ref.statistics().depth == 0)
            assert await ref.ask(Get()) == 3 + 4 + 5
            assert system.audit.counts()[ReasonCode.OVERLOAD_SHED] == 2

    async def test_asker_of_a_shed_envelope_is_told_at_once(self, tick):
        """Policy shed_oldest: an asker whose envelope is shed gets OVERLOAD_SHED immediately."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(
                Gate, name="g", kwargs={"release": release}, overflow="shed_oldest"
            )
            await gate.tell(Hold())
            await wait_until(lambda: gate.statistics().depth == 0)
            results: list[object] = []

            async def asker():
                try:
                    await gate.ask(Add(100), timeout=100 * tick)
                except Overloaded as exc:
                    results.append((exc.code, system.now()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(asker)
                await wait_until(lambda: gate.statistics().depth == 1)
                for n in range(3):
                    gate.tell_nowait(Add(n))  # the third sheds the ask
                shed_at = system.now()
            release.set()
            [(code, told_at)] = results
            assert code is ReasonCode.OVERLOAD_SHED
            assert told_at - shed_at < tick / 10
            await wait_until(lambda: gate.statistics().depth == 0)
            assert await gate.ask(Get()) == [0, 1, 2]
            assert system.audit.counts()[ReasonCode.OVERLOAD_SHED] == 1


class TestExpiryWhileQueued:
    async def test_envelope_expired_in_queue_is_dead_lettered_not_handled(self, tick):
        """A tell whose deadline passes while queued never reaches its handler."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(Gate, name="g", kwargs={"release": release})
            await gate.tell(Hold())
            await wait_until(lambda: gate.statistics().depth == 0)
            await gate.tell(Add(1), timeout=tick)
            await gate.tell(Add(2), timeout=100 * tick)
            await anyio.sleep(2 * tick)
            release.set()
            assert await gate.ask(Get()) == [2]
            assert gate.statistics().expired == 1
            assert system.dead_letters.count(ReasonCode.DEADLINE_EXCEEDED) == 1
            assert system.audit.counts()[ReasonCode.DEADLINE_EXCEEDED] == 1

    async def test_asker_of_a_queued_envelope_is_told_at_its_deadline(self, tick, anyio_backend_name):
        """An ask stuck in the queue fails at its deadline with DEADLINE_EXCEEDED, audited once."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(Gate, name="g", kwargs={"release": release})
            await gate.tell(Hold())
            await wait_until(lambda: gate.statistics().depth == 0)
            start = system.now()
            with pytest.raises(DeadlineExceeded) as caught:
                await gate.ask(Add(1), timeout=tick)
            elapsed = system.now() - start
            assert caught.value.code is ReasonCode.DEADLINE_EXCEEDED
            if anyio_backend_name == "trio":
                assert elapsed == pytest.approx(tick)
            else:
                assert tick <= elapsed < tick + 0.5
            release.set()
            assert await gate.ask(Get()) == []
            # Dead-lettered when dequeued, but the asker's failure was its one audit event.
            assert system.dead_letters.count(ReasonCode.DEADLINE_EXCEEDED) == 1
            assert system.audit.counts()[ReasonCode.DEADLINE_EXCEEDED] == 1


class TestControlLane:
    async def test_stop_gets_through_a_full_mailbox(self, tick):
        """A stop signal is not queued behind user mail: a full, blocked actor still stops on time."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(Gate, name="g", kwargs={"release": release}, overflow="reject")
            hold = None

            async def holder():
                nonlocal hold
                try:
                    await gate.ask(Hold(), timeout=100 * tick)
                except ActorUnavailable as exc:
                    hold = exc.code

            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await wait_until(lambda: gate.statistics().processed == 1)
                for n in range(3):
                    await gate.tell(Add(n))
                with pytest.raises(Overloaded):
                    await gate.tell(Add(9))
                start = system.now()
                await system.stop(gate, timeout=tick)
                assert system.now() - start < 2 * tick + 1.0
            assert hold is ReasonCode.ACTOR_STOPPED
            assert system.dead_letters.count(ReasonCode.ACTOR_STOPPED) == 3
            with pytest.raises(ActorUnavailable) as caught:
                await gate.tell(Add(10))
            assert caught.value.code is ReasonCode.ACTOR_STOPPED


class TestStatistics:
    async def test_statistics_count_every_envelope_once(self, tick):
        """Each envelope is counted once: accepted = processed + expired + depth; refusals apart."""
        release = anyio.Event()
        async with ActorSystem() as system:
            gate = await system.spawn(Gate, name="g", kwargs={"release": release})
            await gate.tell(Hold())
            await wait_until(lambda: gate.statistics().depth == 0)
            await gate.tell(Add(1), timeout=tick)
            await gate.tell(Add(2))
            await gate.tell(Add(3))
            with pytest.raises(Overloaded) as caught:
                gate.tell_nowait(Add(4))  # policy wait, but a nowait send cannot wait
            assert caught.value.code is ReasonCode.OVERLOAD_MAILBOX_FULL
            assert gate.statistics().depth == 3
            await anyio.sleep(2 * tick)
            release.set()
            assert await gate.ask(Get()) == [2, 3]
            stats = gate.statistics()
        assert (stats.capacity, stats.depth, stats.waiting_senders) == (3, 0, 0)
        assert (stats.accepted, stats.rejected) == (5, 1)  # Hold, Add x3, Get; Add(4)
        assert (stats.processed, stats.expired, stats.shed) == (4, 1, 0)
