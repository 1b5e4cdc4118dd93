"""Supervision benchmarks: restart latency, and throughput under a 1% crash rate.

    exoarmur bench supervision                          # full run, asyncio and trio
    exoarmur bench supervision --quick                  # smaller counts, well under a minute
    python -m exoarmur.benchmarks.bench_supervision --backend trio --out /tmp/results

Results go to ./benchmark-results/ (or --out DIR): see report.py.

Each figure is set against a baseline from the same run (docs/benchmarks.md);
each backend runs in its own `anyio.run`:

    benchmark           exoarmur                             baseline
    restart latency     a one_for_one Supervisor, one child, the same `await ref.ask(Ping())`
                        no backoff: t0, `await ref.tell(Crash())`, with no crash before it
                        then `await ref.ask(Ping())` (queued    (p50/p99 in us)
                        behind the crash: crash -> fresh
                        instance -> handled); p50/p99 in us
    throughput          a one_for_one Supervisor with 1,000  the same, 0% crashes
                        children; N messages round-robin with
                        `await ref.tell(m)`, 1% of them Crash
                        (positions drawn by random.Random(seed));
                        each round ends with one ask per child

Inside one `anyio.run` the two sides of each comparison alternate over rounds
(N split evenly, after one warmup of each), as in bench_kernel, so that drift
hits both sides alike. Every round checks its counts: handled + crashed ==
sent, crashed == the planned crashes == the restarts the system counted.

Target: 1% crashes cost <= 10% throughput, i.e.
throughput at 1% / throughput at 0% >= 0.90, judged on the median over the
rounds (`Params.rounds`) of each round's own ratio: the two sides of a round
run back to back, in alternating order, so a pair shares the machine's state.
On the shared VM the machine's speed moves in phases (rounds of one run at
~87 ms and at ~140 ms, for the same work); the median of each side taken
apart then depends on how many of its rounds fell in each phase (one run:
0.82 from the separate medians, 0.945 from the pairs), where a pair's ratio
does not. The paired ratios spread with a standard deviation of about 0.2:
60 rounds put their median's standard error near 0.03 (15 gave about
0.065, as wide as the effect measured). The table also shows each side's
median round and the JSON the ratio of the summed times.

The supervisor allows RestartIntensity(10**9, 1.0): the benchmark measures
restarts, not escalation. Children's mailboxes (capacity 1000, overflow `wait`)
never refuse a message.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import cycle
from typing import Any

import anyio
import attrs
import sniffio

from exoarmur.benchmarks.measure import BACKENDS, Laps, expect, interleave, latency_summary, perf_ns
from exoarmur.benchmarks.report import Row, close_report, machine_info, script_parser
from exoarmur.runtime import Actor, ActorRef, ActorSystem, MessageRegistry, handles, message
from exoarmur.supervisors import ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec

ROUNDS = 5
# Restarts are what is measured, so the supervisor never escalates.
INTENSITY = RestartIntensity(10**9, 1.0)
TARGET_RATIO = 0.90


# ---- parameters -------------------------------------------------------------


@attrs.frozen
class Params:
    restarts: int  # crash -> ask samples (and as many plain asks)
    children: int  # children of the throughput supervisor
    messages: int  # messages per crash rate, over all rounds
    rounds: int  # throughput rounds per crash rate, interleaved
    crash_rate: float = 0.01
    seed: int = 0

    @property
    def restart_warmup(self) -> int:
        return max(50, self.restarts // 10)

    @property
    def message_warmup(self) -> int:
        return max(5 * self.children, self.messages // 20)


# 40,000 messages per round at full size: 40 per child, so the round's closing
# asks are a small part of it.
FULL = Params(restarts=2_000, children=1_000, messages=40_000 * 60, rounds=60)
QUICK = Params(restarts=300, children=200, messages=8_000 * 15, rounds=15)


# ---- the actors and messages under test ---------------------------------------

# A private registry: importing this module never claims names in MESSAGES.
BENCH_MESSAGES = MessageRegistry()


@message("bench.supervision.work", registry=BENCH_MESSAGES)
class Work:
    pass


@message("bench.supervision.crash", registry=BENCH_MESSAGES)
class Crash:
    pass


@message("bench.supervision.ping", registry=BENCH_MESSAGES)
class Ping:
    pass


WORK, CRASH, PING = Work(), Crash(), Ping()


class Tally:
    """Counts shared by every instance of every child of one supervisor: a
    restarted child is a fresh instance, so its own counter starts over."""

    __slots__ = ("handled", "crashed")

    def __init__(self) -> None:
        self.handled = 0
        self.crashed = 0


class Child(Actor):
    mailbox_capacity = 1000  # overflow `wait` (the default): nothing is refused

    def __init__(self, *, tally: Tally) -> None:
        self.tally = tally
        self.count = 0

    @handles(Work)
    def work(self, m: Work) -> None:
        self.count += 1
        self.tally.handled += 1

    @handles(Crash)
    def crash(self, m: Crash) -> None:
        self.tally.crashed += 1
        raise RuntimeError("bench: crash on purpose")

    @handles(Ping)
    def ping(self, m: Ping) -> int:
        return self.count


async def spawn_supervisor(system: ActorSystem, name: str, children: int, tally: Tally) -> list[ActorRef]:
    """A one_for_one Supervisor at `name` with `children` Child actors; their refs."""
    spec = SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        intensity=INTENSITY,
        children=tuple(ChildSpec(f"c{i}", Child, kwargs={"tally": tally}) for i in range(children)),
    )
    await system.spawn(Supervisor, name=name, kwargs={"spec": spec})
    return [system.lookup(f"{name}/c{i}") for i in range(children)]


# ---- 1. restart latency ----------------------------------------------------------


async def restart_latencies(system: ActorSystem, ref: ActorRef, tally: Tally, count: int, tag: str) -> list[int]:
    crashed, restarts = tally.crashed, system.statistics().restarts
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        await ref.tell(CRASH)
        await ref.ask(PING)
        samples[i] = perf_ns() - start
    crashed, restarts = tally.crashed - crashed, system.statistics().restarts - restarts
    expect(crashed == count, f"{tag}: {crashed} crashes of {count}")
    expect(restarts == count, f"{tag}: {restarts} restarts of {count} crashes")
    return samples


async def ask_latencies(ref: ActorRef, count: int, tag: str) -> list[int]:
    samples = [0] * count
    for i in range(count):
        start = perf_ns()
        await ref.ask(PING)
        samples[i] = perf_ns() - start
    return samples


# ---- 2. throughput of one_for_one x children ---------------------------------------


def crash_plan(count: int, crash_rate: float, *, seed: int, tag: str) -> list[Work | Crash]:
    """`count` messages, `round(count * crash_rate)` of them Crash, at positions
    drawn from random.Random (seeded by `seed` and `tag`: the same in every run)."""
    messages: list[Work | Crash] = [WORK] * count
    for i in random.Random(f"{seed}/{tag}").sample(range(count), round(count * crash_rate)):
        messages[i] = CRASH
    return messages


async def supervised_throughput(
    system: ActorSystem, refs: list[ActorRef], tally: Tally, crash_rate: float, seed: int, count: int, tag: str
) -> dict[str, Any]:
    messages = crash_plan(count, crash_rate, seed=seed, tag=tag)
    crashes = sum(1 for m in messages if m is CRASH)
    handled, crashed, restarts = tally.handled, tally.crashed, system.statistics().restarts
    gc.collect()
    start = perf_ns()
    for ref, msg in zip(cycle(refs), messages):
        await ref.tell(msg)
    for ref in refs:  # all done: each child has handled (or crashed on) its share
        await ref.ask(PING)
    elapsed = perf_ns() - start
    handled, crashed = tally.handled - handled, tally.crashed - crashed
    restarts = system.statistics().restarts - restarts
    expect(handled + crashed == count, f"{tag}: handled {handled} + crashed {crashed} != sent {count}")
    expect(crashed == crashes, f"{tag}: {crashed} crashes, {crashes} planned")
    expect(restarts == crashes, f"{tag}: {restarts} restarts of {crashes} crashes")
    return {"seconds": elapsed / 1e9, "sent": count, "handled": handled, "crashed": crashed, "restarts": restarts}


# ---- one backend ----------------------------------------------------------------------


async def run_backend(params: Params) -> dict[str, Any]:
    backend = sniffio.current_async_library()
    wall: dict[str, float] = {}
    out: dict[str, Any] = {"backend": backend, "section_seconds": wall}
    lap = Laps(backend, progress, wall)

    async with ActorSystem(name=f"bench-supervision-{backend}") as system:
        # 1. restart latency, against the same ask without a crash
        tally = Tally()
        (ref,) = await spawn_supervisor(system, "sup-latency", 1, tally)
        runs: dict[str, Callable[[int, str], Awaitable[Any]]] = {
            "restart": partial(restart_latencies, system, ref, tally),
            "ask": partial(ask_latencies, ref),
        }
        samples = await interleave(runs, count=params.restarts, warmup=params.restart_warmup, rounds=ROUNDS)
        out["restart"] = latency_summary([ns for chunk in samples["restart"] for ns in chunk])
        out["ask"] = latency_summary([ns for chunk in samples["ask"] for ns in chunk])
        await system.stop(system.lookup("sup-latency"))
        lap("restart latency")

        # 2. throughput at 0% and at crash_rate, the same supervisor and children
        tally = Tally()
        refs = await spawn_supervisor(system, "sup", params.children, tally)
        lap(f"spawn supervisor with {params.children:,} children")
        runs = {
            "0%": partial(supervised_throughput, system, refs, tally, 0.0, params.seed),
            "crashing": partial(supervised_throughput, system, refs, tally, params.crash_rate, params.seed),
        }
        rounds = await interleave(
            runs, count=params.messages, warmup=params.message_warmup, rounds=params.rounds, alternate=True
        )
        for name, key in (("0%", "calm"), ("crashing", "crashing")):
            fields = ("sent", "handled", "crashed", "restarts")
            totals = {field: sum(r[field] for r in rounds[name]) for field in fields}
            seconds = sum(r["seconds"] for r in rounds[name])
            median = statistics.median(r["sent"] / r["seconds"] for r in rounds[name])
            out[key] = {**totals, "seconds": seconds, "per_s": totals["sent"] / seconds, "median_per_s": median}
        paired = [calm["seconds"] / crashing["seconds"] for calm, crashing in zip(rounds["0%"], rounds["crashing"])]
        out["ratio_of_medians"] = out["crashing"]["median_per_s"] / out["calm"]["median_per_s"]
        out["ratio_of_sums"] = out["crashing"]["per_s"] / out["calm"]["per_s"]
        out["paired_ratios"] = paired
        out["median_paired_ratio"] = statistics.median(paired)
        out["round_results"] = rounds
        lap("throughput")
    return out


# ---- the report ------------------------------------------------------------------------


def build_rows(params: Params, out: dict[str, Any]) -> list[Row]:
    restart, ask = out["restart"], out["ask"]
    calm, crashing = out["calm"], out["crashing"]
    paired = out["median_paired_ratio"]
    pct = f"{params.crash_rate:.0%}"
    return [
        Row("restart latency p50 (µs)", "us", restart["p50_us"], "ask p50, no crash", ask["p50_us"], False),
        Row("restart latency p99 (µs)", "us", restart["p99_us"], "ask p99, no crash", ask["p99_us"], False),
        Row("restart overhead p50 (µs)", "us", restart["p50_us"] - ask["p50_us"], "-", None, False),
        Row(f"one_for_one x{params.children:,}, {pct} crashes (msg/s, median round)", "/s", crashing["median_per_s"],
            "same, 0% crashes", calm["median_per_s"], True),
        Row(f"{pct} / 0% throughput, median of {params.rounds} paired rounds", "x", paired, "-", None, True,
            f">= {TARGET_RATIO:.2f}x", paired >= TARGET_RATIO),
    ]


def counts_lines(backend: str, params: Params, out: dict[str, Any]) -> list[str]:
    lines = []
    for key, label in (("calm", "0%"), ("crashing", f"{params.crash_rate:.0%}")):
        c = out[key]
        lines.append(
            f"{backend}, {label} crashes: sent {c['sent']:,} = handled {c['handled']:,} + crashed "
            f"{c['crashed']:,}; restarts {c['restarts']:,}; {c['seconds']:.2f} s"
        )
    lines.append(
        f"{backend}: 1% / 0% throughput: {out['ratio_of_medians']:.3f} (medians), {out['ratio_of_sums']:.3f} "
        f"(sums), {out['median_paired_ratio']:.3f} (median of paired rounds)"
    )
    return lines


LEGEND = (
    "ratio = exoarmur / baseline. 'as fast': throughput, higher is better. "
    "'of base': latency, lower is better. restart latency: tell(Crash) then ask(Ping), "
    "the ask queued behind the crash."
)


def progress(text: str) -> None:
    print(f"[bench_supervision] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None, *, prog: str | None = None) -> argparse.Namespace:
    parser = script_parser(
        "supervision",
        description="exoarmur supervision benchmarks: restart latency, and throughput at 0% and 1% crashes.",
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
        "benchmark": "supervision",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "params": attrs.asdict(params),
        "warmups": {"restarts": params.restart_warmup, "messages": params.message_warmup},
        "rounds": {"restart": ROUNDS, "throughput": params.rounds},
        "intensity": attrs.asdict(INTENSITY),
        "target": {"throughput_ratio_at_least": TARGET_RATIO},
        "backends": {},
    }

    tables: list[tuple[str, list[Row], list[str]]] = []
    for backend in backends:
        progress(
            f"{backend}: {params.restarts:,} restarts; {params.messages:,} msgs x 2 over "
            f"{params.children:,} children"
        )
        out = anyio.run(run_backend, params, backend=backend)
        gc.collect()
        rows = build_rows(params, out)
        tables.append((backend, rows, counts_lines(backend, params, out)))
        report["backends"][backend] = {"results": out, "rows": [row.as_json() for row in rows]}

    title = (
        f"{params.restarts:,} restarts; {params.children:,} children, {params.messages:,} msgs "
        f"per crash rate; {ROUNDS} and {params.rounds} interleaved rounds"
    )
    notes = [LEGEND, *(line for _, _, lines in tables for line in lines)]
    return close_report(report, [(backend, rows) for backend, rows, _ in tables], started=started,
                        name="supervision", args=args, title=title, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
