"""Remote refs: two actor systems on one NATS, asking each other's actors with
deadlines that travel, only exported messages crossing, and every refusal
coded at the sender."""

from __future__ import annotations

from contextlib import asynccontextmanager

import anyio
import pytest

from exoarmur.actors.nats import Request, Statistics
from exoarmur.actors.remote import MAX_REMOTE_DEADLINE, Gateway, RemoteRef, gateway_subject
from exoarmur.actors.remote.wire import decode_reply, frame
from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, Overflow, ReasonCode, TimeoutPolicy, handles
from exoarmur.supervisors import ChildSpec, Strategy, Supervisor, SupervisorSpec
from exoarmur.supervisors.messages import Escalate
from tests.actors.remote.support import Local, RemoteCounter, code_of, wire_envelope
from tests.integration.support import connect, running_server
from tests.runtime.support import Add, Crash, Get, Hold, Seen, Sleep

pytestmark = pytest.mark.anyio


class Small(Actor):
    """Two places, refusing when full; stuck in Hold until released."""

    mailbox_capacity = 2
    overflow = Overflow.REJECT

    def __init__(self, *, release: anyio.Event) -> None:
        self.release = release

    @handles(Hold, remote=True)
    async def hold(self, m: Hold) -> str:
        await self.release.wait()
        return "released"


@asynccontextmanager
async def two_systems(tmp_path, *, tenant: str | None = None):
    """System "a" (a gateway, a counter) and system "b" (asking), one server."""
    async with running_server(tmp_path) as server, ActorSystem(name="a") as a, ActorSystem(name="b") as b:
        await connect(a, server)
        await connect(b, server)
        await a.spawn(Gateway, name="gateway", kwargs={"connection": "nats", "system": "a", "tenant": tenant})
        await a.spawn(RemoteCounter, name="counter", tenant=tenant)
        yield a, b


def remote(b: ActorSystem, path: str, system_name: str = "a") -> RemoteRef:
    return RemoteRef(b, connection="nats", system_name=system_name, path=path)


async def test_ask_and_tell_across_systems(tmp_path):
    async with two_systems(tmp_path) as (a, b):
        counter = remote(b, "counter")
        assert await counter.ask(Add(5)) == 5
        await counter.tell(Add(2))
        assert await counter.ask(Get()) == 7
        assert await a.lookup("counter").ask(Get()) == 7


async def test_the_deadline_travels_and_a_slow_handler_gets_its_category_code(tmp_path):
    async with two_systems(tmp_path) as (a, b):
        started = anyio.current_time()
        code = await code_of(remote(b, "counter").ask(Sleep(5.0), timeout=0.5))
        assert code is ReasonCode.TIMEOUT_KV_GET
        assert anyio.current_time() - started <= 0.55


async def test_the_remote_deadline_not_the_deliverys_bounds_the_work(tmp_path):
    """The delivery that brings a remote ask has a deadline of its own (the
    NATS_SUBSCRIBE category's, 0.2 s here); the remote ask's 3 s is what
    bounds the handler, and the answer comes back."""
    policy = TimeoutPolicy.with_overrides({"nats_subscribe": 0.2})
    async with running_server(tmp_path) as server, ActorSystem(name="a", timeouts=policy) as a, ActorSystem(name="b") as b:
        await connect(a, server)
        await connect(b, server)
        await a.spawn(Gateway, name="gateway", kwargs={"connection": "nats", "system": "a"})
        await a.spawn(Napper, name="napper")
        assert await remote(b, "napper").ask(Sleep(0.5), timeout=3.0) == "rested"


class Napper(Actor):
    @handles(Sleep, remote=True)
    async def nap(self, m: Sleep) -> str:
        await anyio.sleep(m.seconds)
        return "rested"


async def test_refusals_are_coded_at_the_sender(tmp_path):
    async with two_systems(tmp_path) as (a, b):
        assert await code_of(remote(b, "nobody").ask(Get())) is ReasonCode.ACTOR_NOT_FOUND
        started = anyio.current_time()
        assert await code_of(remote(b, "counter", system_name="gone").ask(Get())) is ReasonCode.ACTOR_NOT_FOUND
        assert anyio.current_time() - started < 1.0  # no gateway: known at once, not at the deadline
        assert await code_of(remote(b, "counter").ask(Crash())) is ReasonCode.ACTOR_CRASHED
        assert await code_of(remote(b, "counter").ask(Seen())) is ReasonCode.ENVELOPE_INVALID  # a tuple result


async def test_garbage_on_the_wire_is_answered_envelope_invalid_and_the_gateway_lives_on(tmp_path):
    async with two_systems(tmp_path) as (a, b):
        connection = b.lookup("nats")
        junk = [b"", b"not json", b'{"v":1}', b'{"v":1,"m":"nope","b":{},"ms":100}']
        framed = [b"ask counter\n" + j for j in junk] + [b"ask counter", b"peek counter\n{}", b"ask \xff\n{}"]
        for data in junk + framed:
            response = await connection.ask(Request(gateway_subject("a"), data))
            assert b"ENVELOPE_INVALID" in response.data
        assert await remote(b, "counter").ask(Add(1)) == 1


@pytest.mark.parametrize("mode", ["ask", "tell"])
async def test_a_forged_escalate_through_nats_is_refused_and_the_tree_runs_on(tmp_path, mode):
    """Any peer on the server can send to the gateway: the supervisor's own
    escalate signal is NOT_EXPORTED, audited by the gateway, and the
    supervisor neither stops its children nor escalates."""
    spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(ChildSpec("worker", RemoteCounter),))
    async with two_systems(tmp_path) as (a, b):
        await a.spawn(Supervisor, name="sup", kwargs={"spec": spec})
        send = getattr(remote(b, "sup"), mode)
        assert await code_of(send(Escalate("worker crashed 4 times"))) is ReasonCode.NOT_EXPORTED
        audited = [(e.kind, e.path, e.detail.split(":")[0]) for e in a.audit.events if e.code is ReasonCode.NOT_EXPORTED]
        assert audited == [("rejected", "gateway", "exoarmur.supervisor.escalate")]
        assert await remote(b, "sup/worker").ask(Add(1)) == 1
        assert a.fatal is None and not any(e.code is ReasonCode.ESCALATED for e in a.audit.events)


async def test_a_message_handled_but_not_exported_never_crosses(tmp_path):
    async with two_systems(tmp_path) as (a, b):
        assert await code_of(remote(b, "counter").ask(Local())) is ReasonCode.NOT_EXPORTED
        assert await code_of(remote(b, "counter").tell(Local())) is ReasonCode.NOT_EXPORTED
        assert await a.lookup("counter").ask(Local()) == "local"


async def test_a_remote_deadline_of_int64_max_ms_is_capped(tmp_path):
    """2^63-1 ms decodes (it is a valid int64), and the gateway cuts it to its cap."""
    async with two_systems(tmp_path) as (a, b):
        envelope = wire_envelope("test.remote.peek", {}, ms=2**63 - 1)
        request = Request(gateway_subject("a"), frame(b"ask", "counter", envelope))
        left, _, _ = decode_reply((await b.lookup("nats").ask(request)).data)
        assert MAX_REMOTE_DEADLINE - 1.0 < left <= MAX_REMOTE_DEADLINE


async def test_a_wrong_tenant_is_tenant_mismatch(tmp_path):
    async with two_systems(tmp_path, tenant="acme") as (a, b):
        assert await remote(b, "counter").ask(Add(1), tenant="acme") == 1
        assert await code_of(remote(b, "counter").ask(Add(1), tenant="evil")) is ReasonCode.TENANT_MISMATCH


async def test_a_full_remote_mailbox_is_overload_at_the_sender(tmp_path):
    release = anyio.Event()
    async with two_systems(tmp_path) as (a, b):
        await a.spawn(Small, name="small", kwargs={"release": release})
        small = remote(b, "small")
        await small.tell(Hold())  # taken by the handler, which waits
        await anyio.sleep(0.05)
        await small.tell(Hold())
        await small.tell(Hold())  # two queued: full
        assert await code_of(small.tell(Hold())) is ReasonCode.OVERLOAD_MAILBOX_FULL
        release.set()


async def test_a_restarted_gateway_serves_once_and_a_stopped_one_not_at_all(tmp_path):
    """Served again (a gateway's fresh instance), a subject keeps one
    subscription, so no request is answered twice; a gateway that stops
    takes its subscription with it, and its system is then not found."""
    async with two_systems(tmp_path) as (a, b):
        connection = a.lookup("nats")
        before = (await connection.ask(Statistics())).subscriptions
        await a.spawn(Gateway, name="gateway-again", kwargs={"connection": "nats", "system": "a"})
        assert (await connection.ask(Statistics())).subscriptions == before
        assert await remote(b, "counter").ask(Add(2)) == 2
        await a.stop(a.lookup("gateway-again"))
        assert (await connection.ask(Statistics())).subscriptions == before - 1
        assert await code_of(remote(b, "counter").ask(Add(1), timeout=2.0)) is ReasonCode.ACTOR_NOT_FOUND


async def test_many_asks_at_once_each_get_their_own_answer_or_overload(tmp_path):
    """Requests started straight into the client's buffer, replies matched by
    their inbox: of 200 concurrent asks each gets its own sum back, or (the
    counter's mailbox is small) OVERLOAD_MAILBOX_FULL; none is lost or
    answered twice."""
    async with two_systems(tmp_path) as (a, b):
        counter = remote(b, "counter")
        answers: list[int] = []
        refused: list[ReasonCode] = []

        async def add_one() -> None:
            try:
                answers.append(await counter.ask(Add(1)))
            except ExoarmurError as exc:
                refused.append(exc.code)

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(add_one)
        assert sorted(answers) == list(range(1, len(answers) + 1))
        assert set(refused) <= {ReasonCode.OVERLOAD_MAILBOX_FULL} and len(answers) + len(refused) == 200
        assert await counter.ask(Get()) == len(answers)


CHILD = """
import os, sys, anyio
from exoarmur.actors.nats import ConnectionOptions, NatsConnection
from exoarmur.actors.remote import Gateway
from exoarmur.runtime import ActorSystem
from tests.actors.remote.support import RemoteCounter

async def main():
    options = ConnectionOptions(urls=[os.environ["URL"]], token=os.environ["TOKEN"], ping_interval=0.5)
    async with ActorSystem(name="child") as system:
        await system.spawn(NatsConnection, name="nats", kwargs={"options": options})
        await system.spawn(Gateway, name="gateway", kwargs={"connection": "nats", "system": "child"})
        await system.spawn(RemoteCounter, name="counter")
        print("ready", flush=True)
        await anyio.sleep(60)

anyio.run(main)
"""


async def test_a_killed_process_answers_actor_not_found_or_a_timeout_never_a_hang(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    async with running_server(tmp_path) as server, ActorSystem(name="parent") as system:
        await connect(system, server)
        env = {**os.environ, "PYTHONPATH": str(repo), "URL": server.url, "TOKEN": server.token}
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=env, text=True)
        try:
            with anyio.fail_after(20):
                line = await anyio.to_thread.run_sync(child.stdout.readline)
            assert line.strip() == "ready"
            counter = remote(system, "counter", system_name="child")
            assert await counter.ask(Add(3)) == 3
            child.send_signal(signal.SIGKILL)
            await anyio.to_thread.run_sync(child.wait, 5)
            for _ in range(3):
                started = anyio.current_time()
                code = await code_of(counter.ask(Add(1), timeout=1.0))
                assert code in {ReasonCode.ACTOR_NOT_FOUND, ReasonCode.DEADLINE_EXCEEDED}
                assert anyio.current_time() - started <= 1.1
        finally:
            child.kill()
            child.wait(5)
