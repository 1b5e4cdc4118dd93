"""The load of the intents benchmark, shared by exoarmur's side and the raw
one: a closed loop of `inflight` workers, each taking the next intent,
driving it to SUCCEEDED and only then taking another, so exactly `inflight`
intents are in flight until the count runs out.

An intent is done when its SUCCEEDED is durable (and, on exoarmur's side,
seen by the client): its latency is from the start of its submission to
then; the round's time is from the first start to the last done. What
follows SUCCEEDED (its audit record, the index entry's delete) overlaps the
next intent on both sides alike, and is over before a round returns.

Plain asyncio: the client side of the benchmark is nats-py, whichever
backend the exoarmur process runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs

from exoarmur.benchmarks.measure import expect, perf_ns

__all__ = ["Lap", "closed_loop", "intent_id", "tenant_of"]

# The harness's own bound on one round (not a margin of the system): a round
# that stalls fails the run instead of hanging it.
ROUND_SECONDS = 900.0


@attrs.frozen
class Lap:
    """One round of one side: its count, its time, each intent's latency (ns)."""

    count: int
    seconds: float
    latencies_ns: list[int]

    @property
    def per_s(self) -> float:
        return self.count / self.seconds


def tenant_of(index: int, tenants: int) -> str:
    """Intents go round the tenants in turn: each tenant's audit chain takes its share."""
    return f"t{index % tenants}"


def intent_id(tag: str, index: int) -> str:
    """Unique within a run: `tag` names the side and the round."""
    return f"{tag}-{index}"


async def closed_loop(one: Callable[[int], Awaitable[int | None]], *, count: int, inflight: int) -> Lap:
    """`await one(i)` for i in range(count), `inflight` at a time, each worker
    taking the next index once its last is done. `one` may return when its
    intent was done (`perf_ns`), if that was before it returned."""
    expect(count >= 1 and inflight >= 1, f"closed loop of {count} intents, {inflight} in flight")
    latencies = [0] * count
    next_index = 0
    last_done = 0

    async def worker() -> None:
        nonlocal next_index, last_done
        while next_index < count:
            index, next_index = next_index, next_index + 1
            begun = perf_ns()
            done = await one(index) or perf_ns()
            latencies[index] = done - begun
            last_done = max(last_done, done)

    start = perf_ns()
    async with asyncio.timeout(ROUND_SECONDS), asyncio.TaskGroup() as group:
        for _ in range(min(inflight, count)):
            group.create_task(worker())
    expect(all(latencies), "closed loop: an intent was never done")
    return Lap(count, (last_done - start) / 1e9, latencies)
