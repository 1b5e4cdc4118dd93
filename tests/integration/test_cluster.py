"""A 3-node NATS cluster on loopback (explicit routes, R3 KV and stream, sync
always): one node SIGKILLed mid-traffic, writes go on, nothing acknowledged is
lost, and the audit chain stays whole."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack

import anyio
import pytest

from exoarmur.actors.nats.audit_stream import Append, AuditStream, read_records, verify_chain
from exoarmur.actors.nats import ConnectionOptions, KvGet, KvOpen, KvPut, NatsConnection
from exoarmur.actors.nats.process import ClusterOptions
from exoarmur.runtime import TIMEOUT_CODES, ActorSystem, AuditEvent, ExoarmurError, ReasonCode
from exoarmur.benchmarks.sweep_runner import free_ports
from tests.integration.support import running_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    """asyncio only: the trio subset (connect, KV CAS, remote ask, server
    restart) runs elsewhere; three servers twice would double a slow test."""
    return ("asyncio", {"loop_factory": asyncio.SelectorEventLoop})


async def until_ok(make, *, within: float):
    """Retry `make()` until it answers (a JetStream leader election takes a moment)."""
    with anyio.fail_after(within):
        while True:
            try:
                return await make()
            except ExoarmurError:
                await anyio.sleep(0.2)


def event(n: int) -> dict:
    return AuditEvent(kind="test", code=ReasonCode.ACTOR_CRASHED, at=float(n), path="p", detail=f"#{n}").to_json()


async def test_one_node_killed_mid_traffic_loses_nothing_acknowledged(tmp_path):
    routes, token = free_ports(3), secrets.token_urlsafe(16)
    async with AsyncExitStack() as stack:
        servers = []
        for i in range(3):
            cluster = ClusterOptions(name="exo", port=routes[i], routes=tuple(routes))
            servers.append(
                await stack.enter_async_context(
                    running_server(tmp_path / f"n{i}", name=f"n{i}", cluster=cluster, token=token)
                )
            )
        system = await stack.enter_async_context(ActorSystem())
        options = ConnectionOptions(urls=[s.url for s in servers], token=token, ping_interval=0.5, reconnect_time_wait=0.1)
        conn = await system.spawn(NatsConnection, name="nats", kwargs={"options": options})
        await until_ok(lambda: conn.ask(KvOpen("r3", replicas=3)), within=20)
        audit = await until_ok(
            lambda: system.spawn(AuditStream, name="audit", kwargs={"connection": "nats", "replicas": 3}), within=20
        )

        acknowledged: dict[str, int] = {}
        failures: list[ReasonCode] = []
        details: list[str] = []
        appended = []

        async def write(i: int) -> bool:
            key = f"k{i}"
            try:
                acknowledged[key] = await conn.ask(KvPut("r3", key, key.encode()), timeout=2.0)
                appended.append(await audit.ask(Append(event(i)), timeout=2.0))
            except ExoarmurError as exc:
                failures.append(exc.code)
                details.append(exc.detail)
                return False
            return True

        for i in range(20):
            assert await write(i), failures
        servers[1].kill()  # mid-traffic: a leader or a follower, whichever it was
        written_after, i = 0, 20
        with anyio.fail_after(30):  # a new leader is elected within seconds
            while written_after < 20:
                i += 1
                if await write(i):
                    written_after += 1
                else:
                    await anyio.sleep(0.1)
        # While the leader moved: timeouts, or no stream leader to answer yet.
        assert set(failures) <= TIMEOUT_CODES | {
            ReasonCode.NATS_DISCONNECTED,
            ReasonCode.JETSTREAM_UNAVAILABLE,
        }, details
        for key, revision in acknowledged.items():
            entry = await until_ok(lambda: conn.ask(KvGet("r3", key)), within=10)
            assert entry is not None and entry.revision == revision
        last = appended[-1]
        records = await read_records(conn, "EXOARMUR_AUDIT", range(1, last.seq + 1))
        assert verify_chain(records) == last.position + 1
