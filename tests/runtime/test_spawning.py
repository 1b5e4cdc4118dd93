"""Spawning: mail sent to an actor while its `started` hook still runs waits for the
hook to finish (OTP's init): no handler ever sees a half-started instance."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, MemoryAuditSink, TimeoutCategory, TimeoutPolicy, handles, message
from exoarmur.supervisors import ChildSpec, StartChild, Strategy, Supervisor, SupervisorSpec

pytestmark = pytest.mark.anyio


@message("test.started_mail.ping")
class Ping:
    pass


class SlowStart(Actor):
    release: anyio.Event

    def __init__(self) -> None:
        self.ready = False

    async def started(self) -> None:
        await SlowStart.release.wait()
        self.ready = True

    @handles(Ping)
    def ping(self, m: Ping) -> bool:
        return self.ready


async def test_an_ask_made_during_started_is_handled_after_it():
    SlowStart.release = anyio.Event()
    async with ActorSystem() as system, anyio.create_task_group() as group:
        group.start_soon(lambda: system.spawn(SlowStart, name="slow"))
        with anyio.fail_after(5):
            while "slow" not in system.paths():
                await anyio.sleep(0)
        answers = []

        async def ask() -> None:
            answers.append(await system.lookup("slow").ask(Ping()))

        group.start_soon(ask)
        await anyio.sleep(0.05)
        assert answers == []  # waiting, not handled by the half-started instance
        SlowStart.release.set()
        with anyio.fail_after(5):
            while not answers:
                await anyio.sleep(0.01)
        assert answers == [True]


async def test_a_supervisor_started_just_now_takes_start_child_only_once_ready():
    async with ActorSystem() as system:
        top = await system.spawn(Supervisor, name="top", kwargs={"spec": SupervisorSpec(Strategy.ONE_FOR_ONE)})
        inner = ChildSpec("t", Supervisor, kwargs={"spec": SupervisorSpec(Strategy.ONE_FOR_ONE)})
        refs = []

        async def start_leaf() -> None:
            while "top/t" not in system.paths():
                await anyio.sleep(0)
            refs.append(await system.lookup("top/t").ask(StartChild(ChildSpec("leaf", SlowLeaf))))

        async with anyio.create_task_group() as group:
            group.start_soon(top.ask, StartChild(inner))
            group.start_soon(start_leaf)
        assert [r.path for r in refs] == ["top/t/leaf"]


class SlowLeaf(Actor):
    pass


async def test_find_answers_a_ref_or_none_and_audits_nothing():
    audit = MemoryAuditSink()
    async with ActorSystem(audit=audit) as system:
        ref = await system.spawn(SlowLeaf, name="here")
        assert system.find("here") == ref and system.find("not/here") is None
    assert list(audit.events) == []


@message("test.spawning.note")
class Note:
    pass


@message("test.spawning.spawn_one", timeout=TimeoutCategory.API_VALIDATION)
class SpawnOne:
    pass


class Recorder(Actor):
    seen: list = []

    @handles(Note)
    def note(self, m: Note) -> None:
        env = self.context.snapshot().envelope
        Recorder.seen.append((env.sender, env.deadline - self.context.now()))


class SendsWhenStarted(Actor):
    async def started(self) -> None:
        await self.context.system.lookup("recorder").tell(Note())


class Spawner(Actor):
    @handles(SpawnOne)
    async def spawn_one(self, m: SpawnOne) -> None:
        await self.context.system.spawn(SendsWhenStarted, name="child")


async def test_a_send_from_started_is_the_new_actors_with_its_own_deadline():
    """Not the spawner's: its sender is the new actor, and its deadline is
    the message's own, not what is left of the spawner's handler."""
    Recorder.seen = []
    async with ActorSystem(timeouts=TimeoutPolicy.with_overrides({"api_validation": 0.5})) as system:
        await system.spawn(Recorder, name="recorder")
        spawner = await system.spawn(Spawner, name="spawner")
        await spawner.ask(SpawnOne())
        with anyio.fail_after(5):
            while not Recorder.seen:
                await anyio.sleep(0.01)
    (sender, remaining), = Recorder.seen
    assert sender == "child" and remaining > 1.0  # the default category's seconds, not 0.5
