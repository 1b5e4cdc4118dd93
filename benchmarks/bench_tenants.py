"""Tenants isolation benchmark: a tenant flooding at 10x its rate limit must
not slow down another tenant that keeps to half of its own.

    exoarmur bench tenants            # full run: asyncio and trio
    exoarmur bench tenants --quick    # one backend, short phases

Per backend, a fresh nats-server and a fresh `exoarmur run --backend B` on it
(benchmarks/intents_system.py), configured with two tenants' limits (the
issue's A and B):

    [tenants.flood]     rate = RATE, burst one second's worth, quota = QUOTA
    [tenants.steady]    the same

`steady` submits `noop` intents open loop at RATE / 2 a second, evenly spaced,
each with `wait`: its latency is submit -> terminal, learnt from its own
reply. `flood` submits at 10 x RATE a second, open loop, without `wait`,
from a client process of its own (benchmarks/tenants_flood.py: its
replies never queue in steady's event loop): its answers are counted by
code (an accepted intent runs on in the process beside steady's, as a
flood's admitted share would).

Two phases, over ROUNDS rounds of PHASE_SECONDS each, every other round in the
other order (drift hits both alike): steady alone, and steady while flood
floods. In a flooded phase the flood starts `flood_lead` seconds (2 in a full run) before
steady's first submit, so steady meets a flood in its steady state (its
bucket's burst already spent) as a continuous flood would be, not the onset
of one every phase; an alone phase waits as long. Between phases the
process settles (its open index empty), so no phase inherits the other's
work.

Figures: steady's p50 and p99 both ways, each latency counted from when
its submit was due (a client late to send it is not let off); steady's
answers that are not its intent SUCCEEDED (a refusal, a timeout, an
intent not ended within its wait); flood's answers by code; the exoarmur
process's CPU.
Targets: steady's p99 with the flood within P99_TARGET x its p99 alone;
every steady submit SUCCEEDED, either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import orjson

from exoarmur.benchmarks import PYTHON
from exoarmur.actors.nats.process import PDEATHSIG, ServerProcess
from exoarmur.benchmarks.intents_system import (
    STRANDED_SECONDS,
    SUCCEEDED,
    CpuMeter,
    IntentClient,
    connected,
    running_exoarmur,
)
from exoarmur.benchmarks.measure import expect, latency_summary, perf_ns
from exoarmur.benchmarks.nats_baselines import CALL_SECONDS, READY_SECONDS, nats_versions, running_server
from exoarmur.benchmarks.report import Row, close_report, machine_info, script_parser, system_backends
from exoarmur.benchmarks.tenants_flood import ask, open_loop

P99_TARGET = 1.2  # steady's p99 with the flood / alone, at most
FLOOD_FACTOR = 10  # flood offers this many times its rate limit
STEADY_SHARE = 0.5  # steady offers this share of its rate limit
FLOOD, STEADY = "flood", "steady"


@attrs.frozen
class Params:
    rate: float  # each tenant's rate limit, submissions a second
    quota: int  # each tenant's intents not yet settled at once
    phase_seconds: float
    rounds: int
    flood_lead: float  # the flood starts this long before steady's submits: its bucket's burst is spent

    @property
    def steady_rate(self) -> float:
        return self.rate * STEADY_SHARE

    @property
    def flood_rate(self) -> float:
        return self.rate * FLOOD_FACTOR


FULL = Params(rate=20.0, quota=200, phase_seconds=30.0, rounds=4, flood_lead=2.0)
QUICK = Params(rate=20.0, quota=200, phase_seconds=6.0, rounds=2, flood_lead=0.5)


def config_text(params: Params) -> str:
    limits = f"rate = {params.rate}\nquota = {params.quota}\n"
    return f"[tenants.{FLOOD}]\n{limits}\n[tenants.{STEADY}]\n{limits}"


# ---- the two tenants' loads -------------------------------------------------------------------


@asynccontextmanager
async def flooding(server: ServerProcess, *, rate: float, seconds: float, tag: str) -> AsyncIterator[Counter[str]]:
    """The flood, as a client process of its own (benchmarks/tenants_flood.py),
    connected before this yields; its answers by code once it is done (the
    Counter yielded is filled as the block ends). It dies with the benchmark."""
    argv = [*PYTHON, "-m", "exoarmur.benchmarks.tenants_flood", server.url, FLOOD, str(rate), str(seconds), tag]
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-I", str(PDEATHSIG), str(os.getpid()), *argv,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "EXOARMUR_NATS_TOKEN": server.token or ""},
    )  # fmt: skip
    assert flood.stdout is not None
    answers: Counter[str] = Counter()
    try:
        ready = await asyncio.wait_for(flood.stdout.readline(), READY_SECONDS)
        expect(ready == b"ready\n", f"the flood did not start: {ready!r}")
        yield answers
        out, _ = await asyncio.wait_for(flood.communicate(), seconds + READY_SECONDS)
        expect(flood.returncode == 0, f"the flood exited with {flood.returncode}")
        answers.update(orjson.loads(out.splitlines()[-1]))
    finally:
        if flood.returncode is None:
            flood.kill()
            await flood.wait()


class Phase:
    """One phase of one round: steady's latencies and what else it was
    answered, flood's answers by code, the exoarmur process's CPU time."""

    def __init__(self, nc: Any, *, tag: str) -> None:
        self.nc = nc
        self.tag = tag
        self.latencies_ns: list[int] = []
        self.steady_failed: Counter[str] = Counter()
        self.flood_answers: Counter[str] = Counter()
        self.cpu_s = self.wall_s = 0.0  # the exoarmur process's CPU time, the phase's wall time (settling included)

    async def steady(self, index: int, due: int) -> None:
        body = orjson.dumps({"id": f"{self.tag}-{index}", "type": "noop", "wait": STRANDED_SECONDS})
        answer = await ask(self.nc, STEADY, body, STRANDED_SECONDS + CALL_SECONDS)
        if answer.get("ok") is True and answer.get("code") == "" and answer["intent"]["state"] == SUCCEEDED:
            self.latencies_ns.append(perf_ns() - due)
        else:  # a refusal's code, or the state it was in when the wait ran out
            self.steady_failed[answer.get("code") or answer.get("intent", {}).get("state", "?")] += 1


async def run_phase(params: Params, client: IntentClient, server: ServerProcess, *, flooded: bool, tag: str) -> Phase:
    phase = Phase(client.nc, tag=tag)
    cpu, started = client.cpu.sample(), perf_ns()
    async with contextlib.AsyncExitStack() as stack:
        if flooded:
            flood_seconds = params.flood_lead + params.phase_seconds
            phase.flood_answers = await stack.enter_async_context(
                flooding(server, rate=params.flood_rate, seconds=flood_seconds, tag=f"{tag}-f")
            )
        await asyncio.sleep(params.flood_lead)  # alone too: the phases differ in the flood only
        await open_loop(phase.steady, rate=params.steady_rate, seconds=params.phase_seconds)
    await client.settle()
    phase.cpu_s = CpuMeter.spent(cpu, client.cpu.sample())["cpu_us:exoarmur"] / 1e6
    phase.wall_s = (perf_ns() - started) / 1e9
    return phase


async def run_backend(params: Params, root: Path, backend: str, *, processes: int = 1) -> dict[str, Any]:
    """Rounds of both phases against `processes` exoarmur processes on one
    nats-server (a submission reaches any; the tenant's owner admits it)."""
    config = root / "tenants.toml"
    root.mkdir(parents=True)
    config.write_text(config_text(params))
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(running_server(root / "nats", sync_always=True))
        process = await stack.enter_async_context(running_exoarmur(root, backend=backend, server=server, config=config))
        for n in range(1, processes):
            (root / f"p{n}").mkdir()
            await stack.enter_async_context(running_exoarmur(root / f"p{n}", backend=backend, server=server, config=config))
        nc = await stack.enter_async_context(connected(server, "bench-tenants-steady"))
        client = IntentClient(nc, tenants=1, cpu=CpuMeter({"exoarmur": process.pid}))
        await run_phase(attrs.evolve(params, phase_seconds=min(2.0, params.phase_seconds)), client, server,
                        flooded=True, tag="warmup")  # fmt: skip
        phases: dict[str, list[Phase]] = {"alone": [], "flooded": []}
        for i in range(params.rounds):
            order = ["alone", "flooded"] if i % 2 == 0 else ["flooded", "alone"]
            for name in order:
                phase = await run_phase(params, client, server, flooded=name == "flooded", tag=f"{name}-{i}")
                phases[name].append(phase)
            progress(f"{backend}: round {i + 1} of {params.rounds} done")
    return {name: summary(runs) for name, runs in phases.items()}


def summary(runs: list[Phase]) -> dict[str, Any]:
    latencies = [ns for run in runs for ns in run.latencies_ns]
    expect(bool(latencies), "steady: no intent succeeded")
    return {
        "steady_succeeded": len(latencies),
        **latency_summary(latencies),
        "steady_failed": dict(sum((run.steady_failed for run in runs), Counter())),
        "flood_answers": dict(sum((run.flood_answers for run in runs), Counter())),
        "exoarmur_cpu_share": sum(run.cpu_s for run in runs) / sum(run.wall_s for run in runs),
    }


# ---- the report ---------------------------------------------------------------------------------


def build_rows(out: dict[str, Any]) -> list[Row]:
    alone, flooded = out["alone"], out["flooded"]
    rows = [
        Row("steady p50, submit -> SUCCEEDED (µs)", "us", flooded["p50_us"], "steady alone p50", alone["p50_us"],
            False),
        Row("steady p99, submit -> SUCCEEDED (µs)", "us", flooded["p99_us"], "steady alone p99", alone["p99_us"],
            False, f"<= {P99_TARGET:.1f}x", flooded["p99_us"] <= P99_TARGET * alone["p99_us"]),
    ]  # fmt: skip
    for name, part in (("with the flood", flooded), ("alone", alone)):
        failed = sum(part["steady_failed"].values())
        rows.append(Row(f"steady not SUCCEEDED, {name} (submits)", "n", failed, "-", None, False, "= 0", failed == 0))
    rows.append(Row("exoarmur process CPU (% of a core)", "n", 100 * flooded["exoarmur_cpu_share"], "alone",
                    100 * alone["exoarmur_cpu_share"], False))  # fmt: skip
    for code, count in sorted(out["flooded"]["flood_answers"].items()):
        rows.append(Row(f"flood answers: {code} (submits)", "n", count, "-", None, False))
    return rows


LEGEND = (
    "steady: noop intents at half its rate limit, evenly spaced, each submit waiting for its end (latency: "
    "submit -> SUCCEEDED from the reply). flood: 10x its rate limit, no wait, answers counted by code "
    "(accepted: an intent created). baseline = steady's own figure in the phases without the flood, "
    "interleaved with the flooded ones in the same run. ratio: lower is better."
)


def progress(text: str) -> None:
    print(f"[bench_tenants] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None, *, prog: str | None = None) -> argparse.Namespace:
    parser = script_parser(
        "tenants",
        description="One tenant floods at 10x its rate limit while another keeps to half of its own, through "
        "`exoarmur run`; the second's latency against its own alone, in the same run. --quick: one backend "
        "(asyncio unless --backend trio), short phases.",
        prog=prog,
    )
    parser.add_argument("--rate", type=float, default=None, help=f"each tenant's rate limit, /s (default {FULL.rate:g})")
    parser.add_argument("--seconds", type=float, default=None, help="each phase's length (default: 30, quick 6)")
    args = parser.parse_args(argv)
    if args.rate is not None and not 1 <= args.rate <= 500:
        parser.error("--rate must be between 1 and 500")
    if args.seconds is not None and not 1 <= args.seconds <= 600:
        parser.error("--seconds must be between 1 and 600")
    return args


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run, print and write the report; 0, or 1 if a target was missed."""
    args = parse_args(argv, prog=prog)
    params = QUICK if args.quick else FULL
    params = attrs.evolve(
        params,
        rate=params.rate if args.rate is None else args.rate,
        phase_seconds=params.phase_seconds if args.seconds is None else args.seconds,
    )
    backends = system_backends(args)
    started = perf_ns()
    report: dict[str, Any] = {
        "benchmark": "tenants",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "params": attrs.asdict(params),
        "config": config_text(params),
        "targets": {"steady_p99_ratio_at_most": P99_TARGET, "steady_not_succeeded": 0},
        "nats": nats_versions(),
        "backends": {},
    }
    tables: list[tuple[str, list[Row]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-tenants-") as tmp:
        for backend in backends:
            progress(f"{backend}: {params.rounds} rounds of {params.phase_seconds:g} s a phase; limits {params.rate:g}/s")
            out = anyio.run(run_backend, params, Path(tmp) / backend, backend, backend="asyncio")
            rows = build_rows(out)
            tables.append((backend, rows))
            report["backends"][backend] = {"results": out, "rows": [row.as_json() for row in rows]}
    title = (
        f"steady at {params.steady_rate:g}/s, flood at {params.flood_rate:g}/s, both limited to {params.rate:g}/s; "
        f"{params.rounds} rounds of {params.phase_seconds:g} s a phase"
    )
    return close_report(report, tables, started=started, name="tenants", args=args, title=title, notes=[LEGEND])


if __name__ == "__main__":
    sys.exit(main())
