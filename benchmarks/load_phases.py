"""One phase of load: sources submitting open loop at a set total rate for a
set time, then every submission followed to its end; and the ramp that
measures capacity before anything is offered beyond it.

    pace      submission i is due at start + i / rate and goes to source
              i mod len(sources): each source submits at rate / len(sources),
              evenly spaced; a submission is started when due, never held
              back by earlier ones (open loop: the client's lateness is in
              the latency, counted from when it was due)
    ramp      steps at r0, r0 x step_factor, ... each `step_seconds`, until
              a step is past capacity (refused anything, or completed less
              than KEEP_UP of what it offered) or MAX_STEPS; then
              REFINE_STEPS more, each at the geometric midpoint of the
              highest nominal rate and the lowest past one, so the knee is
              found within step_factor ** (1 / 2 ** REFINE_STEPS) (x1.107
              at x1.5). Capacity is the nominal peak: the highest
              throughput a nominal step completed (issue 17: overload is
              held to 90% of it); a step past capacity does not count, its
              throughput includes the burst its empty queues took in

A phase's figures (`figures`) come from its Recorder and its interval rows;
its throughput is what completed between the end of its warm-up and the end
of its pacing, per second.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import anyio
import attrs

from exoarmur.benchmarks.load_fleet import Driving, Fleet, Source, intent_id
from exoarmur.benchmarks.load_record import Recorder, Sampler, percentiles
from exoarmur.benchmarks.load_report import progress
from exoarmur.benchmarks.measure import perf_ns

__all__ = ["Phase", "ramp", "run_phase"]

KEEP_UP = 0.9  # a step that completes less than this share of its offer is past capacity
MAX_STEPS = 12
REFINE_STEPS = 2  # steps bisecting the rates between the last nominal step and the first past it


@attrs.frozen(kw_only=True)
class Phase:
    name: str  # also the intents' id prefix within the run
    rate: float  # submissions a second, all sources together
    seconds: float  # of pacing
    warmup: float  # seconds left out of the throughput and the RSS baseline
    interval: float  # between rows
    tail: float = 0.0  # seconds paced after a `during` (a chaos run's faults) has ended


async def run_phase(
    fleet: Fleet,
    sampler: Sampler,
    sources: list[Source],
    phase: Phase,
    *,
    run: str,
    stream: TextIO,
    driving: Driving,
    during: Callable[[Recorder], Awaitable[None]] | None = None,
) -> tuple[Recorder, dict[str, Any]]:
    """Pace `phase` through `sources`, sampling every interval, then wait
    until every submission has ended (still sampling); its recorder and
    figures. `during(recorder)`, if given, runs beside the pacing (a chaos
    run's faults): pacing goes on until it has ended, `phase.tail` more
    seconds, and `phase.seconds` at least."""
    recorder = Recorder()
    count = max(1, round(phase.rate * phase.seconds))
    seq: dict[str, int] = {}
    # With `during`: paced on until it has ended and `phase.tail` seconds more.
    stop_after: list[float] = [] if during is not None else [0.0]

    async def pace() -> None:
        start = perf_ns()
        for i in itertools.count():
            due = start + round(i * 1e9 / phase.rate)
            if i >= count and stop_after and (due - start) / 1e9 >= stop_after[0]:
                return
            # A client behind schedule still yields once a send, so the sampler and the drives run.
            await anyio.sleep(max((due - perf_ns()) / 1e9, 0.0))
            source = sources[i % len(sources)]
            n = seq[source.name] = seq.get(source.name, -1) + 1
            fleet.submit(source, intent_id(f"{run}{phase.name}", source, n), due, recorder, driving)

    async def alongside(during: Callable[[Recorder], Awaitable[None]]) -> None:
        await during(recorder)
        stop_after.append(recorder.elapsed() + phase.tail)

    with progress(recorder, title=f"{phase.name} at {phase.rate:,.0f}/s", seconds=phase.seconds, stream=stream) as bar:

        async def sample() -> None:
            while True:
                await anyio.sleep(phase.interval)
                recorder.cut(await sampler.sample())
                bar.update()

        async with anyio.create_task_group() as group:
            group.start_soon(sample)
            async with anyio.create_task_group() as pacing:
                if during is not None:
                    pacing.start_soon(alongside, during)
                await pace()
            paced_at = recorder.elapsed()
            with anyio.fail_after(driving.longest):
                while recorder.in_flight:
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        recorder.cut(await sampler.sample())
        bar.update()
    return recorder, figures(recorder, phase, paced_at=paced_at, sources=sources)


def figures(recorder: Recorder, phase: Phase, *, paced_at: float, sources: list[Source]) -> dict[str, Any]:
    rows = recorder.rows
    # Each row counts since the row before it: the window's first row is the
    # first whose interval begins once the warm-up is over.
    first = next((i for i in range(1, len(rows)) if rows[i - 1]["t_s"] >= phase.warmup), len(rows))
    steady = [row for row in rows[first:] if row["t_s"] <= paced_at + 1e-9]
    span = steady[-1]["t_s"] - rows[first - 1]["t_s"] if steady else 0.0
    rss = [row["rss_mb"] for row in rows if row["rss_mb"] is not None]
    after_warmup = [row["rss_mb"] for row in steady if row["rss_mb"] is not None]
    depths = [row for row in rows if row["depth_max"] is not None]
    deepest = max(depths, key=lambda row: row["depth_max"]) if depths else None
    return {
        "nodes": sum(s.kind == "node" for s in sources),
        "peers": sum(s.kind == "peer" for s in sources),
        "tenants": len({s.tenant for s in sources}),
        "offered_per_s": phase.rate,
        "seconds": phase.seconds,
        "paced_s": paced_at,
        "submitted": recorder.submitted_total,
        "submitted_by": dict(recorder.submitted_by),
        "sources_submitting": len(recorder.sources_submitted),
        "accepted": len(recorder.accepted_ids),
        "rejected_by": dict(recorder.rejected_by),
        "rejection_details": recorder.rejection_details,
        "completed_by": dict(recorder.completed_by),
        "unended": len(recorder.unended_ids),
        "errored": dict(recorder.errored),
        "send_late_ms": percentiles(recorder.late_ns),
        "resubmitted": recorder.resubmitted,
        "duplicates": recorder.duplicates,
        "created_twice": recorder.created_twice,
        "client_refused_by": dict(recorder.client_refused_by),
        "throughput_per_s": sum(row["completed"] for row in steady) / span if span > 0 else 0.0,
        "latency": percentiles(recorder.samples_ns),
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        # RSS once warm (the median of the first three rows after warm-up) and at the end of pacing.
        "rss_mb_warm": statistics.median(after_warmup[:3]) if after_warmup else None,
        "rss_mb_end": statistics.median(after_warmup[-3:]) if after_warmup else None,
        "depth_max": deepest["depth_max"] if deepest else None,
        # Mean CPU after warm-up, % of one core: where the machine's two cores went.
        **{f"cpu_{name}_pct": _mean([row.get(f"cpu_{name}_pct") for row in steady]) for name in ("exoarmur", "nats", "load")},
        "depth_max_type": deepest["depth_max_type"] if deepest else None,
    }


def _mean(values: list[float | None]) -> float | None:
    measured = [value for value in values if value is not None]
    return sum(measured) / len(measured) if measured else None


async def ramp(
    fleet: Fleet,
    sampler: Sampler,
    sources: list[Source],
    *,
    start_rate: float,
    step_factor: float,
    step_seconds: float,
    interval: float,
    run: str,
    stream: TextIO,
    driving: Driving,
) -> tuple[float, list[dict[str, Any]]]:
    """Capacity (completed intents a second: the nominal peak) and each
    step's figures, each marked `nominal` or not."""
    steps: list[dict[str, Any]] = []
    nominal_rate, past_rate = 0.0, 0.0  # the highest nominal rate, the lowest past capacity (0: none yet)
    rate, refined = start_rate, 0
    for index in range(MAX_STEPS + REFINE_STEPS):
        phase = Phase(name=f"r{index}", rate=rate, seconds=step_seconds, warmup=step_seconds / 4, interval=interval)
        _, result = await run_phase(fleet, sampler, sources, phase, run=run, stream=stream, driving=driving)
        result["nominal"] = not sum(result["rejected_by"].values()) and result["throughput_per_s"] >= KEEP_UP * rate
        steps.append(result)
        if result["nominal"]:
            nominal_rate = max(nominal_rate, rate)
        else:
            past_rate = min(past_rate, rate) if past_rate else rate
        if past_rate:
            if refined == REFINE_STEPS or not nominal_rate:
                break
            refined += 1
            rate = (nominal_rate * past_rate) ** 0.5
        elif index + 1 == MAX_STEPS:
            break
        else:
            rate *= step_factor
    return nominal_peak(steps), steps


def nominal_peak(steps: list[dict[str, Any]]) -> float:
    """The highest throughput of a nominal step; of any step if none was
    (the first one was past capacity already)."""
    nominal = [step["throughput_per_s"] for step in steps if step["nominal"]]
    return max(nominal or [step["throughput_per_s"] for step in steps])
