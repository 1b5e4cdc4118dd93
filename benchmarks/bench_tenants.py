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
reply. `flood` submits at 10 x RATE a second, open loop, without `wait`:
its answers are counted by code (an accepted intent runs on in the process
beside steady's, as a flood's admitted share would).

Two phases, over ROUNDS rounds of PHASE_SECONDS each, every other round in the
other order (drift hits both alike): steady alone, and steady while flood
floods. Between phases the process settles (its open index empty), so no
phase inherits the other's work.

Figures: steady's p50 and p99 both ways, each latency counted from when
its submit was due (a client late to send it is not let off); steady's
answers that are not its intent SUCCEEDED (a refusal, a timeout, an
intent not ended within its wait); flood's answers by code; the exoarmur
process's CPU. Each tenant submits on a NATS connection of its own.
Targets: steady's p99 with the flood within P99_TARGET x its p99 alone;
every steady submit SUCCEEDED, either way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import attrs
import nats
import orjson

from exoarmur.actors.intents.requests import PREFIX
from exoarmur.benchmarks.intents_system import (
    STRANDED_SECONDS,
    SUCCEEDED,
    CpuMeter,
    IntentClient,
    connected,
    running_exoarmur,
)
from exoarmur.benchmarks.measure import expect, latency_summary, perf_ns
from exoarmur.benchmarks.nats_baselines import CALL_SECONDS, nats_versions, running_server
from exoarmur.benchmarks.report import Row, close_report, machine_info, script_parser, system_backends

P99_TARGET = 1.2  # steady's p99 with the flood / alone, at most
FLOOD_FACTOR = 10  # flood offers this many times its rate limit
STEADY_SHARE = 0.5  # steady offers this share of its rate limit
FLOOD, STEADY = "flood", "steady"
ACCEPTED = "accepted"  # flood's answers that created an intent (not a code: "")
TIMED_OUT = "timed out"  # no answer within CALL_SECONDS (or steady's wait)


@attrs.frozen
class Params:
    rate: float  # each tenant's rate limit, submissions a second
    quota: int  # each tenant's intents not yet settled at once
    phase_seconds: float
    rounds: int

    @property
    def steady_rate(self) -> float:
        return self.rate * STEADY_SHARE

    @property
    def flood_rate(self) -> float:
        return self.rate * FLOOD_FACTOR


FULL = Params(rate=20.0, quota=200, phase_seconds=30.0, rounds=4)
QUICK = Params(rate=20.0, quota=200, phase_seconds=6.0, rounds=2)


def config_text(params: Params) -> str:
    limits = f"rate = {params.rate}\nquota = {params.quota}\n"
    return f"[tenants.{FLOOD}]\n{limits}\n[tenants.{STEADY}]\n{limits}"


# ---- the two tenants' loads -------------------------------------------------------------------


async def open_loop(one: Any, *, rate: float, seconds: float) -> None:
    """`one(i, due_ns)` started at `due_ns` = the start + i/rate s (perf_ns),
    for `seconds`, each in a task of its own (a slow answer never delays
    the next start; a start the client itself is late for still counts
    from when it was due); returns when all are done."""
    count = int(rate * seconds)
    start = perf_ns()
    async with asyncio.TaskGroup() as group:
        for index in range(count):
            due = start + round(index * 1e9 / rate)
            await asyncio.sleep(max(0.0, (due - perf_ns()) / 1e9))
            group.create_task(one(index, due))


class Phase:
    """One phase of one round: steady's latencies and what else it was
    answered, flood's answers by code, the exoarmur process's CPU time."""

    def __init__(self, *, steady: Any, flood: Any, tag: str) -> None:
        self.connections = {STEADY: steady, FLOOD: flood}  # one each: no queue of one slows the other's
        self.tag = tag
        self.latencies_ns: list[int] = []
        self.steady_failed: Counter[str] = Counter()
        self.flood_answers: Counter[str] = Counter()
        self.cpu_s = 0.0

    async def steady(self, index: int, due: int) -> None:
        body = orjson.dumps({"id": f"{self.tag}-{index}", "type": "noop", "wait": STRANDED_SECONDS})
        answer = await self._ask(STEADY, body, STRANDED_SECONDS + CALL_SECONDS)
        if answer.get("ok") is True and answer.get("code") == "" and answer["intent"]["state"] == SUCCEEDED:
            self.latencies_ns.append(perf_ns() - due)
        else:  # a refusal's code, or the state it was in when the wait ran out
            self.steady_failed[answer.get("code") or answer.get("intent", {}).get("state", "?")] += 1

    async def flood(self, index: int, due: int) -> None:
        body = orjson.dumps({"id": f"{self.tag}-f{index}", "type": "noop"})
        answer = await self._ask(FLOOD, body, CALL_SECONDS)
        self.flood_answers[ACCEPTED if answer.get("ok") is True and answer.get("code") == "" else answer["code"]] += 1

    async def _ask(self, tenant: str, body: bytes, timeout: float) -> dict[str, Any]:
        try:
            reply = await self.connections[tenant].request(f"{PREFIX}.{tenant}.submit", body, timeout=timeout)
        except nats.errors.TimeoutError:
            return {"ok": False, "code": TIMED_OUT}
        return orjson.loads(reply.data)


async def run_phase(params: Params, client: IntentClient, flood_nc: Any, *, flooded: bool, tag: str) -> Phase:
    phase = Phase(steady=client.nc, flood=flood_nc, tag=tag)
    cpu = client.cpu.sample()
    async with asyncio.TaskGroup() as group:
        group.create_task(open_loop(phase.steady, rate=params.steady_rate, seconds=params.phase_seconds))
        if flooded:
            group.create_task(open_loop(phase.flood, rate=params.flood_rate, seconds=params.phase_seconds))
    await client.settle()
    phase.cpu_s = CpuMeter.spent(cpu, client.cpu.sample())["cpu_us:exoarmur"] / 1e6
    return phase


async def run_backend(params: Params, root: Path, backend: str) -> dict[str, Any]:
    config = root / "tenants.toml"
    root.mkdir(parents=True)
    config.write_text(config_text(params))
    async with (
        running_server(root / "nats", sync_always=True) as server,
        running_exoarmur(root, backend=backend, server=server, config=config) as process,
        connected(server, "bench-tenants-steady") as nc,
        connected(server, "bench-tenants-flood") as flood_nc,
    ):
        client = IntentClient(nc, tenants=1, cpu=CpuMeter({"exoarmur": process.pid}))
        await run_phase(attrs.evolve(params, phase_seconds=min(2.0, params.phase_seconds)), client, flood_nc,
                        flooded=True, tag="warmup")  # fmt: skip
        phases: dict[str, list[Phase]] = {"alone": [], "flooded": []}
        for i in range(params.rounds):
            order = ["alone", "flooded"] if i % 2 == 0 else ["flooded", "alone"]
            for name in order:
                phase = await run_phase(params, client, flood_nc, flooded=name == "flooded", tag=f"{name}-{i}")
                phases[name].append(phase)
            progress(f"{backend}: round {i + 1} of {params.rounds} done")
    return {name: summary(runs, params) for name, runs in phases.items()}


def summary(runs: list[Phase], params: Params) -> dict[str, Any]:
    latencies = [ns for run in runs for ns in run.latencies_ns]
    expect(bool(latencies), "steady: no intent succeeded")
    return {
        "steady_succeeded": len(latencies),
        **latency_summary(latencies),
        "steady_failed": dict(sum((run.steady_failed for run in runs), Counter())),
        "flood_answers": dict(sum((run.flood_answers for run in runs), Counter())),
        "exoarmur_cpu_share": sum(run.cpu_s for run in runs) / (params.phase_seconds * len(runs)),
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
