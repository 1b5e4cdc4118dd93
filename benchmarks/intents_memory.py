"""What terminal intents cost the exoarmur process in memory: its RSS before
and after N `noop` intents driven to SUCCEEDED, 64 in flight.

An intent's actor stops once its intent is terminal and audited, and nothing
of it should stay: the record lives in KV, not in the process. So the RSS
should not grow with the number of intents that have ended. The measure:

    warm up     a quarter of N, 5,000 at most (every tenant's supervisor
                and audit chain started, the allocator's pools grown to the
                load's size, what is kept for a while, such as answered
                asks' deadline entries, at its steady size), then settled
                (the open index empty) and a pause
    before      the process's RSS
    run         N intents in STEPS rounds, the RSS read after each (for the
                shape of the growth, in the JSON)
    after       settled again, the same pause, the RSS
    slope       (after - before) / N: bytes per terminal intent (and, in
                the JSON, the least-squares slope over the samples)

The target: under LEAK_BOUND bytes per intent, judged from JUDGED_FROM
intents on (fewer, and one arena more or less is the figure). An idle actor costs ~1.6 KiB
(`exoarmur bench kernel`), its record some 400 bytes more: an actor kept
for even one intent in ten would show as ~200 bytes per intent, past the
bound, while the allocator's steps (a few 256 KiB arenas over 20,000
intents: tens of bytes per intent) stay under it.

`noop` only: the `ledger` type keeps an index of its file in memory (some
200 bytes a line, by design).
"""

from __future__ import annotations

from typing import Any

import anyio

from exoarmur.benchmarks.intents_system import IntentClient, Process
from exoarmur.benchmarks.measure import split

__all__ = ["JUDGED_FROM", "LEAK_BOUND", "terminal_memory"]

LEAK_BOUND = 100.0  # bytes of RSS per terminal intent, at most
JUDGED_FROM = 10_000  # terminal intents
STEPS = 10
INFLIGHT = 64
PAUSE_SECONDS = 2.0  # after settling: the last actors' stops, their mail, the resumer's scan


async def terminal_memory(
    client: IntentClient, process: Process, *, count: int, warmup: int, figures: dict[str, Any]
) -> None:
    """Measure into `figures`, as the run goes: a run cut short (a process
    that stalls under its own growth) still leaves what it saw."""
    figures.update(intents=count, warmup=warmup, inflight=INFLIGHT, leak_bound=LEAK_BOUND, done=0, samples=[])
    await client.run("noop", count=warmup, inflight=INFLIGHT, tag="mem-warmup")
    await client.settle()
    await anyio.sleep(PAUSE_SECONDS)
    before = process.rss()
    figures.update(rss_before=before, bytes_per_intent=0.0, seconds=0.0)
    figures["samples"].append((0, before))
    for i, share in enumerate(split(count, STEPS)):
        lap = await client.run("noop", count=share, inflight=INFLIGHT, tag=f"mem-{i}")
        figures["done"] += share
        figures["seconds"] += lap.seconds
        figures["samples"].append((figures["done"], process.rss()))
        figures["bytes_per_intent"] = (figures["samples"][-1][1] - before) / figures["done"]
        figures["fitted_bytes_per_intent"] = fitted_slope(figures["samples"])
        figures["stranded"] = len(client.stranded)
        figures["resubmitted"] = client.resubmitted
    await client.settle()
    await anyio.sleep(PAUSE_SECONDS)
    after = process.rss()
    figures.update(rss_after=after, bytes_per_intent=(after - before) / count, per_s=count / figures["seconds"])


def fitted_slope(samples: list[tuple[int, int]]) -> float:
    """Least squares: bytes of RSS per intent over the samples (the shape of
    the growth: a step early on weighs less than in the two-point slope)."""
    n = len(samples)
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    spread = sum((x - mean_x) ** 2 for x, _ in samples)
    return sum((x - mean_x) * (y - mean_y) for x, y in samples) / spread if spread else 0.0
