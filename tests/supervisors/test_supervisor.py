"""The Supervisor actor: ordered start, strategies, restart types, intensity and
escalation, backoff, shutdown order, and mail kept across restarts."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, ReasonCode, handles, message
from exoarmur.supervisors.backoff import BackoffPolicy
from exoarmur.supervisors.intensity import RestartIntensity
from exoarmur.supervisors.spec import ChildSpec, Restart, Strategy, SupervisorSpec
from exoarmur.supervisors import ChildState, Supervisor
from tests.runtime.support import cell_of, instance_of, wait_until

pytestmark = pytest.mark.anyio


@message("test.sup.work")
class Work:
    n: int


@message("test.sup.boom")
class Boom:
    pass


@message("test.sup.seen")
class Seen:
    pass


@message("test.sup.hang")
class Hang:
    pass


@message("test.sup.late_boom")
class LateBoom:
    """Crash after `seconds`: a handler already running when its parent acts."""

    seconds: float


class Worker(Actor):
    """Records lifecycle events in a shared journal: (event, name, instance id)."""

    mailbox_capacity = 10

    def __init__(self, *, name: str, journal: list) -> None:
        self.name = name
        self.journal = journal
        self.handled: list[int] = []

    async def started(self) -> None:
        self.journal.append(("started", self.name, id(self), self.context.now()))

    async def stopping(self) -> None:
        self.journal.append(("stopping", self.name, id(self), self.context.now()))

    @handles(Work)
    def work(self, message: Work) -> int:
        self.handled.append(message.n)
        return message.n

    @handles(Boom)
    def boom(self, message: Boom) -> None:
        raise RuntimeError(f"{self.name} asked to crash")

    @handles(Seen)
    def seen(self, message: Seen) -> list[int]:
        return list(self.handled)

    @handles(Hang)
    async def hang(self, message: Hang) -> None:
        await anyio.sleep_forever()

    @handles(LateBoom)
    async def late_boom(self, message: LateBoom) -> None:
        await anyio.sleep(message.seconds)
        raise RuntimeError(f"{self.name} crashed late")


def worker(name: str, journal: list, **options) -> ChildSpec:
    return ChildSpec(name, Worker, kwargs={"name": name, "journal": journal}, **options)


def events(journal: list, kind: str) -> list[str]:
    return [name for event, name, *_ in journal if event == kind]


def instance(system: ActorSystem, path: str) -> Actor:
    return instance_of(system.lookup(path))


async def crash(system: ActorSystem, path: str) -> None:
    await system.lookup(path).tell(Boom())


class TestStartAndStop:
    async def test_children_start_in_order_and_stop_in_reverse(self):
        """Children start in spec order at <supervisor>/<name>; they stop newest first."""
        journal: list = []
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=tuple(worker(n, journal) for n in "abc"))
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            assert events(journal, "started") == ["a", "b", "c"]
            assert set(system.paths()) == {"sup", "sup/a", "sup/b", "sup/c"}
        assert events(journal, "stopping") == ["c", "b", "a"]
        assert system.paths() == []


class TestStrategies:
    @pytest.mark.parametrize(
        ("strategy", "restarted", "wound_down"),
        [
            (Strategy.ONE_FOR_ONE, ["b"], []),
            (Strategy.ONE_FOR_ALL, ["a", "b", "c"], ["c", "a"]),
            (Strategy.REST_FOR_ONE, ["b", "c"], ["c"]),
        ],
    )
    async def test_strategy_restarts_exactly_its_children_in_start_order(self, strategy, restarted, wound_down):
        """b crashes: the strategy's children are fresh instances, started in start order;
        healthy siblings among them are wound down newest first; the others keep their instance."""
        journal: list = []
        spec = SupervisorSpec(strategy, children=tuple(worker(n, journal) for n in "abc"))
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            before = {n: id(instance(system, f"sup/{n}")) for n in "abc"}
            journal.clear()
            await crash(system, "sup/b")
            await wait_until(lambda: len(events(journal, "started")) == len(restarted))
            assert events(journal, "started") == restarted
            assert events(journal, "stopping") == wound_down  # the crashed b runs no hook
            for n in "abc":
                changed = id(instance(system, f"sup/{n}")) != before[n]
                assert changed == (n in restarted), n
            assert instance_of(sup).child_states() == dict.fromkeys("abc", ChildState.RUNNING)
            assert system.audit.counts() == {ReasonCode.ACTOR_CRASHED: 1}


    @pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
    async def test_a_sibling_crashing_while_it_is_wound_down_is_restarted_with_the_group(self, strategy, tick):
        """c's handler began before b crashed and raises while c is being wound
        down: the crash is audited and ends c's instance, the wind-down ends
        there, and the group's restart goes on: every child answers again."""
        journal: list = []
        spec = SupervisorSpec(
            strategy, children=(worker("a", journal), worker("b", journal), worker("c", journal, shutdown=50 * tick))
        )
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            await system.lookup("sup/c").tell(LateBoom(2 * tick))
            await wait_until(lambda: system.lookup("sup/c").statistics().processed == 1)
            await crash(system, "sup/b")
            for n, name in enumerate("abc"):
                assert await system.lookup(f"sup/{name}").ask(Work(n), timeout=20 * tick) == n
            assert instance_of(sup).child_states() == dict.fromkeys("abc", ChildState.RUNNING)
            assert system.audit.counts() == {ReasonCode.ACTOR_CRASHED: 2}
            assert "c" not in events(journal, "stopping")  # a crashed instance runs no hook


class TestRestartTypes:
    @pytest.mark.parametrize(
        ("restart", "comes_back"),
        [(Restart.PERMANENT, True), (Restart.TRANSIENT, True), (Restart.TEMPORARY, False)],
    )
    async def test_crashed_child_comes_back_unless_temporary(self, restart, comes_back):
        """After a crash (abnormal exit) permanent and transient children restart; a temporary one is removed."""
        journal: list = []
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(worker("a", journal, restart=restart),))
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            await crash(system, "sup/a")
            if comes_back:
                await wait_until(lambda: len(events(journal, "started")) == 2)
                assert await system.lookup("sup/a").ask(Work(1)) == 1
            else:
                await wait_until(lambda: "sup/a" not in system.paths())
                assert events(journal, "started") == ["a"]

    async def test_an_idle_supervisor_decides_in_the_crashed_childs_stack(self):
        """one_for_one with an idle supervisor: the decision (and the resume)
        is made before the crash's asker hears of it, with no pass of the
        supervisor's own; the child's mail is then handled by a fresh instance."""
        journal: list = []
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(worker("a", journal),))
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            supervisor = cell_of(system.lookup("sup"))
            await wait_until(lambda: not supervisor.scheduled)
            handled = system.info("sup").mailbox.processed
            with pytest.raises(Exception, match="asked to crash"):
                await system.lookup("sup/a").ask(Boom())
            assert system.info("sup/a").restarts == 1 and system.info("sup").mailbox.processed == handled + 1
            assert await system.lookup("sup/a").ask(Work(1)) == 1
            assert len(events(journal, "started")) == 2

    async def test_temporary_sibling_is_removed_not_restarted_in_one_for_all(self):
        """one_for_all: a temporary sibling caught in the restart is stopped and removed (OTP)."""
        journal: list = []
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ALL,
            children=(worker("a", journal, restart=Restart.TEMPORARY), worker("b", journal)),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            journal.clear()
            await crash(system, "sup/b")
            await wait_until(lambda: events(journal, "started") == ["b"])
            assert "sup/a" not in system.paths()


class TestMailAcrossRestarts:
    async def test_mail_queued_while_down_is_handled_by_the_fresh_instance(self, tick):
        """The crashed envelope is not redelivered; mail sent while the child backs off is kept and handled after."""
        journal: list = []
        backoff = BackoffPolicy(initial=5 * tick, factor=1.0, max_delay=5 * tick, jitter=0.0)
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(worker("a", journal, backoff=backoff),))
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            ref = system.lookup("sup/a")
            await ref.tell(Boom())
            for n in range(3):
                await ref.tell(Work(n), timeout=100 * tick)
            await anyio.sleep(tick)
            assert ref.statistics().depth == 3  # backing off: kept, not handled
            assert await ref.ask(Seen(), timeout=100 * tick) == [0, 1, 2]
            assert system.dead_letters.total == 0

    async def test_a_crash_looping_child_does_not_stop_its_siblings(self, tick):
        """While one child crashes again and again, its sibling keeps handling its mail."""
        journal: list = []
        backoff = BackoffPolicy(initial=tick, factor=1.0, max_delay=tick, jitter=0.0)
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(1000, 10.0),
            children=(worker("loop", journal, backoff=backoff), worker("calm", journal)),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            calm = system.lookup("sup/calm")
            looping = system.lookup("sup/loop")
            for n in range(20):
                await looping.tell(Boom(), timeout=1000 * tick)
                assert await calm.ask(Work(n)) == n
            assert len(await calm.ask(Seen())) == 20


class TestBackoff:
    async def test_restarts_wait_the_exponential_backoff(self, tick, anyio_backend_name):
        """Consecutive crashes are restarted after 1, 2, 4 ticks (jitter 0): measured on the clock."""
        journal: list = []
        backoff = BackoffPolicy(initial=tick, factor=2.0, max_delay=100 * tick, jitter=0.0)
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(10, 1000 * tick),
            children=(worker("a", journal, backoff=backoff),),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            gaps = []
            for expected in (1, 2, 4):
                crashed_at = system.now()
                await crash(system, "sup/a")
                count = len(events(journal, "started"))
                await wait_until(lambda: len(events(journal, "started")) == count + 1, timeout=100 * tick)
                gaps.append(journal[-1][3] - crashed_at)
            if anyio_backend_name == "trio":
                assert gaps == pytest.approx([tick, 2 * tick, 4 * tick], abs=0.01 * tick)
            else:
                for gap, expected in zip(gaps, (1, 2, 4)):
                    assert expected * tick <= gap < expected * tick + 0.1


class TestIntensity:
    async def test_too_many_restarts_escalate_through_two_levels_and_fail_the_system(self):
        """More than max_restarts within the window: the supervisor fails with ESCALATED to its
        parent supervisor, which (intensity 0) fails to the system: fatal, the chain in the detail."""
        journal: list = []
        inner = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(2, 60.0),
            children=(worker("w", journal),),
        )
        outer = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(0, 60.0),
            children=(ChildSpec("inner", Supervisor, kwargs={"spec": inner}),),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="root", kwargs={"spec": outer})
            for _ in range(3):
                await wait_until(lambda: "root/inner/w" in system.paths())
                await crash(system, "root/inner/w")
                await wait_until(lambda: len(events(journal, "started")) >= 1)
                await anyio.sleep(0.01)
            with anyio.fail_after(10):
                await system.failed.wait()
            assert system.fatal is not None and system.fatal.code is ReasonCode.ESCALATED
            assert "root" in system.fatal.detail and "root/inner" in system.fatal.detail
            counts = system.audit.counts()
            assert counts[ReasonCode.ACTOR_CRASHED] == 3
            assert counts[ReasonCode.ESCALATED] == 2  # inner, then root
        assert system.paths() == []


class TestDynamicChildren:
    async def test_start_child_adds_a_supervised_child_and_terminate_child_removes_it(self):
        """start_child (per key) starts a supervised child after the others; terminate_child stops and forgets it."""
        from exoarmur.runtime import InvalidInput
        from exoarmur.supervisors import StartChild, TerminateChild

        journal: list = []
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(worker("a", journal),))
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            ref = await sup.ask(StartChild(worker("tenant-acme", journal)))
            assert ref.path == "sup/tenant-acme"
            assert await ref.ask(Work(5)) == 5
            with pytest.raises(InvalidInput):
                await sup.ask(StartChild(worker("tenant-acme", journal)))
            await ref.tell(Boom())  # supervised like the others
            await wait_until(lambda: events(journal, "started").count("tenant-acme") == 2)
            assert await sup.ask(TerminateChild("tenant-acme")) is True
            assert await sup.ask(TerminateChild("tenant-acme")) is False
            assert "sup/tenant-acme" not in system.paths()
        assert events(journal, "stopping")[-1] == "a"

    async def test_a_child_that_cannot_start_is_the_askers_error_not_the_supervisors_crash(self):
        """start_child of a child whose `started` raises answers ACTOR_CRASHED;
        the supervisor lives on with its other children, the name is free again,
        and a later crash of a sibling is still restarted."""
        from exoarmur.runtime import ActorCrashed
        from exoarmur.supervisors import StartChild

        class Unstartable(Worker):
            async def started(self) -> None:
                raise RuntimeError("cannot start")

        journal: list = []
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(worker("a", journal),))
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            bad = ChildSpec("b", Unstartable, kwargs={"name": "b", "journal": journal})
            with pytest.raises(ActorCrashed):
                await sup.ask(StartChild(bad))
            assert system.info("sup").restarts == 0
            assert "sup/b" not in system.paths()
            assert (await sup.ask(StartChild(worker("b", journal)))).path == "sup/b"
            await crash(system, "sup/a")
            await wait_until(lambda: events(journal, "started").count("a") == 2)
            assert await system.lookup("sup/a").ask(Work(3)) == 3


class TestIntrospection:
    async def test_tree_is_described_as_data_with_states_restarts_and_mailboxes(self):
        """describe_system gives each node's path, type, state, restart count and mailbox."""
        from exoarmur.supervisors import describe_system

        journal: list = []
        inner = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(worker("w", journal),))
        outer = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            children=(worker("a", journal), ChildSpec("inner", Supervisor, kwargs={"spec": inner})),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="root", kwargs={"spec": outer})
            await crash(system, "root/a")
            await wait_until(lambda: events(journal, "started").count("a") == 2)
            [root] = await describe_system(system)
            assert (root.path, root.actor, root.state) == ("root", "Supervisor", "running")
            a, inner_node = root.children
            assert (a.path, a.actor, a.state, a.restarts, a.capacity) == ("root/a", "Worker", "running", 1, 10)
            assert [c.path for c in inner_node.children] == ["root/inner/w"]
            text = root.render()
            assert text.splitlines()[2] == "  root/inner [Supervisor] running restarts=0 mailbox=0/100"
            assert text.splitlines()[3].startswith("    root/inner/w [Worker] running")


@message("test.sup.quit")
class Quit:
    pass


class Quitter(Worker):
    @handles(Quit)
    def quit(self, message: Quit) -> None:
        self.context.stop()


class TestNormalExit:
    @pytest.mark.parametrize(
        ("restart", "comes_back"),
        [(Restart.PERMANENT, True), (Restart.TRANSIENT, False), (Restart.TEMPORARY, False)],
    )
    async def test_normal_exit_restarts_only_a_permanent_child(self, restart, comes_back):
        """A child that stops itself is started again only if permanent; transient and temporary go away."""
        journal: list = []
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            children=(
                ChildSpec("q", Quitter, kwargs={"name": "q", "journal": journal}, restart=restart),
                worker("after", journal),
            ),
        )
        async with ActorSystem() as system:
            sup = await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            await system.lookup("sup/q").tell(Quit())
            if comes_back:
                await wait_until(lambda: events(journal, "started").count("q") == 2)
                assert await system.lookup("sup/q").ask(Work(3)) == 3
                assert list(instance_of(sup).child_states()) == ["q", "after"]  # keeps its place
            else:
                await wait_until(lambda: "sup/q" not in system.paths())
                await anyio.sleep(0.01)
                assert events(journal, "started").count("q") == 1
                assert list(instance_of(sup).child_states()) == ["after"]
            assert system.audit.counts().get(ReasonCode.ACTOR_CRASHED, 0) == 0

    async def test_children_stopped_by_a_system_shutdown_are_not_restarted(self):
        """When the whole system stops, permanent children stop for good."""
        journal: list = []
        spec = SupervisorSpec(Strategy.ONE_FOR_ALL, children=tuple(worker(n, journal) for n in "ab"))
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
        assert events(journal, "started") == ["a", "b"]
        assert events(journal, "stopping") == ["b", "a"]


class Stubborn(Worker):
    """Its `stopping` hook never returns on its own."""

    async def stopping(self) -> None:
        self.journal.append(("stopping", self.name, id(self), self.context.now()))
        await anyio.sleep_forever()


class TestShutdownTimeouts:
    async def test_a_child_that_ignores_its_stop_is_cancelled_after_its_shutdown_timeout(self, tick):
        """Shutdown asks, waits the child's shutdown timeout, then cancels: a hanging handler and a
        hanging `stopping` hook both end by then, and the siblings still stop in reverse order."""
        journal: list = []
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            children=(
                worker("first", journal),
                ChildSpec("stubborn", Stubborn, kwargs={"name": "stubborn", "journal": journal}, shutdown=3 * tick),
            ),
        )
        async with ActorSystem(stop_timeout=100 * tick) as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            stubborn = system.lookup("sup/stubborn")
            await stubborn.tell(Hang(), timeout=1000 * tick)
            await wait_until(lambda: stubborn.statistics().processed == 1)
            start = system.now()
            await system.stop(system.lookup("sup"))
            elapsed = system.now() - start
        assert events(journal, "stopping") == ["stubborn", "first"]
        assert 3 * tick <= elapsed < 3 * tick + 1.0
        assert system.paths() == []


@message("test.sup.charge")
class Charge:
    amount: int


class FlakyEffector(Worker):
    """Crashes on the first two attempts of a Charge, succeeds on the third."""

    @handles(Charge)
    def charge(self, message: Charge) -> None:
        env = self.context.envelope
        self.journal.append(("charge", self.name, env.attempt, env.idempotency_key))
        if env.attempt < 3:
            raise RuntimeError(f"effector timeout on attempt {env.attempt}")


class TestRedelivery:
    async def test_crashed_envelope_with_a_key_is_retried_by_the_fresh_instance(self, tick):
        """With a retry policy, an envelope with an idempotency key is redelivered (attempt + 1)
        after each crash until it succeeds; each retry audited; without a key it is not."""
        from exoarmur.runtime import RetryPolicy

        journal: list = []
        policy = RetryPolicy(max_attempts=5, initial=tick, factor=1.0, max_delay=tick, jitter=0.0)
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(10, 1000 * tick),
            children=(
                ChildSpec("pay", FlakyEffector, kwargs={"name": "pay", "journal": journal}, retry=policy),
            ),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            pay = system.lookup("sup/pay")
            await pay.tell(Charge(10), idempotency_key="intent-1", timeout=100 * tick)
            await wait_until(lambda: len([e for e in journal if e[0] == "charge"]) == 3, timeout=50 * tick)
            charges = [e[2:] for e in journal if e[0] == "charge"]
            assert charges == [(1, "intent-1"), (2, "intent-1"), (3, "intent-1")]
            retries = [e for e in system.audit.events if e.kind == "retry"]
            assert [(e.attempt, e.idempotency_key) for e in retries] == [(2, "intent-1"), (3, "intent-1")]
            await pay.tell(Charge(20), timeout=100 * tick)  # no key: crashes once, not retried
            await wait_until(lambda: len([e for e in journal if e[0] == "charge"]) == 4)
            await anyio.sleep(5 * tick)
            assert len([e for e in journal if e[0] == "charge"]) == 4

    async def test_retries_end_with_retry_exhausted_at_max_attempts(self, tick):
        """An envelope that keeps crashing is redelivered max_attempts - 1 times, then RETRY_EXHAUSTED once."""
        from exoarmur.runtime import RetryPolicy

        journal: list = []
        policy = RetryPolicy(max_attempts=2, initial=tick, factor=1.0, max_delay=tick, jitter=0.0)
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(10, 1000 * tick),
            children=(
                ChildSpec("pay", FlakyEffector, kwargs={"name": "pay", "journal": journal}, retry=policy),
            ),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            await system.lookup("sup/pay").tell(Charge(10), idempotency_key="intent-2", timeout=100 * tick)
            await wait_until(lambda: system.audit.counts().get(ReasonCode.RETRY_EXHAUSTED, 0) == 1, timeout=50 * tick)
            await anyio.sleep(5 * tick)
            assert [e[2] for e in journal if e[0] == "charge"] == [1, 2]
            assert system.audit.counts()[ReasonCode.RETRY_EXHAUSTED] == 1


class TestCrashDuringShutdown:
    async def test_a_crash_just_before_shutdown_is_not_restarted_and_crashes_nothing_else(self):
        """A child crashing as the system stops is stopped, not restarted; the supervisor does not crash."""
        journal: list = []
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=tuple(worker(n, journal) for n in "abc"))
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            await system.lookup("sup/c").tell(Work(1))
            await system.lookup("sup/a").tell(Boom())  # leave at once: shutdown races the ChildDown
        assert system.audit.counts()[ReasonCode.ACTOR_CRASHED] == 1
        assert events(journal, "started") == ["a", "b", "c"]
        assert system.paths() == []
