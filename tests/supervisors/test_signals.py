"""The signals a supervisor gets from its children: those addressed to one
incarnation never reach the next (a supervisor restarted by its parent
supervises its fresh children as if new: in OTP the old process's exit
signals die with it), and every one ends exactly once, those sent while it
shuts its children down included."""

from __future__ import annotations

import pytest

from exoarmur.runtime import ActorCrashed, ActorSystem, MemoryAuditSink, ReasonCode
from exoarmur.supervisors import ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec
from tests.runtime.support import instance_of, wait_until
from tests.supervisors.test_supervisor import Boom, Work, Worker

pytestmark = pytest.mark.anyio


def nested(journal: list) -> SupervisorSpec:
    """root (1 restart in 5 s) -> mid (3 in 5 s) -> worker."""
    mid = SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        intensity=RestartIntensity(3, 5.0),
        children=(ChildSpec("worker", Worker, kwargs={"name": "worker", "journal": journal}),),
    )
    return SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        intensity=RestartIntensity(1, 5.0),
        children=(ChildSpec("mid", Supervisor, kwargs={"spec": mid}),),
    )


async def crash(system: ActorSystem, path: str) -> None:
    with pytest.raises(ActorCrashed):
        await system.lookup(path).ask(Boom(), timeout=1.0)


class TestNestedRestart:
    async def test_a_supervisor_restarted_by_its_parent_restarts_its_children_again(self):
        """Crash the worker 4 times: mid escalates and root restarts mid. Crash
        it once more: the fresh mid restarts it, and it answers again."""
        journal: list = []
        audit = MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            await system.spawn(Supervisor, name="root", kwargs={"spec": nested(journal)})
            for _ in range(4):
                await wait_until(lambda: "root/mid/worker" in system.paths())
                await crash(system, "root/mid/worker")
            await wait_until(lambda: any(e.code is ReasonCode.ESCALATED for e in audit.events))
            await wait_until(lambda: "root/mid/worker" in system.paths())
            assert await system.lookup("root/mid/worker").ask(Work(1), timeout=1.0) == 1
            starts_before = sum(1 for event in journal if event[0] == "started")
            await crash(system, "root/mid/worker")
            await wait_until(lambda: sum(1 for event in journal if event[0] == "started") == starts_before + 1)
            assert await system.lookup("root/mid/worker").ask(Work(2), timeout=1.0) == 2
            assert not [e for e in audit.events if e.code is ReasonCode.ACTOR_NAME_TAKEN]
            assert system.fatal is None


class TestSignalsAtStop:
    async def test_the_exits_of_children_shut_down_at_stop_are_counted_and_end(self):
        """Stopping a supervisor shuts its children down from its `stopping`
        hook; their exit signals reach it then, and each ends (handled), none
        is left in its control lane, and a clean stop audits nothing."""
        journal: list = []
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            children=tuple(ChildSpec(n, Worker, kwargs={"name": n, "journal": journal}) for n in "abc"),
        )
        audit = MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            await system.stop(ref)
            stats = ref.statistics()
            assert stats.accepted == 3
            assert stats.processed + system.dead_letters.total == stats.accepted
            assert audit.events == []

    async def test_a_nested_supervisor_wound_down_by_one_for_all_leaves_no_stale_signal(self):
        """A sibling's crash winds `mid` down (one_for_all): the exits of the
        children it shuts down are its own and end with it, so its fresh
        instance starts them again and nothing but the crash is audited."""
        journal: list = []
        mid = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            children=tuple(ChildSpec(n, Worker, kwargs={"name": n, "journal": journal}) for n in ("w1", "w2")),
        )
        root = SupervisorSpec(
            Strategy.ONE_FOR_ALL,
            children=(
                ChildSpec("mid", Supervisor, kwargs={"spec": mid}),
                ChildSpec("other", Worker, kwargs={"name": "other", "journal": journal}),
            ),
        )
        audit = MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            await system.spawn(Supervisor, name="root", kwargs={"spec": root})
            await crash(system, "root/other")
            await wait_until(lambda: sum(1 for e in journal if e[:2] == ("started", "w1")) == 2)
            assert await system.lookup("root/mid/w1").ask(Work(1), timeout=1.0) == 1
            assert [e.code for e in audit.events] == [ReasonCode.ACTOR_CRASHED]
            assert system.dead_letters.total == 0


class Never:
    """A parent that records a crash and never resumes."""

    def __init__(self) -> None:
        self.crashed: list = []

    def child_crashed(self, child, error) -> None:
        self.crashed.append(child)

    def child_exited(self, child) -> None:
        pass

    def child_reported(self, child, code, detail) -> None:
        pass

    def child_probed(self, child, ok) -> None:
        pass


class TestSignalsOfAnEndedActor:
    async def test_signals_queued_for_a_suspended_actor_end_when_it_is_stopped(self):
        """A signal queued while the actor is down (its parent has not resumed
        it) is dead-lettered when the actor is stopped: accepted, it ends."""
        parent = Never()
        async with ActorSystem() as system:
            host = await system.open_host("h")
            child = await system.spawn_child(Worker, name="w", parent=parent, host=host, kwargs={"name": "w", "journal": []})
            inbox = instance_of(child.ref).context.inbox()
            await crash(system, "w")
            await wait_until(lambda: parent.crashed)
            instance_of(child.ref).context.inbox().signal(Work(1))  # for the instance-to-be
            inbox.signal(Work(2))  # for the crashed one
            child.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=system.now() + 1.0)
            await child.wait_stopped()
            stats = child.ref.statistics()
            assert stats.accepted == 3  # the crash, and two signals
            assert stats.processed + system.dead_letters.total == stats.accepted
