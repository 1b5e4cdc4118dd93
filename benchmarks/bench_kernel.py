"""Kernel micro-benchmarks: exoarmur next to raw baselines measured in the same run.

    exoarmur bench kernel                               # full run, asyncio and trio
    exoarmur bench kernel --quick                       # smaller counts, well under a minute
    python -m exoarmur.benchmarks.bench_kernel --backend trio --out /tmp/results

Results go to ./benchmark-results/ (or --out DIR): see report.py, which also
says how to refresh the published figures in docs/benchmark-results/.

The figure that matters is a ratio against a baseline from the same run (both
sides meet the same machine at the same time; docs/benchmarks.md). Each backend
runs in its own `anyio.run`:

    benchmark           exoarmur                          baselines
    tell 1 -> 1         `await ref.tell(msg)`, N msgs,    anyio memory stream (1000);
                        plain-def counter; each round     asyncio.Queue(1000) (asyncio);
                        ends with an ask for the count    pykka ThreadingActor tell
    fan-in 100 -> 1     100 producers, N msgs in total    100 cloned anyio send streams
    ask                 sequential asks: p50/p99 in us;   raw future (asyncio) / raw event
                        64 concurrent askers: asks/s      (trio) round trip; pykka ask
    spawn               `await system.spawn(Idle, ...)`   naive actor: task + memory stream
    RSS / idle actor    a fresh subprocess per backend    naive actor, own fresh subprocess

Inside one `anyio.run`, exoarmur and its baselines alternate over ROUNDS rounds
(N split evenly, after one warmup of each: measure.py), so that a noisy neighbour
or a CPU frequency change hits both sides of a ratio alike; the rounds' counts add
up to N.

Targets (ratios from the same run):
    tell  >= 3x the raw anyio stream on the same backend, and >= 5x pykka tell
    ask   p50 <= 2x the raw future (asyncio) / raw event (trio) round trip p50
    RSS   <= 3 KiB per idle actor (absolute)

pykka is thread based, so it runs once, before and outside any event loop, and
its figures are repeated in each backend's table. The baselines are in
benchmarks/kernel_baselines.py, the RSS subprocesses in benchmarks/kernel_rss.py.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.metadata import version
from typing import Any

import anyio
import attrs
import sniffio

from exoarmur.benchmarks.kernel_baselines import (
    asyncio_queue_tell,
    raw_event_concurrent,
    raw_event_latencies,
    raw_future_concurrent,
    raw_future_latencies,
    run_pykka,
    stream_fan_in,
    stream_tell,
)
from exoarmur.benchmarks.kernel_rss import rss_in_subprocess
from exoarmur.benchmarks.kernel_subjects import ADD, GET, Counter, Idle
from exoarmur.benchmarks.measure import BACKENDS, Laps, expect, interleave, latency_summary, perf_ns, split, warm_then_time
from exoarmur.benchmarks.report import KIB, Row, close_report, machine_info, script_parser
from exoarmur.runtime import ActorSystem

# Each in-loop comparison alternates exoarmur and its baselines over this many rounds.
ROUNDS = 5


# ---- parameters -------------------------------------------------------------


@attrs.frozen
class Params:
    messages: int  # tell and fan-in, total messages
    asks: int  # sequential asks, and total asks of the concurrent run
    spawns: int  # spawn rate
    rss_count: int  # idle actors in each RSS subprocess
    producers: int = 100
    askers: int = 64

    @property
    def tell_warmup(self) -> int:
        return max(1_000, self.messages // 50)  # 2 %

    @property
    def ask_warmup(self) -> int:
        return max(200, self.asks // 20)  # 5 %

    @property
    def spawn_warmup(self) -> int:
        return max(200, self.spawns // 50)  # 2 %


FULL = Params(messages=1_000_000, asks=20_000, spawns=100_000, rss_count=100_000)
QUICK = Params(messages=50_000, asks=5_000, spawns=10_000, rss_count=10_000)


# ---- 1. tell, 1 producer -> 1 actor ------------------------------------------------


async def exo_tell(system: ActorSystem, count: int, tag: str) -> float:
    ref = await system.spawn(Counter, name=f"bench/tell-{tag}")
    msg = ADD
    start = perf_ns()
    for _ in range(count):
        await ref.tell(msg)
    total = await ref.ask(GET)
    elapsed = perf_ns() - start
    expect(total == count, f"counter saw {total} of {count} tells")
    await system.stop(ref)
    return elapsed / 1e9


# ---- 2. fan-in, 100 producers -> 1 actor ---------------------------------------------


async def exo_fan_in(system: ActorSystem, producers: int, count: int, tag: str) -> float:
    ref = await system.spawn(Counter, name=f"bench/fan-in-{tag}")
    msg = ADD

    async def produce(share: int) -> None:
        for _ in range(share):
            await ref.tell(msg)

    start = perf_ns()
    async with anyio.create_task_group() as tg:
        for share in split(count, producers):
            tg.start_soon(produce, share)
    total = await ref.ask(GET)
    elapsed = perf_ns() - start
    expect(total == count, f"counter saw {total} of {count} fan-in tells")
    await system.stop(ref)
    return elapsed / 1e9


# ---- 3. ask round trip -----------------------------------------------------------------


async def exo_ask_latencies(system: ActorSystem, count: int, tag: str) -> list[int]:
    ref = await system.spawn(Counter, name=f"bench/ask-{tag}")
    msg = GET
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        await ref.ask(msg)
        samples[i] = perf_ns() - start
    await system.stop(ref)
    return samples


async def exo_ask_concurrent(system: ActorSystem, askers: int, count: int, tag: str) -> float:
    ref = await system.spawn(Counter, name=f"bench/ask-concurrent-{tag}")
    msg = GET

    async def asker(share: int) -> None:
        for _ in range(share):
            await ref.ask(msg)

    start = perf_ns()
    async with anyio.create_task_group() as tg:
        for share in split(count, askers):
            tg.start_soon(asker, share)
    elapsed = perf_ns() - start
    await system.stop(ref)
    return elapsed / 1e9


# Raw asyncio: a server task answers (request, future) pairs from an asyncio.Queue.


# ---- 4. spawn rate --------------------------------------------------------------------


async def exo_spawn(count: int, tag: str) -> float:
    async with ActorSystem() as system:
        start = perf_ns()
        for i in range(count):
            await system.spawn(Idle, name=f"idle/{i}")
        elapsed = perf_ns() - start
        expect(len(system.paths()) == count, "not every spawn registered")
    return elapsed / 1e9


# ---- one backend ----------------------------------------------------------------------


async def run_backend(params: Params) -> dict[str, Any]:
    backend = sniffio.current_async_library()
    n = params.messages
    wall: dict[str, float] = {}
    out: dict[str, Any] = {"backend": backend, "section_seconds": wall, "round_seconds": {}}
    lap = Laps(backend, progress, wall)

    async with ActorSystem(name=f"bench-{backend}") as system:
        # 1. tell
        runs: dict[str, Callable[[int, str], Awaitable[Any]]] = {
            "exoarmur": partial(exo_tell, system),
            "stream": stream_tell,
        }
        if backend == "asyncio":
            runs["asyncio_queue"] = asyncio_queue_tell
        seconds = await interleave(runs, count=n, warmup=params.tell_warmup, rounds=ROUNDS)
        out["tell_per_s"] = n / sum(seconds["exoarmur"])
        out["stream_tell_per_s"] = n / sum(seconds["stream"])
        if backend == "asyncio":
            out["asyncio_queue_tell_per_s"] = n / sum(seconds["asyncio_queue"])
        out["round_seconds"]["tell"] = seconds
        lap("tell")

        # 2. fan-in
        runs = {
            "exoarmur": partial(exo_fan_in, system, params.producers),
            "stream": partial(stream_fan_in, params.producers),
        }
        seconds = await interleave(runs, count=n, warmup=params.tell_warmup, rounds=ROUNDS)
        out["fan_in_per_s"] = n / sum(seconds["exoarmur"])
        out["stream_fan_in_per_s"] = n / sum(seconds["stream"])
        out["round_seconds"]["fan-in"] = seconds
        lap("fan-in")

        # 3. ask: sequential latencies, then throughput with concurrent askers
        asyncio_ = backend == "asyncio"
        runs = {
            "exoarmur": partial(exo_ask_latencies, system),
            "raw": raw_future_latencies if asyncio_ else raw_event_latencies,
        }
        samples = await interleave(runs, count=params.asks, warmup=params.ask_warmup, rounds=ROUNDS)
        out["ask"] = latency_summary([ns for chunk in samples["exoarmur"] for ns in chunk])
        out["raw_ask"] = latency_summary([ns for chunk in samples["raw"] for ns in chunk])
        lap("ask sequential")
        runs = {
            "exoarmur": partial(exo_ask_concurrent, system, params.askers),
            "raw": partial(raw_future_concurrent if asyncio_ else raw_event_concurrent, params.askers),
        }
        seconds = await interleave(runs, count=params.asks, warmup=params.ask_warmup, rounds=ROUNDS)
        out["ask_concurrent_per_s"] = params.asks / sum(seconds["exoarmur"])
        out["raw_ask_concurrent_per_s"] = params.asks / sum(seconds["raw"])
        out["round_seconds"]["ask concurrent"] = seconds
        lap("ask concurrent")

    # 4. spawn (each run in its own system, torn down outside the timing)
    seconds = await warm_then_time(exo_spawn, count=params.spawns, warmup=params.spawn_warmup)
    out["spawn_per_s"] = params.spawns / seconds
    lap("spawn")
    return out


# ---- the report ------------------------------------------------------------------------


LEGEND = (
    "ratio = exoarmur / baseline. 'as fast': throughput, higher is better. "
    "'of base': latency or memory, lower is better."
)


def build_rows(backend: str, out: dict[str, Any], pykka_out: dict[str, Any], rss: dict[str, Any]) -> list[Row]:
    raw = "raw future" if backend == "asyncio" else "raw event"
    ask, raw_ask, pykka_ask = out["ask"], out["raw_ask"], pykka_out["ask"]
    tell_vs_stream = out["tell_per_s"] / out["stream_tell_per_s"]
    tell_vs_pykka = out["tell_per_s"] / pykka_out["tell_per_s"]
    ask_vs_raw = ask["p50_us"] / raw_ask["p50_us"]
    rss_exo, rss_naive_ = rss["exoarmur"]["bytes_per_actor"], rss["naive"]["bytes_per_actor"]
    rows = [
        Row("tell 1->1 (msg/s)", "/s", out["tell_per_s"], "anyio mem stream", out["stream_tell_per_s"],
            True, ">= 3x", tell_vs_stream >= 3.0),
        Row("tell 1->1 (msg/s)", "/s", out["tell_per_s"], "pykka tell", pykka_out["tell_per_s"],
            True, ">= 5x", tell_vs_pykka >= 5.0),
    ]
    if "asyncio_queue_tell_per_s" in out:
        rows.append(Row("tell 1->1 (msg/s)", "/s", out["tell_per_s"], "asyncio.Queue",
                        out["asyncio_queue_tell_per_s"], True))
    rows += [
        Row("fan-in 100->1 (msg/s)", "/s", out["fan_in_per_s"], "anyio mem stream x100",
            out["stream_fan_in_per_s"], True),
        Row("ask p50 (µs)", "us", ask["p50_us"], f"{raw} p50", raw_ask["p50_us"],
            False, "<= 2x", ask_vs_raw <= 2.0),
        Row("ask p99 (µs)", "us", ask["p99_us"], f"{raw} p99", raw_ask["p99_us"], False),
        Row("ask p50 (µs)", "us", ask["p50_us"], "pykka ask p50", pykka_ask["p50_us"], False),
        Row("ask p99 (µs)", "us", ask["p99_us"], "pykka ask p99", pykka_ask["p99_us"], False),
        Row("ask x64 concurrent (asks/s)", "/s", out["ask_concurrent_per_s"], f"{raw} x64",
            out["raw_ask_concurrent_per_s"], True),
        Row("spawn (actors/s)", "/s", out["spawn_per_s"], "naive task+stream *", rss["naive"]["spawn_per_s"],
            True),
        Row("RSS / idle actor", "bytes", rss_exo, "naive task+stream", rss_naive_,
            False, "<= 3 KiB", rss_exo <= 3 * KIB),
    ]
    return rows


# ---- entry point -------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"[bench_kernel] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None, *, prog: str | None = None) -> argparse.Namespace:
    parser = script_parser(
        "kernel",
        description="exoarmur kernel benchmarks against raw baselines measured in the same run.",
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
        "benchmark": "kernel",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "params": attrs.asdict(params),
        "warmups": {"tell": params.tell_warmup, "ask": params.ask_warmup, "spawn": params.spawn_warmup},
        "rounds": ROUNDS,
        "backends": {},
    }

    progress(f"pykka (threads, once): {params.messages:,} tells, {params.asks:,} asks")
    pykka_out = run_pykka(
        messages=params.messages, tell_warmup=params.tell_warmup, asks=params.asks, ask_warmup=params.ask_warmup
    )
    report["pykka"] = pykka_out

    tables: list[tuple[str, list[Row]]] = []
    for backend in backends:
        out = anyio.run(run_backend, params, backend=backend)
        gc.collect()
        rss: dict[str, Any] = {}
        for kind in ("exoarmur", "naive"):
            progress(f"{backend}: RSS of {params.rss_count:,} idle {kind} actors (fresh subprocess)")
            rss[kind] = rss_in_subprocess(backend, kind, params.rss_count)
            progress(f"{backend}: {kind}: {rss[kind]['bytes_per_actor']:,.0f} B per idle actor")
        rows = build_rows(backend, out, pykka_out, rss)
        tables.append((backend, rows))
        report["backends"][backend] = {"results": out, "rss": rss, "rows": [row.as_json() for row in rows]}

    title = (
        f"N={params.messages:,} msgs, {params.asks:,} asks, {params.spawns:,} spawns, "
        f"RSS at {params.rss_count:,} actors"
    )
    notes = [
        LEGEND,
        f"pykka {version('pykka')} (threads) measured once; its figures repeat in each table.",
        "* naive spawn rate: taken in the RSS subprocess (fresh process, K actors).",
    ]
    return close_report(report, tables, started=started, name="kernel", args=args, title=title, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
