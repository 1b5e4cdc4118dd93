"""Memory per idle actor, each figure in a fresh process: exoarmur's idle
actor against the do-it-yourself one (a task parked on its own stream).

    python -m exoarmur.benchmarks.kernel_rss BACKEND KIND COUNT   # one JSON line

The naive actor's spawn rate is taken there too: spawning K of them is slow
enough (tens of µs each) that doing it twice would blow the time budget.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import Any

import anyio
import psutil

from exoarmur.benchmarks import PYTHON
from exoarmur.benchmarks.kernel_subjects import STREAM_BUFFER, TIMEOUT, Idle
from exoarmur.benchmarks.measure import expect, perf_ns
from exoarmur.benchmarks.report import KIB
from exoarmur.runtime import ActorSystem

KINDS = ("exoarmur", "naive")



class NaiveActors:
    """The do-it-yourself actor: one task parked in `async for` on its own memory
    stream, its send side kept in a dict by path (the registry)."""

    def __init__(self) -> None:
        self.registry: dict[str, anyio.abc.ObjectSendStream[Any]] = {}

    async def _actor(self, receive: anyio.abc.ObjectReceiveStream[Any]) -> None:
        async with receive:
            async for _ in receive:
                pass

    async def spawn(self, tg: anyio.abc.TaskGroup, prefix: str, count: int) -> None:
        """Start `count` actors; return once every one is parked in `receive`."""
        new = []
        for i in range(count):
            send, receive = anyio.create_memory_object_stream[Any](STREAM_BUFFER)
            self.registry[f"{prefix}/{i}"] = send
            new.append(send)
            tg.start_soon(self._actor, receive)
        for _ in range(100):  # a new task parks within a few scheduler passes
            await anyio.sleep(0)
            if new[-1].statistics().tasks_waiting_receive:
                new = [send for send in new if not send.statistics().tasks_waiting_receive]
                if not new:
                    return
        raise AssertionError(f"{len(new)} of {count} naive actors never parked")

    def close(self) -> None:
        for send in self.registry.values():
            send.close()


def rss_bytes() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


async def rss_exoarmur(count: int) -> tuple[int, int, float]:
    async with ActorSystem() as system:
        warm = max(100, count // 100)
        for i in range(warm):  # one-time costs out of the figure
            await system.spawn(Idle, name=f"warm/{i}")
        before = rss_bytes()
        start = perf_ns()
        for i in range(count):
            await system.spawn(Idle, name=f"idle/{i}")
        elapsed = perf_ns() - start
        after = rss_bytes()
        expect(len(system.paths()) == count + warm, "not every spawn registered")
    return before, after, elapsed / 1e9


async def rss_naive(count: int) -> tuple[int, int, float]:
    naive = NaiveActors()
    async with anyio.create_task_group() as tg:
        await naive.spawn(tg, "warm", max(100, count // 100))
        before = rss_bytes()
        start = perf_ns()
        await naive.spawn(tg, "idle", count)
        elapsed = perf_ns() - start
        after = rss_bytes()
        naive.close()
    return before, after, elapsed / 1e9


def rss_only(backend: str, kind: str, count: int) -> dict[str, Any]:
    measure = rss_exoarmur if kind == "exoarmur" else rss_naive
    before, after, seconds = anyio.run(measure, count, backend=backend)
    per_actor = (after - before) / count
    return {
        "backend": backend,
        "kind": kind,
        "count": count,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_actor": per_actor,
        "kib_per_actor": per_actor / KIB,
        "spawn_per_s": count / seconds,
    }


def rss_in_subprocess(backend: str, kind: str, count: int) -> dict[str, Any]:
    command = [*PYTHON, "-m", "exoarmur.benchmarks.kernel_rss", backend, kind, str(count)]
    # The same interpreter, environment and directory: exoarmur imports as it did here.
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"RSS subprocess {' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    backend, kind, count = argv
    if backend not in ("asyncio", "trio") or kind not in KINDS or not count.isdigit() or int(count) <= 0:
        print("usage: python -m exoarmur.benchmarks.kernel_rss asyncio|trio exoarmur|naive COUNT", file=sys.stderr)
        return 2
    print(json.dumps(rss_only(backend, kind, int(count))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
