"""KvBucket: one actor per bucket, CAS answered with codes, and a store that
goes away opens the bucket's breaker instead of hanging or falling back."""

from __future__ import annotations

import anyio
import attrs
import orjson
import pytest

from exoarmur.actors.nats import Statistics
from exoarmur.actors.nats import jetstream
from exoarmur.actors.nats import Create, Delete, Get, KvBucket, Keys, Put, Request, Update
from exoarmur.runtime import ActorSystem, ExoarmurError, ReasonCode
from exoarmur.supervisors import BreakerPolicy, ChildSpec, Strategy, Supervisor, SupervisorSpec
from exoarmur.benchmarks.tcp_proxy import TcpProxy
from tests.integration.support import connect, eventually, options_for, running_server
from tests.integration.test_nats_connection import CrashableConnection
from tests.runtime.support import Crash

pytestmark = pytest.mark.anyio


async def code_of(awaitable) -> ReasonCode:
    with pytest.raises(ExoarmurError) as caught:
        await awaitable
    return caught.value.code


async def spawn_bucket(system: ActorSystem, *, breaker: BreakerPolicy | None = None, connection: str = "nats"):
    spec = SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        children=(
            ChildSpec("intents", KvBucket, kwargs={"bucket": "intents", "connection": connection}, breaker=breaker),
        ),
    )
    await system.spawn(Supervisor, name="store", kwargs={"spec": spec})
    return system.lookup("store/intents")


async def test_the_bucket_answers_with_revisions_and_codes(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server)
        bucket = await spawn_bucket(system)
        r1 = await bucket.ask(Create("i-1", b"RECEIVED"))
        assert await code_of(bucket.ask(Create("i-1", b"RECEIVED"))) is ReasonCode.KV_CONFLICT
        r2 = await bucket.ask(Update("i-1", b"APPROVED", last=r1))
        assert await code_of(bucket.ask(Update("i-1", b"DENIED", last=r1))) is ReasonCode.KV_CONFLICT
        entry = await bucket.ask(Get("i-1"))
        assert (entry.value, entry.revision) == (b"APPROVED", r2)
        await bucket.ask(Put("i-2", b"RECEIVED"))
        assert await bucket.ask(Keys()) == ["i-1", "i-2"]
        await bucket.ask(Delete("i-2"))
        assert await bucket.ask(Get("i-2")) is None


async def test_an_erased_key_leaves_no_marker_for_a_listing_to_read(tmp_path):
    """A delete leaves a marker in the bucket's stream, which every listing
    of its keys reads; an erase leaves nothing: no message of the key stays,
    it is gone for a get and a listing, and it can be put again."""
    async with running_server(tmp_path) as server, ActorSystem() as system:
        connection = await connect(system, server)
        bucket = await spawn_bucket(system)
        for key in ("a", "b"):
            await bucket.ask(Put(key, b"x"))
        await bucket.ask(Delete("a"))
        await bucket.ask(Delete("b", erase=True))
        assert await bucket.ask(Keys()) == [] and await bucket.ask(Get("b")) is None
        info = orjson.loads((await connection.ask(Request("$JS.API.STREAM.INFO.KV_intents", b""))).data)
        assert info["state"]["messages"] == 1  # a's marker; nothing of b
        await bucket.ask(Put("b", b"y"))
        assert (await bucket.ask(Get("b"))).value == b"y" and await bucket.ask(Keys()) == ["b"]
        with pytest.raises(ValueError):
            Delete("b", last=3, erase=True)  # an erase is no compare-and-set


async def test_reopening_the_bucket_after_a_connection_restart_times_out_with_the_operations_code(tmp_path):
    """A restarted connection reopens a bucket's handle on its first use; a
    reopen that runs out of time fails with the code of the operation that
    needed it (a put's TIMEOUT_KV_PUT, a delete's TIMEOUT_KV_DELETE), never
    with a get's whatever the operation."""
    async with running_server(tmp_path) as server, TcpProxy(server.port) as proxy, ActorSystem() as system:
        # Pings far apart: the silent link below stays "connected", so every
        # operation waits on the reopen until its own deadline.
        options = attrs.evolve(options_for(server, ping_interval=30.0, stuck_after=30.0), urls=(proxy.url,))
        child = ChildSpec("connection", CrashableConnection, kwargs={"options": options})
        await system.spawn(Supervisor, name="nats", kwargs={"spec": SupervisorSpec(Strategy.ONE_FOR_ONE, children=(child,))})
        conn = system.lookup("nats/connection")
        bucket = await spawn_bucket(system, connection="nats/connection")
        revision = await bucket.ask(Put("k", b"v"))
        with pytest.raises(ExoarmurError):
            await conn.ask(Crash())
        assert (await conn.ask(Statistics())).connected  # answered by the fresh instance
        proxy.blackhole()
        operations = {
            Put("k", b"w"): ReasonCode.TIMEOUT_KV_PUT,
            Create("new", b"w"): ReasonCode.TIMEOUT_KV_PUT,
            Update("k", b"w", last=revision): ReasonCode.TIMEOUT_KV_PUT,
            Delete("k"): ReasonCode.TIMEOUT_KV_DELETE,
            Get("k"): ReasonCode.TIMEOUT_KV_GET,
            Keys(): ReasonCode.TIMEOUT_KV_GET,
        }
        codes = {operation: await code_of(bucket.ask(operation, timeout=0.3)) for operation in operations}
        assert list(codes.values()) == list(operations.values())
        proxy.heal()


async def test_an_unreachable_store_fails_within_the_deadline_then_the_breaker_opens(tmp_path):
    breaker = BreakerPolicy(threshold=3, window=60.0, cooldown=30.0)
    async with ActorSystem() as system:
        async with running_server(tmp_path) as server:
            await connect(system, server)
            bucket = await spawn_bucket(system, breaker=breaker)
            await bucket.ask(Put("k", b"v"))
            server.kill()
            await server.wait()
        codes = []
        for _ in range(6):
            started = anyio.current_time()
            try:
                await bucket.ask(Put("k", b"w"), timeout=0.3)
                codes.append("ok")
            except ExoarmurError as exc:
                codes.append(exc.code)
            assert anyio.current_time() - started <= 0.3 * 1.1 + 0.05
        assert "ok" not in codes
        assert codes[-1] is ReasonCode.BREAKER_OPEN
        assert set(codes) <= {ReasonCode.TIMEOUT_KV_PUT, ReasonCode.NATS_DISCONNECTED, ReasonCode.BREAKER_OPEN}
        opened = [e for e in system.audit.events if e.kind == "BREAKER_OPENED"]
        assert len(opened) == 1 and opened[0].path == "store/intents"


async def test_the_breaker_closes_again_once_the_store_is_back(tmp_path):
    """OPEN while the server is down; after the cooldown a probe reaches the
    restarted server, the breaker closes, and every acknowledged put is there."""
    breaker = BreakerPolicy(threshold=2, window=60.0, cooldown=1.0)
    async with ActorSystem() as system:
        async with running_server(tmp_path) as server:
            await connect(system, server)
            bucket = await spawn_bucket(system, breaker=breaker)
            acknowledged = {f"k{i}": await bucket.ask(Put(f"k{i}", b"v")) for i in range(5)}
            server.kill()
            await server.wait()
            with anyio.fail_after(10):
                while True:
                    try:
                        await bucket.ask(Put("down", b"x"), timeout=0.3)
                    except ExoarmurError as exc:
                        if exc.code is ReasonCode.BREAKER_OPEN:
                            break
        async with running_server(tmp_path):
            with anyio.fail_after(20):
                while True:
                    try:
                        await bucket.ask(Put("back", b"y"), timeout=1.0)
                        break
                    except ExoarmurError:
                        await anyio.sleep(0.2)
            def kinds() -> list[str]:
                return [e.kind for e in system.audit.events if e.kind.startswith("BREAKER_")]

            await eventually(lambda: kinds()[-1] == "BREAKER_CLOSED")  # the probe's outcome, just after its answer
            assert kinds()[0] == "BREAKER_OPENED" and "BREAKER_HALF_OPEN" in kinds()
            for key, revision in acknowledged.items():
                assert (await bucket.ask(Get(key))).revision == revision


async def test_keys_are_filtered_by_the_server_and_leave_deleted_ones_out(tmp_path, monkeypatch):
    """A subject pattern (not a substring), deleted keys left out, and more
    keys than one pull batch all listed (the batch made small here)."""
    monkeypatch.setattr(jetstream, "FETCH_LIMIT", 100)
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server)
        bucket = await spawn_bucket(system)
        assert await bucket.ask(Keys()) == []
        names = [f"acme.i-{n}" for n in range(250)] + ["other.i-1", "acme.gone"]
        limiter = anyio.CapacityLimiter(64)

        async def put(name: str) -> None:
            async with limiter:
                await bucket.ask(Put(name, b"x"))

        async with anyio.create_task_group() as group:
            for name in names:
                group.start_soon(put, name)
        await bucket.ask(Delete("acme.gone"))
        acme = await bucket.ask(Keys("acme.*"), timeout=30)
        assert acme == sorted(n for n in names if n.startswith("acme.i-"))
        assert await bucket.ask(Keys("other.*")) == ["other.i-1"]
        assert await bucket.ask(Keys("cme.*")) == []  # a pattern, never a substring


async def test_a_bucket_operation_starts_at_once_not_as_a_batch_handler_run(tmp_path, monkeypatch):
    """A KvBucket's get, put, update and delete go out as the one request
    each is (requests.start: no task, no scope), once the bucket is open on
    the connection: the batch handlers' way (call_each) is not taken."""
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server)
        bucket = await spawn_bucket(system)
        await bucket.ask(Put("warm", b"v"))  # opened on the connection

        async def no_run(*args, **kwargs):
            raise AssertionError("a batch handler's run")

        monkeypatch.setattr(jetstream, "call_each", no_run)
        revision = await bucket.ask(Put("k", b"v"))
        revision = await bucket.ask(Update("k", b"w", last=revision))
        assert (await bucket.ask(Get("k"))).revision == revision
        assert await code_of(bucket.ask(Update("k", b"x", last=revision - 1))) is ReasonCode.KV_CONFLICT
        await bucket.ask(Delete("k"))
        assert await bucket.ask(Get("k")) is None


async def test_a_bucket_form_for_a_bucket_not_open_here_is_opened_first(tmp_path):
    """Asked of the connection directly, a bucket form for a bucket it has
    not opened is opened first (a task of the connection's, in the ask's
    time), as the general message's is; one that does not exist is
    KV_BUCKET_NOT_FOUND."""
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server, name="other")
        await spawn_bucket(system, connection="other")  # makes the bucket, on another connection
        conn = await connect(system, server)
        revision = await conn.ask(Put("k", b"v", bucket="intents"))
        assert (await conn.ask(Get("k", bucket="intents"))).revision == revision
        assert await code_of(conn.ask(Get("k", bucket="nowhere"))) is ReasonCode.KV_BUCKET_NOT_FOUND
        assert await code_of(conn.ask(Put("k", b"v", bucket="nowhere"), timeout=0.5)) is ReasonCode.KV_BUCKET_NOT_FOUND
