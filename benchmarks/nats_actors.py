"""The NATS benchmark's exoarmur side: what the actors do for each figure
(publish, request, remote ask, KV, audit appends), each run of the shape
`(..., count, tag)` that `measure.interleave` alternates with the raw one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from exoarmur.actors.nats import ConnectionOptions, Flush, Get, NatsConnection, Publish, Put, Request
from exoarmur.actors.nats.audit_stream import Append
from exoarmur.actors.remote import Gateway, RemoteRef
from exoarmur.benchmarks.measure import expect, perf_ns, split
from exoarmur.benchmarks.nats_baselines import AUDIT_EVENT, ECHO_SUBJECT, PUB_SUBJECT, REMOTE_SYSTEM, RUN_SECONDS, raw_kv_sequential
from exoarmur.runtime import Actor, ActorRef, ActorSystem, handles, message


async def actor_publish(conn: ActorRef, data: bytes, count: int, tag: str) -> float:
    msg = Publish(PUB_SUBJECT, data)
    start = perf_ns()
    for _ in range(count):
        await conn.tell(msg)
    await conn.ask(Flush())
    return (perf_ns() - start) / 1e9


async def actor_request_latencies(conn: ActorRef, data: bytes, count: int, tag: str) -> list[int]:
    msg = Request(ECHO_SUBJECT, data)
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        response = await conn.ask(msg)
        samples[i] = perf_ns() - start
        expect(response.data == data, "actor request: the reply does not echo the request")
    return samples


@message("bench.nats.echo")
class Echo:
    text: str


class Echoer(Actor):
    @handles(Echo, remote=True)  # exported: the gateway delivers it from the wire
    def echo(self, m: Echo) -> str:
        return m.text


async def remote_ask_latencies(ref: RemoteRef, text: str, count: int, tag: str) -> list[int]:
    msg = Echo(text)
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        reply = await ref.ask(msg)
        samples[i] = perf_ns() - start
        expect(reply == text, "remote ask: the reply does not echo the request")
    return samples


@asynccontextmanager
async def remote_echoer(options: ConnectionOptions) -> AsyncIterator[None]:
    """A second actor system on its own connection: a Gateway for REMOTE_SYSTEM
    and an Echoer at path "echo"."""
    async with ActorSystem(name=REMOTE_SYSTEM) as other:
        await other.spawn(NatsConnection, name="nats", kwargs={"options": options})
        await other.spawn(Gateway, name="gateway", kwargs={"connection": "nats", "system": REMOTE_SYSTEM})
        await other.spawn(Echoer, name="echo")
        yield


def actor_kv_ops(bucket: ActorRef, value: bytes) -> dict[str, Callable[[str], Awaitable[Any]]]:
    async def put(key: str) -> None:
        await bucket.ask(Put(key, value))

    async def get(key: str) -> None:
        entry = await bucket.ask(Get(key))
        expect(entry is not None and entry.value == value, f"actor get of {key}: not the value put")

    return {"put": put, "get": get}


async def actor_kv_sequential(op: Callable[[str], Awaitable[Any]], keys: list[str], count: int, tag: str) -> list[int]:
    return await raw_kv_sequential(op, keys, count)  # the same loop, over anyio


async def actor_kv_concurrent(
    op: Callable[[str], Awaitable[Any]], keys: list[str], callers: int, count: int, tag: str
) -> float:
    n = len(keys)

    async def caller(first: int, share: int) -> None:
        for i in range(share):
            await op(keys[(first + i) % n])

    shares = split(count, callers)
    start = perf_ns()
    with anyio.fail_after(RUN_SECONDS):
        async with anyio.create_task_group() as tg:
            first = 0
            for share in shares:
                tg.start_soon(caller, first, share)
                first += share
    return (perf_ns() - start) / 1e9


async def actor_audit_appends(audit: ActorRef, count: int, tag: str) -> list[int]:
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        ack = await audit.ask(Append(AUDIT_EVENT))
        expect(not ack.duplicate, f"{tag}: append acked as a duplicate")
        samples[i] = perf_ns() - start
    return samples
