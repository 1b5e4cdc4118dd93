"""The load script: exactly 1,000 logical nodes and 500 peer identities
across 10 tenants, against a running exoarmur process or one it starts.

    exoarmur bench load                          # nominal, overload, scale
    exoarmur bench load --scenario nominal --seconds 120
    exoarmur bench load --state-dir .exoarmur    # a process already running
    python -m exoarmur.benchmarks.load_nodes_peers --quick

The sources (load_fleet.py): nodes are actors of exoarmur's runtime in this
process, each bound to a tenant, submitting through one connection actor;
peers each have a NATS connection and client name of their own. Every
intent names its source in its params, and the distinct sources are
counted from the records the system stored.

Scenarios (load_phases.py paces each open loop, submissions dealt round
robin, so each source submits at rate / sources, evenly):

    ramp       measures capacity: steps x1.5 from --start-rate until a
               step is refused or falls behind, then two steps bisecting
               the last rate that held and the first that did not;
               capacity is the nominal peak, the highest throughput of a
               step that held
    nominal    half of capacity (or --rate): no rejection, nothing lost
    overload   2 x capacity: refusals only with OVERLOAD_* or RATE_LIMITED
               codes, completed throughput >= 90% of capacity, the process's
               RSS at the end within 10% of its RSS once warm
    scale      10 x the sources (10,000 nodes and 5,000 peers) at the
               nominal rate: no rejection, nothing lost; a table of what
               changed against nominal

Each scenario runs at least long enough for every source to submit once.
Every run ends by verifying (load_verify.py): every accepted intent's
record terminal, the sources stored, one ledger effect per SUCCEEDED intent,
and `exoarmur replay --verify`. The system it starts: a nats-server
(JetStream fsync on every write) and `exoarmur run` with each tenant's
quota at --quota unsettled intents, so an overload is refused
OVERLOAD_TENANT_QUOTA instead of queued without bound.

Output: a progress bar on stderr; a banner, a table per scenario and the
rows per interval on stdout; JSON (`--out DIR`, or `--json PATH`) and a PNG
plot beside it. Exit 0 when every target and check passes, 1 naming each
that failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import attrs
import nats

from exoarmur.benchmarks import PUBLISHED_DIR, RESULTS_DIR
from exoarmur.benchmarks.load_chaos import FAULTS, RECOVER_SECONDS, SLOW_PENDING, Chaos
from exoarmur.benchmarks.load_fleet import Driving, Source, fleet, sources
from exoarmur.benchmarks.load_phases import Phase, ramp, run_phase
from exoarmur.benchmarks.load_record import Recorder, Sampler
from exoarmur.benchmarks.load_report import banner, interval_table, plot, scenario_table
from exoarmur.benchmarks.load_system import System
from exoarmur.benchmarks.load_verify import (
    Check,
    ledger_check,
    made_check,
    made_ids,
    read_records,
    records_check,
    replay_check,
)
from exoarmur.benchmarks.measure import BACKENDS, perf_ns
from exoarmur.benchmarks.nats_baselines import nats_versions
from exoarmur.benchmarks.report import HelpFormatter, cpu_seconds, machine_info, verdict, write_report

__all__ = ["main"]

SCENARIOS = ("nominal", "overload", "scale", "chaos")
DEFAULT_SCENARIOS = ("nominal", "overload", "scale")
QUICK_SCENARIOS = ("nominal", "overload")
NOMINAL_SHARE = 0.5  # nominal offers this share of the measured capacity
OVERLOAD_FACTOR = 2.0
SCALE_FACTOR = 10
OVERLOAD_KEEPS = 0.9  # overload completes at least this share of capacity
RSS_FLAT = 1.10  # overload's RSS at the end of pacing, at most this x its RSS once warm
LOAD_CODES = ("OVERLOAD_", "RATE_LIMITED")  # the only refusals an overload may get
LATE_MS = 100.0  # the load keeps up: its sends at most this late at p99, or the figures are the client's
# What an intent may end in under chaos other than SUCCEEDED, and why: fail
# closed at its gate, or retries spent in an outage. Anything else is lost.
CHAOS_ENDINGS = {"KILLED": ("KILL_SWITCH_ACTIVE",), "FAILED": ("RETRY_EXHAUSTED",)}
CHAOS_WAIT = 5.0  # a chaos run's submits wait this long: a reply lost to a kill is asked again soon
# A chaos run delivers every submission this many times, at the nominal rate
# divided by it: the service gets the nominal rate of requests, and the
# faults, not an overload, are what it has to come through.
CHAOS_COPIES = 3
# What the slow consumer subscribes to: the submissions, the busiest subjects
# (every delivery passes there, whatever state the system is in).
SLOW_SUBJECTS = "exoarmur.intents.>"


@attrs.frozen(kw_only=True)
class Shape:
    nodes: int
    peers: int
    tenants: int
    seconds: float  # each scenario's pacing, at least (every source submits once)
    step_seconds: float  # each ramp step
    start_rate: float  # the ramp's first step
    step_factor: float  # each step's rate, against the last
    interval: float
    quota: int  # each tenant's unsettled intents, in the process this script starts
    chaos_gap: float  # seconds of plain load before each fault of a chaos run


FULL = Shape(nodes=1000, peers=500, tenants=10, seconds=60.0, step_seconds=8.0, start_rate=40.0, step_factor=1.5,
             interval=1.0, quota=50, chaos_gap=10.0)
QUICK = Shape(nodes=100, peers=50, tenants=10, seconds=3.0, step_seconds=1.5, start_rate=40.0, step_factor=2.0,
              interval=0.5, quota=8, chaos_gap=1.5)  # fmt: skip


def target(name: str, passed: bool, measured: str, threshold: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "measured": measured, "threshold": threshold}


def not_for_load(rejected_by: dict[str, int]) -> dict[str, int]:
    """The refusals whose code is not one of load's."""
    return {code: n for code, n in rejected_by.items() if not code.startswith(LOAD_CODES)}


def scenario_targets(name: str, f: dict[str, Any], *, capacity: float | None) -> list[dict[str, Any]]:
    rejected = sum(f["rejected_by"].values())
    lost = f["accepted"] - f["completed_by"].get("SUCCEEDED", 0)
    late_p99 = f["send_late_ms"]["p99_ms"] or 0.0
    unexpected = {state: codes for state, codes in f.get("codes", {}).items()
                  if state != "SUCCEEDED" and not set(codes) <= set(CHAOS_ENDINGS.get(state, ()))}  # fmt: skip
    refused_here, completed = sum(f["client_refused_by"].values()), sum(f["completed_by"].values())
    accounted = f["submitted"] == f["accepted"] + rejected + refused_here and f["accepted"] == completed + f["unended"]
    everyone = f["nodes"] + f["peers"]
    found = [
        target("every source submitted", f["sources_submitting"] == everyone, f"{f['sources_submitting']:,}", f"{everyone:,}"),
        # Under chaos an intent may end KILLED at its gate (switches unreadable: fail closed) or
        # FAILED with its code (retries spent in an outage): ended, coded, no effect (the ledger
        # check), so not lost. Elsewhere every accepted intent must succeed.
        target("nothing lost", f["unended"] == 0 and (lost == 0 or (name == "chaos" and not unexpected)),
               f"{f['unended']:,} not ended; {lost:,} ended otherwise than SUCCEEDED ({f.get('codes', {})})",
               "0 not ended" + (f", others only {CHAOS_ENDINGS}" if name == "chaos" else ", 0 otherwise than SUCCEEDED")),
        target("the load kept up", not f["client_refused_by"] and late_p99 <= LATE_MS,
               f"{sum(f['client_refused_by'].values()):,} not sent; sent late by {late_p99:,.0f} ms at p99",
               f"0 not sent, <= {LATE_MS:g} ms late"),
        target("every submission accounted for", accounted and not f["errored"],
               f"{f['submitted']:,} = {f['accepted']:,} accepted + {rejected:,} refused + {refused_here:,} not sent; "
               f"{f['accepted']:,} = {completed:,} ended + {f['unended']:,} not; errors {f['errored']}", "exact, 0 errors"),
    ]  # fmt: skip
    if name in ("nominal", "scale"):
        found.append(target("no rejection", rejected == 0, f"{rejected:,} ({f['rejected_by']})", "0"))
    if name == "chaos":  # a backlog after an outage may meet the quota: refusals for load only
        other = not_for_load(f["rejected_by"])
        found.append(target("refused for load only", not other, f"{rejected:,}, other codes {other}",
                            "only OVERLOAD_* or RATE_LIMITED"))  # fmt: skip
    if name in ("nominal", "scale"):
        stored, asked = f["stored"], {"nodes": f["nodes"], "peers": f["peers"]}
        found.append(target("the sources, counted from the stored records", stored == asked,
                            f"{stored['nodes']:,} nodes, {stored['peers']:,} peers",
                            f"{asked['nodes']:,} and {asked['peers']:,}"))  # fmt: skip
    if name == "overload":
        other = not_for_load(f["rejected_by"])
        keeps = f["throughput_per_s"] / capacity if capacity else 0.0
        warm, end = f["rss_mb_warm"], f["rss_mb_end"]
        flat = warm is not None and end is not None and end <= RSS_FLAT * warm
        found += [
            target("refused for load only", not other and rejected > 0, f"{rejected:,}, other codes {other}",
                   "> 0, only OVERLOAD_* or RATE_LIMITED"),
            target("throughput held", keeps >= OVERLOAD_KEEPS, f"{f['throughput_per_s']:,.1f}/s = {keeps:.2f}x capacity",
                   f">= {OVERLOAD_KEEPS:.2f}x"),
            target("RSS flat after warm-up", flat, f"{warm or 0:,.1f} MB -> {end or 0:,.1f} MB", f"<= {RSS_FLAT:.2f}x"),
        ]  # fmt: skip
    return found


def parse_args(argv: list[str] | None, prog: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m exoarmur.benchmarks.load_nodes_peers",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=HelpFormatter,
        epilog="exit status: 0 when every target and check passes, 1 when one fails (each named on stderr), 2 bad usage\n\n"
        f"The figures a checkout publishes, {PUBLISHED_DIR}/latest_load.json, are the last full\n"
        f"run's; a run never writes them. To refresh them, run in full at the checkout's root, then:\n"
        f"    cp {RESULTS_DIR}/latest_load.json {PUBLISHED_DIR}/",
    )
    parser.add_argument("--quick", action="store_true", help="100 nodes, 50 peers, short phases (well under a minute)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="repeatable (default: nominal, overload, scale; quick: nominal and overload)")
    parser.add_argument("--chaos", action="store_true",
                        help="add the chaos scenario: kill -9 and restart, NATS restarted, a network flap, every "
                        "submission delivered three times, a slow consumer, all under load")  # fmt: skip
    parser.add_argument("--nodes", type=int, help="logical nodes (default 1000)")
    parser.add_argument("--peers", type=int, help="peer identities (default 500)")
    parser.add_argument("--tenants", type=int, help="tenants the sources are dealt to (default 10)")
    parser.add_argument("--seconds", type=float, help="each scenario's pacing at least (default 60)")
    parser.add_argument("--rate", type=float, help="nominal's offered rate a second (default: half the measured capacity)")
    parser.add_argument("--capacity", type=float, help="take this capacity instead of measuring it with a ramp")
    parser.add_argument("--quota", type=int, help="each tenant's unsettled intents in the process started (default 50)")
    parser.add_argument("--type", default="ledger", help="the execution type submitted (default ledger)")
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio", help="of the exoarmur process started")
    parser.add_argument("--state-dir", type=Path, help="load a running process, found through its state directory")
    parser.add_argument("--nats-url", action="append", help="load the process serving at this NATS (token in EXOARMUR_NATS_TOKEN)")
    parser.add_argument("--ledger", type=Path, help="the running process's ledger file (default: <state dir>/ledger.jsonl)")
    parser.add_argument("--metrics-url", help="the running process's /metrics (default: from its connection file)")
    parser.add_argument("--no-plot", action="store_true", help="no PNG")
    parser.add_argument("--out", type=Path, default=Path(RESULTS_DIR), metavar="DIR", help=f"results here (default ./{RESULTS_DIR}/)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="this run's JSON here instead of DIR/load-<UTC>.json")
    args = parser.parse_args(argv)
    for name in ("nodes", "peers", "tenants", "quota"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "peers" else 1):
            parser.error(f"--{name} must be a positive integer")
    for name in ("seconds", "rate", "capacity"):
        value = getattr(args, name)
        if value is not None and not (0 < value < 1e6):
            parser.error(f"--{name} must be a positive number")
    if args.state_dir is not None and args.nats_url:
        parser.error("--state-dir or --nats-url, not both")
    if args.chaos:
        args.scenario = [*(args.scenario or (QUICK_SCENARIOS if args.quick else DEFAULT_SCENARIOS)), "chaos"]
    if "chaos" in (args.scenario or ()) and (args.state_dir is not None or args.nats_url):
        parser.error("the chaos scenario kills the process and the server it started: not with --state-dir or --nats-url")
    return args


def shape_of(args: argparse.Namespace) -> Shape:
    base = QUICK if args.quick else FULL
    chosen = {name: getattr(args, name) for name in ("nodes", "peers", "tenants", "seconds", "quota")}
    return attrs.evolve(base, **{name: value for name, value in chosen.items() if value is not None})


async def scenario(
    name: str, system: System, shape: Shape, all_sources: list[Source], *, rate: float, capacity: float | None,
    run: str, kind: str, chaos_class: Callable[..., Chaos] = Chaos,
) -> dict[str, Any]:  # fmt: skip
    """One scenario with its own fleet, its figures, targets and checks (a
    chaos scenario's faults injected beside its pacing, by `chaos_class`)."""
    seconds = max(shape.seconds, len(all_sources) / rate * 1.1)  # every source submits at least once
    driving = Driving(kind=kind)
    sampler = Sampler(pid=system.pid, metrics_url=system.metrics_url, server_pid=system.server_pid)
    chaos = None
    if name == "chaos":  # paced until every fault is over, and a gap more
        chaos = chaos_class(system, sampler, gap=shape.chaos_gap, subject=SLOW_SUBJECTS)
        driving = Driving(kind=kind, wait=CHAOS_WAIT, copies=CHAOS_COPIES)
    phase = Phase(name=name[0], rate=rate, seconds=seconds, warmup=min(seconds / 4, 10.0), interval=shape.interval,
                  tail=shape.chaos_gap)  # fmt: skip
    say(f"{name}: {len(all_sources):,} sources at {rate:,.1f}/s for {seconds:.0f} s")
    async with fleet(all_sources, urls=system.urls, credentials=system.credentials) as sources_ready:
        recorder, figures = await run_phase(sources_ready, sampler, all_sources, phase, run=run, stream=sys.stderr,
                                            driving=driving, during=chaos.inject if chaos else None)  # fmt: skip
        figures["peer_client_errors"] = dict(sources_ready.errors)
    checks = await verify(system, recorder, all_sources, run=f"{run}{phase.name}", kind=kind)
    figures["stored"] = {kind: checks[1].figures[kind] for kind in ("nodes", "peers")}
    figures["codes"] = checks[0].figures.get("codes", {})  # how the intents not SUCCEEDED ended
    targets = scenario_targets(name, figures, capacity=capacity)
    if chaos is not None:
        figures["faults"] = chaos.faults
        targets += chaos_targets(chaos, figures)
    return {
        "description": DESCRIPTIONS[name],
        "figures": figures,
        "targets": targets,
        "checks": [check.as_json() for check in checks],
        "intervals": recorder.rows,
    }


def chaos_targets(chaos: Chaos, f: dict[str, Any]) -> list[dict[str, Any]]:
    """Each fault injected and recovered from; every submission's copies
    made one intent; the slow consumer's backlog grew to its bound."""
    found = []
    for name in FAULTS:
        fault = next((x for x in chaos.faults if x["fault"] == name), None)
        recovered = fault is not None and fault["recovered_s"] is not None
        measured = "not injected" if fault is None else f"{fault['detail']}; recovered in {fault['recovered_s']} s"
        found.append(target(f"{name}: recovered", recovered, measured, f"within {RECOVER_SECONDS:g} s"))
    found.append(target("triple delivery: one intent per id", f["created_twice"] == 0 and f["duplicates"] >= f["accepted"],
                        f"{f['duplicates']:,} duplicates answered for {f['accepted']:,} intents, {f['created_twice']} made twice",
                        "0 made twice, >= 1 duplicate per intent"))  # fmt: skip
    slow = chaos.slow
    grew = slow.most_pending >= SLOW_PENDING // 2 and slow.dropped > 0
    found.append(target("slow consumer: its backlog grew to its bound, then dropped", grew,
                        f"up to {slow.most_pending:,} pending, {slow.dropped:,} dropped",
                        f">= {SLOW_PENDING // 2:,} pending (bound {SLOW_PENDING:,}), > 0 dropped"))  # fmt: skip
    return found


DESCRIPTIONS = {
    "nominal": f"the nominal rate (--rate, else {NOMINAL_SHARE:g} x capacity): no rejection, nothing lost",
    "overload": f"{OVERLOAD_FACTOR:g} x capacity: refused for load only, throughput and memory held",
    "scale": f"{SCALE_FACTOR} x the sources at the nominal rate",
    "chaos": f"a third of the nominal rate, every submission delivered {CHAOS_COPIES} times, through kill -9, a NATS "
    "restart, a network flap and a slow consumer: nothing lost, no duplicate effect",
}


async def verify(system: System, recorder: Recorder, all_sources: list[Source], *, run: str, kind: str) -> list[Check]:
    tenant_of = {source.name: source.tenant for source in all_sources}
    nc = await nats.connect(list(system.urls), name="exoarmur-load-verify", **system.credentials_kwargs())
    try:
        records = await read_records(nc.jetstream(), recorder.accepted_ids, tenant_of)
        made = await made_ids(nc.jetstream(), f"{run}-")
    finally:
        await nc.close()
    terminal, stored = records_check(records, recorder.accepted_ids, recorder.terminal)
    checks = [terminal, stored, made_check(made, recorder.accepted_ids)]
    if kind != "ledger":
        return checks  # only the ledger type leaves effects to count
    if system.ledger is not None and system.ledger.exists():
        checks.append(ledger_check(system.ledger, records, f"{run}-"))
    else:
        checks.append(Check("one ledger effect per SUCCEEDED intent", False, {}, (f"no ledger to read at {system.ledger}",)))
    return checks


# ---- the run ------------------------------------------------------------------------------------


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_all(args: argparse.Namespace, shape: Shape, root: Path, report: dict[str, Any]) -> None:
    names = list(dict.fromkeys(args.scenario or (QUICK_SCENARIOS if args.quick else DEFAULT_SCENARIOS)))
    run = f"L{secrets.token_hex(3)}"
    base = sources(nodes=shape.nodes, peers=shape.peers, tenants=shape.tenants)
    async with AsyncExitStack() as stack:
        system = System(args, root, quota=shape.quota, chaos="chaos" in names)
        await system.start(stack)
        report["environment"].update(system.facts)
        capacity = args.capacity
        if capacity is None and ("overload" in names or args.rate is None):
            say(f"ramp: from {shape.start_rate:g}/s, steps of {shape.step_seconds:g} s")
            async with fleet(base, urls=system.urls, credentials=system.credentials) as ready:
                sampler = Sampler(pid=system.pid, metrics_url=system.metrics_url, server_pid=system.server_pid)
                capacity, steps = await ramp(ready, sampler, base, start_rate=shape.start_rate,
                                             step_factor=shape.step_factor,
                                             step_seconds=shape.step_seconds, interval=shape.interval,
                                             run=run, stream=sys.stderr, driving=Driving(kind=args.type))  # fmt: skip
            report["ramp"] = {"capacity_per_s": capacity, "steps": steps}
            say(f"ramp: capacity {capacity:,.1f} intents/s")
        nominal_rate = args.rate or NOMINAL_SHARE * (capacity or 0.0)
        report["capacity_per_s"] = capacity
        report["nominal_rate_per_s"] = nominal_rate
        for name in names:
            many = sources(nodes=shape.nodes * SCALE_FACTOR, peers=shape.peers * SCALE_FACTOR, tenants=shape.tenants)
            rate = {"overload": OVERLOAD_FACTOR * (capacity or 0.0), "chaos": nominal_rate / CHAOS_COPIES}.get(name, nominal_rate)
            report["scenarios"][name] = await scenario(
                name, system, shape, many if name == "scale" else base, rate=rate, capacity=capacity, run=run, kind=args.type
            )
        say("replay --verify of the whole audit trail")
        report["checks"] = [(await replay_check(system.replay_target, token=system.credentials.token)).as_json()]


def failures(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, result in report["scenarios"].items():
        for item in result["targets"] + result["checks"]:
            if not item["passed"]:
                lines.append(f"{name}: {item['name']}: {item.get('measured') or '; '.join(item.get('problems', []))}")
    lines += [f"run: {c['name']}: {'; '.join(c['problems'])}" for c in report["checks"] if not c["passed"]]
    if not report["scenarios"]:
        lines.append("run: no scenario ran")
    return lines


def print_report(report: dict[str, Any]) -> None:
    print(banner(report["parameters"], report["environment"]))
    if report.get("ramp"):
        print("\nramp (capacity):")
        for step in report["ramp"]["steps"]:
            print(f"  offered {step['offered_per_s']:8,.1f}/s  completed {step['throughput_per_s']:8,.1f}/s  "
                  f"rejected {sum(step['rejected_by'].values()):,}")  # fmt: skip
        print(f"  capacity {report['capacity_per_s']:,.1f} intents/s")
    for name, result in report["scenarios"].items():
        print()
        print(scenario_table(name, result))
        print(f"\n  per {report['parameters']['interval']:g} s:")
        print("\n".join("  " + line for line in interval_table(result["intervals"]).splitlines()))
    if "nominal" in report["scenarios"] and "scale" in report["scenarios"]:
        print()
        print(scale_table(report["scenarios"]["nominal"]["figures"], report["scenarios"]["scale"]["figures"]))
    print()
    for check in report["checks"]:
        print(f"{'PASS' if check['passed'] else 'FAIL'}  {check['name']}: "
              + ", ".join(f"{k} {v}" for k, v in check["figures"].items()))  # fmt: skip
        print("\n".join(f"      {problem}" for problem in check["problems"]))


def scale_table(nominal: dict[str, Any], scale: dict[str, Any]) -> str:
    """What changed from nominal to scale, figure by figure."""
    rows = [
        ("sources", nominal["nodes"] + nominal["peers"], scale["nodes"] + scale["peers"]),
        ("throughput /s", nominal["throughput_per_s"], scale["throughput_per_s"]),
        ("p50 ms", nominal["latency"]["p50_ms"], scale["latency"]["p50_ms"]),
        ("p99 ms", nominal["latency"]["p99_ms"], scale["latency"]["p99_ms"]),
        ("RSS max MB", nominal["rss_mb_max"], scale["rss_mb_max"]),
        ("mailbox depth max", nominal["depth_max"], scale["depth_max"]),
    ]
    lines = ["what changed, nominal -> scale:", f"  {'figure':<18} {'nominal':>12} {'scale':>12} {'ratio':>8}"]
    for label, a, b in rows:
        ratio = f"{b / a:.2f}x" if a and b is not None else "-"
        lines.append(f"  {label:<18} {_num(a):>12} {_num(b):>12} {ratio:>8}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def environment() -> dict[str, Any]:
    machine = machine_info(quick=False)
    return {
        "cores": machine["cpu_count"],
        "memory": f"{machine['memory_total'] / 2**30:.1f} GiB",
        "platform": machine["platform"],
        "python": machine["python"],
        "load average at start": " ".join(f"{x:.2f}" for x in machine["load_average_at_start"]),
        **{name: version_of(name) for name in ("exoarmur", "anyio", "trio", "rich", "matplotlib")},
        **{name: value for name, value in nats_versions().items() if not name.endswith("_path")},
    }


def version_of(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    shape = shape_of(args)
    started = perf_ns()
    report: dict[str, Any] = {
        "benchmark": "load",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "parameters": {**attrs.asdict(shape), "type": args.type,
                       "scenarios": args.scenario or "default", "rate": args.rate, "capacity": args.capacity},
        "environment": environment(),
        "scenarios": {},
        "checks": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        anyio.run(run_all, args, shape, Path(tmp), report, backend="asyncio")
    print_report(report)
    failing = failures(report)
    report["all_targets_pass"] = not failing
    report["failures"] = failing
    report["elapsed_s"] = (perf_ns() - started) / 1e9
    report["cpu_s"] = cpu_seconds()
    report["machine"]["load_average_at_end"] = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    destination = args.json or args.out / f"load-{stamp}.json"
    if not args.no_plot and report["scenarios"]:
        report["plot"] = str(destination.with_suffix(".png").resolve())
        plot(Path(report["plot"]), {name: r["intervals"] for name, r in report["scenarios"].items()},
             title=f"exoarmur bench load: {shape.nodes:,} nodes, {shape.peers:,} peers, {shape.tenants} tenants")  # fmt: skip
        print(f"plot: {report['plot']}")
    write_report(report, name="load", out=args.out, destination=destination, latest=not args.quick)
    return verdict("load", failing, what="target(s) or check(s) failed")


if __name__ == "__main__":
    sys.exit(main())
