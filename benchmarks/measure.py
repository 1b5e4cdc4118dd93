"""How every benchmark script measures: shares of a count, percentiles, rounds
that alternate exoarmur with its baselines, and the wall time per section.

Inside one `anyio.run`, a comparison's sides alternate over rounds (the count
split evenly, after one warmup of each), so that drift (a busy neighbour, a CPU
frequency change) hits both sides of a ratio alike.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = [
    "BACKENDS",
    "Laps",
    "expect",
    "interleave",
    "latency_summary",
    "percentile",
    "perf_ns",
    "split",
    "warm_then_time",
]

BACKENDS = ("asyncio", "trio")

perf_ns = time.perf_counter_ns


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal positive shares (fewer parts if total < parts)."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in microseconds."""
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1_000


def latency_summary(samples_ns: list[int]) -> dict[str, float]:
    samples_ns = sorted(samples_ns)
    return {
        "p50_us": percentile(samples_ns, 0.50),
        "p99_us": percentile(samples_ns, 0.99),
        "mean_us": sum(samples_ns) / len(samples_ns) / 1_000,
        "samples": len(samples_ns),
    }


def expect(condition: bool, what: str) -> None:
    """An assertion that survives `python -O`: a benchmark that miscounts is void."""
    if not condition:
        raise AssertionError(what)


async def warm_then_time(run: Callable[[int, str], Awaitable[float]], *, count: int, warmup: int) -> float:
    """Run `run(warmup, "warmup")` and discard it, then return seconds of `run(count, "timed")`."""
    await run(warmup, "warmup")
    gc.collect()
    return await run(count, "timed")


async def interleave(
    runs: dict[str, Callable[[int, str], Awaitable[Any]]],
    *,
    count: int,
    warmup: int,
    rounds: int,
    alternate: bool = False,
) -> dict[str, list[Any]]:
    """Warm every run up, then alternate them over `rounds` shares of `count`, so
    that drift (a busy neighbour, CPU frequency) hits exoarmur and its baseline
    alike; with `alternate`, every other round runs them in reverse order, so
    neither always goes first. Returns each run's per-round results."""
    for name, run in runs.items():
        await run(warmup, f"{name}-warmup")
    gc.collect()
    results: dict[str, list[Any]] = {name: [] for name in runs}
    for i, share in enumerate(split(count, rounds)):
        order = list(runs.items())
        if alternate and i % 2:
            order.reverse()
        for name, run in order:
            results[name].append(await run(share, f"{name}-{i}"))
    return results


class Laps:
    """Wall time per section of one run: `lap(section)` ends the section begun
    at the previous call (or at creation), records it in `seconds`, says so
    through `say`, and collects garbage before the next one."""

    def __init__(self, backend: str, say: Callable[[str], None], seconds: dict[str, float]) -> None:
        self.backend = backend
        self.say = say
        self.seconds = seconds
        self._last = perf_ns()

    def __call__(self, section: str) -> None:
        now = perf_ns()
        self.seconds[section] = (now - self._last) / 1e9
        self._last = now
        self.say(f"{self.backend}: {section} done in {self.seconds[section]:.1f} s")
        gc.collect()
