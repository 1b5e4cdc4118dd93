"""NatsConnection behind a faulty link (benchmarks/tcp_proxy.py), against a
real nats-server: every ask ends with a value or its code by its deadline (10%
slack) whatever the link does, a silent peer is cut by the watchdog (a
reconnect stuck on it: docs/nats.md), a cut link is reconnected and reported, and nothing is lost
that the server acknowledged."""

from __future__ import annotations

import anyio
import attrs
import pytest

from exoarmur.actors.nats import (
    Delivery,
    KvGet,
    KvOpen,
    KvPut,
    NatsConnection,
    Publish,
    Request,
    Statistics,
    Subscribe,
    Subscriptions,
)
from exoarmur.runtime import TIMEOUT_CODES, Actor, ActorRef, ActorSystem, ExoarmurError, ReasonCode, handles
from exoarmur.runtime.margins import BRIDGED_ANSWER
from exoarmur.benchmarks.tcp_proxy import TcpProxy
from tests.integration.support import eventually, options_for, running_server
from tests.runtime.support import instance_of

pytestmark = pytest.mark.anyio

SLACK = 1.1  # an ask may outlive its deadline by 10%, no more
FAILED_LINK = TIMEOUT_CODES | {ReasonCode.NATS_DISCONNECTED}


class Echo(Actor):
    """Answers each delivery on its reply subject, through the connection."""

    @handles(Delivery)
    async def delivery(self, m: Delivery) -> None:
        await self.context.system.lookup("nats").tell(Publish(m.reply, b"echo:" + m.data))


async def connect_through(system: ActorSystem, server, proxy: TcpProxy, **overrides) -> ActorRef:
    """A NatsConnection named "nats" whose only URL is the proxy's."""
    options = attrs.evolve(options_for(server, **overrides), urls=(proxy.url,))
    return await system.spawn(NatsConnection, name="nats", kwargs={"options": options})


async def with_echo(system: ActorSystem, conn: ActorRef) -> None:
    await system.spawn(Echo, name="echo")
    await conn.ask(Subscribe("svc.echo", "echo"))
    assert (await conn.ask(Request("svc.echo", b"warm"))).data == b"echo:warm"


async def timed(conn: ActorRef, message, timeout: float) -> tuple[object, float]:
    """(the value or the coded error, seconds taken)."""
    started = anyio.current_time()
    try:
        outcome = await conn.ask(message, timeout=timeout)
    except ExoarmurError as exc:
        outcome = exc
    return outcome, anyio.current_time() - started


async def until_ok(conn: ActorRef, message, *, within: float, timeout: float = 0.5):
    """The first value the message gets, retried until `within` seconds passed."""
    with anyio.fail_after(within):
        for _ in range(int(within / 0.05) + 1):  # each try takes 50 ms at least
            outcome, _ = await timed(conn, message, timeout)
            if not isinstance(outcome, ExoarmurError):
                return outcome
            await anyio.sleep(0.05)
    raise AssertionError(f"{message!r} never succeeded within {within}s")


async def test_a_blackhole_mid_traffic_ends_every_ask_with_a_value_or_a_code_by_its_deadline(tmp_path):
    """Four callers keep KvPut / Request asks (0.5 s each) in flight; the link
    goes silent under them for 2.5 s (long enough for the client to notice
    and start reconnecting into the same silence), then heals."""
    async with running_server(tmp_path) as server, TcpProxy(server.port) as proxy, ActorSystem() as system:
        conn = await connect_through(system, server, proxy)
        await conn.ask(KvOpen("chaos"))
        await with_echo(system, conn)
        outcomes: list[tuple[str, object, float]] = []
        silent_from = silent_until = 0.0

        async def caller(n: int) -> None:
            for i in range(100):  # bounded; ends with the silence
                message = KvPut("chaos", f"k{n}", str(i).encode()) if i % 2 else Request("svc.echo", b"%d" % i)
                outcome, took = await timed(conn, message, 0.5)
                outcomes.append((type(message).__name__, outcome, took))
                if silent_until and anyio.current_time() >= silent_until:
                    return

        async def fault() -> None:
            nonlocal silent_from, silent_until
            await eventually(lambda: len(outcomes) >= 12, timeout=5)
            proxy.blackhole()
            silent_from = anyio.current_time()
            silent_until = silent_from + 2.5

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(fault)
                for n in range(4):
                    tg.start_soon(caller, n)

        proxy.heal()
        failed = [(kind, o.code) for kind, o, _ in outcomes if isinstance(o, ExoarmurError)]
        assert failed, "the blackhole failed nothing"
        assert {code for _, code in failed} <= FAILED_LINK, failed
        assert max(took for *_, took in outcomes) <= 0.5 * SLACK
        assert len(outcomes) - len(failed) >= 12  # the traffic before the silence went through
        # The client noticed and is reconnecting through the healed link.
        await until_ok(conn, KvPut("chaos", "after", b"ok"), within=8)
        assert (await conn.ask(Request("svc.echo", b"back"))).data == b"echo:back"


async def test_a_silent_peer_with_buffered_publishes_is_aborted_by_the_watchdog(tmp_path):
    """A reconnect stuck on a silent peer (docs/nats.md): the link goes silent while megabytes of publishes sit in
    the client's socket buffer. On a stale connection nats-py closes the socket
    and waits for that buffer to flush: forever. The watchdog aborts it
    (aborted_sockets), or restarts the actor; after heal, the client works."""
    async with running_server(tmp_path) as server, TcpProxy(server.port) as proxy, ActorSystem() as system:
        conn = await connect_through(
            system, server, proxy, ping_interval=0.5, stuck_after=1.0, pending_size=64 * 1024 * 1024
        )
        await with_echo(system, conn)
        proxy.blackhole()
        payload = b"x" * (256 * 1024)
        for _ in range(32):  # 8 MiB: more than loopback's socket buffers hold
            await conn.tell(Publish("sink.big", payload))

        stuck_flushing = False  # seen: reconnecting with bytes the socket cannot send

        def unflushable() -> bool:
            state = getattr(instance_of(conn), "state", None)
            nc = None if state is None else state.nc
            writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
            transport = getattr(writer, "transport", None)
            return bool(nc is not None and nc.is_reconnecting and transport and transport.get_write_buffer_size())

        with anyio.fail_after(10):
            for _ in range(200):  # 50 ms apart: bounded by the fail_after anyway
                stuck_flushing = stuck_flushing or unflushable()
                if system.info(conn.path).restarts:
                    break
                outcome, _ = await timed(conn, Statistics(), 1.0)
                if isinstance(outcome, ExoarmurError):
                    assert outcome.code in FAILED_LINK | {ReasonCode.ACTOR_CRASHED}, outcome
                elif outcome.aborted_sockets >= 1:
                    break
                await anyio.sleep(0.05)
        assert stuck_flushing, "the client never got stuck: the scenario did not reproduce the stuck reconnect"

        proxy.heal()
        healed_at = anyio.current_time()
        response = await until_ok(conn, Request("svc.echo", b"back"), within=5)
        assert response.data == b"echo:back"
        assert anyio.current_time() - healed_at < 5
        stats = await conn.ask(Statistics())
        assert stats.connected
        assert stats.aborted_sockets >= 1 or system.info(conn.path).restarts >= 1


async def test_a_cut_link_is_reported_reconnected_and_keeps_the_kv_data(tmp_path):
    async with running_server(tmp_path) as server, TcpProxy(server.port) as proxy, ActorSystem() as system:
        conn = await connect_through(system, server, proxy)
        await conn.ask(KvOpen("chaos"))
        revision = await conn.ask(KvPut("chaos", "before", b"v1"))
        assert proxy.connections == 1

        proxy.cut()
        with anyio.fail_after(5):
            for _ in range(100):
                if (await conn.ask(Statistics())).reconnects >= 1:
                    break
                await anyio.sleep(0.05)

        entry = await conn.ask(KvGet("chaos", "before"))
        assert entry is not None and (entry.value, entry.revision) == (b"v1", revision)
        assert proxy.accepted >= 2
        reported = [e for e in system.audit.events if e.kind == "dependency_failed"]
        assert any(e.code is ReasonCode.NATS_DISCONNECTED and e.path == "nats" for e in reported), reported


async def test_a_slow_link_fails_a_request_with_its_timeout_code_at_its_deadline(tmp_path):
    """0.2 s per chunk each way, 0.1 s to answer: TIMEOUT_NATS_REQUEST, on time
    (the median of five within 10%; each within 10% + 20 ms of scheduling
    jitter, 10% of 0.1 s being less than a busy machine's); with time
    enough, the same slow link answers."""
    async with running_server(tmp_path) as server, TcpProxy(server.port) as proxy, ActorSystem() as system:
        conn = await connect_through(system, server, proxy)
        await with_echo(system, conn)
        proxy.delay(0.2)
        took = []
        for i in range(5):
            outcome, seconds = await timed(conn, Request("svc.echo", b"%d" % i), 0.1)
            assert isinstance(outcome, ExoarmurError) and outcome.code is ReasonCode.TIMEOUT_NATS_REQUEST, outcome
            took.append(seconds)
        # Answered just before the deadline: on trio earlier, as the timers of
        # trio-asyncio's loop fire a few ms late (BRIDGED_ANSWER).
        assert 0.1 - BRIDGED_ANSWER - 0.005 <= min(took) and max(took) <= 0.1 * SLACK + 0.02, took
        assert sorted(took)[2] <= 0.1 * SLACK, took
        outcome, seconds = await timed(conn, Request("svc.echo", b"patient"), 3.0)
        assert not isinstance(outcome, ExoarmurError), outcome
        assert outcome.data == b"echo:patient" and seconds >= 0.8  # four legs through the proxy
        proxy.heal()


async def test_a_link_that_stays_silent_gets_its_socket_aborted_then_its_client_replaced(tmp_path):
    """The peer accepts and never answers, for good: the watchdog aborts the
    socket after `stuck_after`, and when the client is still not connected
    `stuck_after` later, the actor crashes so its parent starts a fresh client
    (nats-py's state while it retries is CONNECTING as much as RECONNECTING:
    both count as stuck). After heal the fresh client works."""
    async with running_server(tmp_path) as server, TcpProxy(server.port) as proxy, ActorSystem() as system:
        options = attrs.evolve(options_for(server, ping_interval=0.2, stuck_after=0.6), urls=(proxy.url,))
        kwargs = {"options": options, "subscriptions": Subscriptions()}  # kept for the fresh client
        conn = await system.spawn(NatsConnection, name="nats", kwargs=kwargs)
        await with_echo(system, conn)
        proxy.blackhole()
        with anyio.fail_after(15):
            while system.info(conn.path).restarts == 0:
                await anyio.sleep(0.05)
        crashes = [e for e in system.audit.events if e.code is ReasonCode.ACTOR_CRASHED and e.path == "nats"]
        assert crashes and "stuck reconnecting" in crashes[0].detail
        proxy.heal()
        assert (await until_ok(conn, Request("svc.echo", b"again"), within=10)).data == b"echo:again"
