"""The kernel benchmark's raw baselines, each doing what exoarmur does with
less: an anyio memory stream and an asyncio.Queue for tells, a bare future
(asyncio) or event (trio) for an ask's round trip, and pykka's thread-based
actors. Each run has the shape `(count, tag) -> seconds` (or latencies) that
`measure.interleave` alternates with exoarmur's."""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from typing import Any

import anyio
import pykka
import trio

from exoarmur.benchmarks.kernel_subjects import ADD, GET, STREAM_BUFFER, TIMEOUT, Add
from exoarmur.benchmarks.measure import expect, latency_summary, perf_ns, split

async def stream_tell(count: int, tag: str) -> float:
    send, receive = anyio.create_memory_object_stream[Add](STREAM_BUFFER)
    received = 0

    async def consume() -> None:
        nonlocal received
        async with receive:
            async for _ in receive:
                received += 1

    msg = ADD
    start = perf_ns()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with send:
            for _ in range(count):
                await send.send(msg)
    elapsed = perf_ns() - start
    expect(received == count, f"stream consumer saw {received} of {count}")
    return elapsed / 1e9


async def asyncio_queue_tell(count: int, tag: str) -> float:
    queue: asyncio.Queue[Add] = asyncio.Queue(STREAM_BUFFER)
    received = 0

    async def consume() -> None:
        nonlocal received
        for _ in range(count):
            await queue.get()
            received += 1

    msg = ADD
    start = perf_ns()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consume())
        for _ in range(count):
            await queue.put(msg)
    elapsed = perf_ns() - start
    expect(received == count, f"queue consumer saw {received} of {count}")
    return elapsed / 1e9


async def stream_fan_in(producers: int, count: int, tag: str) -> float:
    send, receive = anyio.create_memory_object_stream[Add](STREAM_BUFFER)
    received = 0

    async def consume() -> None:
        nonlocal received
        async with receive:
            async for _ in receive:
                received += 1

    async def produce(clone: anyio.abc.ObjectSendStream[Add], share: int) -> None:
        async with clone:
            for _ in range(share):
                await clone.send(msg)

    msg = ADD
    start = perf_ns()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with send:
            for share in split(count, producers):
                tg.start_soon(produce, send.clone(), share)
    elapsed = perf_ns() - start
    expect(received == count, f"stream consumer saw {received} of {count} fan-in sends")
    return elapsed / 1e9


async def _future_server(queue: asyncio.Queue[tuple[int, asyncio.Future[int]]], count: int) -> None:
    for _ in range(count):
        request, future = await queue.get()
        future.set_result(request)


async def raw_future_latencies(count: int, tag: str) -> list[int]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()
    samples = [0] * count
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_future_server(queue, count))
        for i in range(count):
            start = perf_ns()
            future = loop.create_future()
            queue.put_nowait((i, future))
            await future
            samples[i] = perf_ns() - start
    return samples


async def raw_future_concurrent(askers: int, count: int, tag: str) -> float:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def asker(share: int) -> None:
        for i in range(share):
            future = loop.create_future()
            queue.put_nowait((i, future))
            await future

    start = perf_ns()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_future_server(queue, count))
        for share in split(count, askers):
            tg.create_task(asker(share))
    return (perf_ns() - start) / 1e9


# Raw trio: the asker queues (request, reply event) and sets the server's request
# event; the server swaps in a fresh request event, then sets each reply event.
# With one asker the queue holds one pair: the "slot" of the plain sketch.


class _EventServer:
    def __init__(self) -> None:
        self.pending: deque[tuple[int, trio.Event]] = deque()
        self.request = trio.Event()

    async def serve(self, count: int) -> None:
        served = 0
        while served < count:  # bounded: every pass answers at least one request
            await self.request.wait()
            self.request = trio.Event()
            pending = self.pending
            while pending:
                _request, reply = pending.popleft()
                reply.set()
                served += 1

    async def ask(self, request: int) -> None:
        reply = trio.Event()
        self.pending.append((request, reply))
        self.request.set()
        await reply.wait()


async def raw_event_latencies(count: int, tag: str) -> list[int]:
    server = _EventServer()
    samples = [0] * count
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, count)
        ask = server.ask
        for i in range(count):
            start = perf_ns()
            await ask(i)
            samples[i] = perf_ns() - start
    return samples


async def raw_event_concurrent(askers: int, count: int, tag: str) -> float:
    server = _EventServer()

    async def asker(share: int) -> None:
        for i in range(share):
            await server.ask(i)

    start = perf_ns()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, count)
        for share in split(count, askers):
            nursery.start_soon(asker, share)
    return (perf_ns() - start) / 1e9


# ---- pykka, on threads -------------------------------------------------------------


class PykkaCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def on_receive(self, message: Any) -> Any:
        if message is GET:
            return self.total
        self.total += 1
        return None


def pykka_tell(count: int) -> float:
    ref = PykkaCounter.start()
    try:
        msg = ADD
        tell = ref.tell
        start = perf_ns()
        for _ in range(count):
            tell(msg)
        total = ref.ask(GET, timeout=TIMEOUT)
        elapsed = perf_ns() - start
    finally:
        ref.stop()
    expect(total == count, f"pykka counter saw {total} of {count}")
    return elapsed / 1e9


def pykka_ask_latencies(count: int) -> list[int]:
    ref = PykkaCounter.start()
    try:
        samples = [0] * count
        for i in range(count):
            start = perf_ns()
            ref.ask(GET, timeout=TIMEOUT)
            samples[i] = perf_ns() - start
    finally:
        ref.stop()
    return samples


def run_pykka(*, messages: int, tell_warmup: int, asks: int, ask_warmup: int) -> dict[str, Any]:
    """pykka's figures, once, before and outside any event loop."""
    pykka_tell(tell_warmup)
    gc.collect()
    tell_seconds = pykka_tell(messages)
    gc.collect()
    pykka_ask_latencies(ask_warmup)
    ask = latency_summary(pykka_ask_latencies(asks))
    gc.collect()
    return {"tell_per_s": messages / tell_seconds, "tell_seconds": tell_seconds, "ask": ask}
