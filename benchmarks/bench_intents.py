"""Intents benchmark: execution intents end to end (submit -> SUCCEEDED)
through `exoarmur run`, next to the raw cost of the same durable writes done
with nats-py, in the same run.

    exoarmur bench intents                         # full run: asyncio and trio, both sync modes
    exoarmur bench intents --quick                 # one backend, `sync_interval: always`, < 60 s
    exoarmur bench intents --terminal 1000000 --terminal-only --backend asyncio

Results go to ./benchmark-results/ (or --out DIR): see report.py.

Per backend and sync mode, a fresh nats-server (`ServerProcess`, 127.0.0.1,
a temporary directory; [sync always] is `ServerOptions(sync_always=True)`,
`sync_interval: always`, the embedded default; [sync default] the server's
own periodic fsync) and a fresh `exoarmur run --backend B` on it
(benchmarks/intents_system.py). The client is nats-py on asyncio whatever
B is: it submits over request/reply with `wait`, so the submit's reply
comes once the intent has ended and says SUCCEEDED (one request an intent). Intents go round TENANTS tenants.

For each type (`noop`, `ledger`) and each number in flight (1, 64): a closed
loop (benchmarks/intents_load.py), exoarmur and the raw baseline
(benchmarks/intents_raw.py) alternating over ROUNDS rounds after a warmup of
each, every other round in reverse order. Figures: intents/s (the count over
the time from the first submit to the last SUCCEEDED) and the latency of
each intent, submit -> SUCCEEDED, p50/p99.

What one intent costs is counted, not assumed: around each of exoarmur's
rounds the last sequences of the records bucket, the open index and the
audit stream give the writes, and the JetStream API requests the process
sends give its reads; the raw side checks its own writes the same way. The
CPU time each process spent per intent (exoarmur, nats-server, this client)
is counted too, on both sides: it tells what limits the rate.

Memory (`--terminal N`, 20,000 in a full run, none in a quick one unless
asked; `--terminal-only` for that alone): a fresh server (the server's
default fsync: memory does not depend on it) and process per backend, N
`noop` intents at 64 in flight, the process's RSS before and after
(benchmarks/intents_memory.py).

Targets: exoarmur >= 0.70x the raw rate, per (type, in flight, sync mode);
RSS growth < 100 bytes per terminal intent (judged from 10,000 intents).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import attrs

from exoarmur.actors.intents.service import RECENT_KEYS
from exoarmur.benchmarks.intents_load import Lap
from exoarmur.benchmarks.intents_memory import JUDGED_FROM, LEAK_BOUND, terminal_memory
from exoarmur.benchmarks.intents_raw import DEFAULT_SHAPE, RawIntents, Shape
from exoarmur.benchmarks.intents_system import CpuMeter, IntentClient, Written, connected, running_exoarmur
from exoarmur.benchmarks.measure import expect, interleave, latency_summary, perf_ns
from exoarmur.benchmarks.nats_baselines import nats_versions, running_server
from exoarmur.benchmarks.report import Row, close_report, machine_info, script_parser, system_backends

ROUNDS = 4
RATE_TARGET = 0.70  # exoarmur / raw intents per second, at least
TYPES = ("noop", "ledger")
TENANTS = 8
# (label, ServerOptions.sync_always)
SYNC_MODES = (("sync always", True), ("sync default", False))


@attrs.frozen
class Params:
    serial: int  # intents per side at 1 in flight, per type and sync mode (over all rounds)
    concurrent: int  # the same at `inflight[1]` in flight
    terminal: int  # terminal intents for the memory figure (0: none)
    sync_modes: tuple[str, ...]
    inflight: tuple[int, int] = (1, 64)
    tenants: int = TENANTS

    def count(self, inflight: int) -> int:
        return self.serial if inflight == 1 else self.concurrent

    def warmup(self, inflight: int) -> int:
        return max(2 * self.tenants, 2 * inflight, self.count(inflight) // 10)

    @property
    def terminal_warmup(self) -> int:
        """Past the bound of the service's memo of recent keys (in a run of
        at least that many), so that the slope is what an intent leaves, not
        a bounded memo filling up."""
        return max(200, min(RECENT_KEYS + 1_000, self.terminal))


FULL = Params(serial=400, concurrent=4_000, terminal=20_000, sync_modes=("sync always", "sync default"))
QUICK = Params(serial=40, concurrent=640, terminal=0, sync_modes=("sync always",))


# ---- one server: the rates ----------------------------------------------------------------


async def run_rates(params: Params, root: Path, backend: str, mode: str) -> dict[str, Any]:
    sync_always = dict(SYNC_MODES)[mode]
    cases: dict[str, Any] = {}
    async with (
        running_server(root / "nats", sync_always=sync_always) as server,
        running_exoarmur(root, backend=backend, server=server) as process,
        connected(server, "bench-intents-client") as nc,
        connected(server, "bench-intents-raw") as raw_nc,
    ):
        assert server.process is not None
        cpu = CpuMeter({"exoarmur": process.pid, "nats-server": server.process.pid})
        client = IntentClient(nc, tenants=params.tenants, cpu=cpu)
        raw = RawIntents(raw_nc, tenants=params.tenants, ledger=root / "raw-ledger.jsonl", cpu=cpu)
        await client.open()
        try:
            await raw.open()
            for kind in TYPES:
                for inflight in params.inflight:
                    cases[f"{kind} x{inflight}"] = await run_case(params, client, raw, kind, inflight)
                    progress(f"{backend} [{mode}]: {kind} x{inflight} done")
        finally:
            raw.close()
            await client.close()
        rss = process.rss()
    return {"cases": cases, "rss_at_end": rss, "stranded": client.stranded[:20]}


async def run_case(params: Params, client: IntentClient, raw: RawIntents, kind: str, inflight: int) -> dict[str, Any]:
    """exoarmur and the raw baseline alternating; what one intent cost each."""
    spent = {"exoarmur": Written(), "raw": Written()}
    counted = {"exoarmur": 0, "raw": 0}

    async def exoarmur(count: int, tag: str) -> Lap:
        lap, written = await client.counted_run(kind, count=count, inflight=inflight, tag=f"{kind}{inflight}-{tag}")
        spent["exoarmur"].update(written)
        counted["exoarmur"] += count
        if tag.endswith("warmup"):  # runs first: the baseline makes what was counted here
            raw.shape = Shape.measured({name: n / count for name, n in written.items()})
        return lap

    async def baseline(count: int, tag: str) -> Lap:
        lap, cpu = await raw.run(kind, count=count, inflight=inflight, tag=f"{kind}{inflight}-{tag}")
        spent["raw"].update(cpu)
        counted["raw"] += count
        return lap

    laps = await interleave(
        {"exoarmur": exoarmur, "raw": baseline},
        count=params.count(inflight),
        warmup=params.warmup(inflight),
        rounds=ROUNDS,
        alternate=True,
    )
    out: dict[str, Any] = {name: side_summary(rounds) for name, rounds in laps.items()}
    for name in out:
        out[name]["per_intent"] = {what: n / counted[name] for what, n in sorted(spent[name].items())}
    out["exoarmur"]["stranded"] = spent["exoarmur"]["stranded"]
    out["exoarmur"]["resubmitted"] = spent["exoarmur"]["resubmitted"]
    out["raw"]["shape"] = attrs.asdict(raw.shape)
    return out


def side_summary(laps: list[Lap]) -> dict[str, Any]:
    count, seconds = sum(lap.count for lap in laps), sum(lap.seconds for lap in laps)
    latencies = [ns for lap in laps for ns in lap.latencies_ns]
    return {
        "count": count,
        "seconds": seconds,
        "per_s": count / seconds,
        "round_per_s": [lap.per_s for lap in laps],
        **latency_summary(latencies),
    }


# ---- one server: memory ------------------------------------------------------------------------


async def run_memory(params: Params, root: Path, backend: str, figures: dict[str, Any]) -> None:
    async with (
        running_server(root / "nats", sync_always=False) as server,
        running_exoarmur(root, backend=backend, server=server) as process,
        connected(server, "bench-intents-memory") as nc,
    ):
        assert server.process is not None
        cpu = CpuMeter({"exoarmur": process.pid, "nats-server": server.process.pid})
        client = IntentClient(nc, tenants=params.tenants, cpu=cpu)
        await client.open()
        try:
            await terminal_memory(client, process, count=params.terminal, warmup=params.terminal_warmup, figures=figures)
        finally:
            await client.close()


def run_backend(params: Params, backend: str, root: Path, *, rates: bool) -> dict[str, Any]:
    """Each sync mode, then memory: each a fresh server and process, in its own asyncio run."""
    out: dict[str, Any] = {"backend": backend, "modes": {}, "section_seconds": {}}
    for mode in params.sync_modes if rates else ():
        started = perf_ns()
        where = root / f"{backend}-{mode.replace(' ', '-')}"
        out["modes"][mode] = anyio.run(run_rates, params, where, backend, mode, backend="asyncio")
        out["section_seconds"][mode] = (perf_ns() - started) / 1e9
    if params.terminal:
        started = perf_ns()
        out["memory"] = figures = {}
        try:
            anyio.run(run_memory, params, root / f"{backend}-memory", backend, figures, backend="asyncio")
        except Exception as exc:  # reported, not swallowed: a FAIL row naming it, exit 1
            if not figures.get("done"):
                raise  # nothing measured: the run itself is broken
            figures["stopped"] = first_error(exc)[:1000]
            progress(f"{backend}: memory run stopped after {figures['done']:,} intents: {figures['stopped']}")
        out["section_seconds"]["memory"] = (perf_ns() - started) / 1e9
        progress(f"{backend}: {figures['done']:,} terminal intents, {figures['bytes_per_intent']:.1f} B each")
    return out


def first_error(exc: BaseException) -> str:
    """The first failure inside `exc` (a task group's errors are grouped)."""
    leaves: list[BaseException] = []
    pending = [exc]
    while pending:
        first = pending.pop(0)
        if isinstance(first, BaseExceptionGroup):
            pending[:0] = first.exceptions
        else:
            leaves.append(first)
    leaf = leaves[0]
    more = f" (and {len(leaves) - 1} more)" if len(leaves) > 1 else ""
    return f"{type(leaf).__module__}.{type(leaf).__qualname__}: {leaf}{more}"


# ---- the report ---------------------------------------------------------------------------------


def build_rows(params: Params, out: dict[str, Any]) -> list[Row]:
    rows = []
    for mode, part in out["modes"].items():
        for name, case in part["cases"].items():
            exo, raw = case["exoarmur"], case["raw"]
            ratio = exo["per_s"] / raw["per_s"]
            rows += [
                Row(f"{name} (intents/s) [{mode}]", "/s", exo["per_s"], "raw nats-py writes", raw["per_s"], True,
                    f">= {RATE_TARGET:.2f}x", ratio >= RATE_TARGET),
                Row(f"{name} p50 (µs) [{mode}]", "us", exo["p50_us"], "raw writes p50", raw["p50_us"], False),
                Row(f"{name} p99 (µs) [{mode}]", "us", exo["p99_us"], "raw writes p99", raw["p99_us"], False),
            ]
            if exo["stranded"]:  # acknowledged, then out of the open index unfinished: never driven again
                rows.append(Row(f"{name} stranded (intents) [{mode}]", "intents", exo["stranded"], "-", None, False,
                                "= 0", False))
            if exo.get("resubmitted"):  # answers lost to the client's timeout: the latencies include the waits
                rows.append(Row(f"{name} submits sent again [{mode}]", "submits", exo["resubmitted"], "-", None, False))
    memory = out.get("memory")
    if memory is not None:
        slope, count, done = memory["bytes_per_intent"], memory["intents"], memory["done"]
        judged = count >= JUDGED_FROM  # fewer: the allocator's steps are the figure
        stopped = "stopped" in memory  # the process stalled: a failure whatever its slope so far
        name = f"RSS growth / terminal intent ({count:,} noop)"
        if stopped:
            name = f"RSS growth / terminal intent (stopped at {done:,} of {count:,} noop)"
        rows.append(
            Row(name, "bytes", slope, "-", None, False,
                f"< {LEAK_BOUND:.0f} B" if judged else f"< {LEAK_BOUND:.0f} B from {JUDGED_FROM:,}",
                False if stopped else (slope < LEAK_BOUND if judged else None))
        )
    return rows


def cost_notes(out: dict[str, Any]) -> list[str]:
    """What one intent cost exoarmur, as counted, per sync mode and case."""
    lines = []
    for mode, part in out["modes"].items():
        for name, case in part["cases"].items():
            per, raw = case["exoarmur"]["per_intent"], case["raw"]["per_intent"]
            lines.append(
                f"  [{mode}] {name}: KV writes {per['records'] + per['open']:.2f} (records {per['records']:.2f}, "
                f"open index {per['open']:.2f}), audit events {per['audit_events']:.2f} in {per['audit']:.2f} records "
                f"(raw: {raw['audit']:.2f} records), KV reads {per['reads']:.2f} "
                f"(and of kill switches {per['switch_reads']:.2f}), "
                f"other JetStream API requests {per['other_api']:.2f}; CPU µs per intent, exoarmur / raw: "
                + ", ".join(
                    f"{who.removeprefix('cpu_us:')} {per[who]:,.0f} / {raw[who]:,.0f}"
                    for who in ("cpu_us:exoarmur", "cpu_us:nats-server", "cpu_us:client")
                )
            )
        for intent in part["stranded"]:
            lines.append(
                f"  [{mode}] STRANDED: {intent['tenant']}/{intent['id']} acknowledged, {intent['state']} at revision "
                f"{intent['revision']}, its open-index entry gone: nothing drives it"
            )
    memory = out.get("memory")
    if memory is not None and memory.get("samples"):
        (first, before), (last, after) = memory["samples"][0], memory["samples"][-1]
        lines.append(
            f"  memory: RSS {before / 2**20:,.1f} MiB before, {after / 2**20:,.1f} MiB after {last - first:,} "
            f"terminal intents ({memory['bytes_per_intent']:,.0f} B each; fitted over {len(memory['samples'])} "
            f"samples: {memory['fitted_bytes_per_intent']:,.0f} B)"
            + (f"; {memory['stranded']} stranded" if memory.get("stranded") else "")
            + (f"; {memory['resubmitted']} submits sent again after a timeout" if memory.get("resubmitted") else "")
            + (f"; STOPPED: {memory['stopped']}" if "stopped" in memory else "")
        )
    return lines


LEGEND = (
    "exoarmur = `exoarmur run` as a subprocess, driven over NATS request/reply; intents/s from the first submit "
    "to the last SUCCEEDED, in a closed loop (N in flight: N submitters, each waiting for its intent's SUCCEEDED "
    "before the next). SUCCEEDED is learnt from the submit's own reply, which the service holds until the intent "
    "has ended (`wait`). Latency: submit -> SUCCEEDED seen.\n"
    "raw nats-py writes = per intent the KV reads and writes and audit events counted on exoarmur's side in "
    "the case's warmup, rounded, in exoarmur's order (one audit chain per tenant, each appended one record at a "
    "time, a record holding the events queued meanwhile, as exoarmur's does; "
    "`ledger`: one line + fsync); no request, no actors. Its shape per case is in the JSON "
    "(raw.shape).\n"
    "[sync always]: ServerOptions(sync_always=True), `sync_interval: always`, the embedded default; "
    "[sync default]: the server's default (periodic fsync). ratio = exoarmur / raw; 'as fast': higher is better, "
    "'of base': lower is better."
)


def progress(text: str) -> None:
    print(f"[bench_intents] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None, *, prog: str | None = None) -> argparse.Namespace:
    parser = script_parser(
        "intents",
        description="Execution intents end to end through `exoarmur run`, against the raw cost of the same "
        "durable writes with nats-py, in the same run. --quick: one backend (asyncio unless --backend trio), "
        "sync_interval: always only.",
        prog=prog,
    )
    parser.add_argument(
        "--terminal", type=int, metavar="N", default=None,
        help=f"terminal intents for the memory figure (default: {FULL.terminal:,} in a full run, 0 in a quick one)",
    )  # fmt: skip
    parser.add_argument("--terminal-only", action="store_true", help="measure memory only, no rates")
    parser.add_argument("--tenants", type=int, default=TENANTS, help=f"tenants the intents go round (default {TENANTS})")
    args = parser.parse_args(argv)
    if args.terminal is not None and args.terminal < 0:
        parser.error("--terminal must be 0 or more")
    if args.terminal_only and (args.terminal == 0 or (args.terminal is None and args.quick)):
        parser.error("--terminal-only needs terminal intents: --terminal N, N > 0")
    if args.tenants < 1:
        parser.error("--tenants must be 1 or more")
    return args


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run, print and write the report; 0, or 1 if a target was missed.
    `prog`: how the caller names the command in its help."""
    args = parse_args(argv, prog=prog)
    params = QUICK if args.quick else FULL
    params = attrs.evolve(
        params, terminal=params.terminal if args.terminal is None else args.terminal, tenants=args.tenants
    )
    backends = system_backends(args)
    started = perf_ns()
    report: dict[str, Any] = {
        "benchmark": "intents",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "params": attrs.asdict(params),
        "rounds": ROUNDS,
        "types": list(TYPES),
        "targets": {"rate_ratio_at_least": RATE_TARGET, "rss_bytes_per_terminal_intent_below": LEAK_BOUND},
        "sync_modes": {label: {"sync_always": flag} for label, flag in SYNC_MODES if label in params.sync_modes},
        "raw_shape_until_counted": attrs.asdict(DEFAULT_SHAPE),
        "succeeded_seen_by": "the submit's reply, held by the service until the intent has ended (wait)",
        "nats": nats_versions(),
        "backends": {},
    }
    tables: list[tuple[str, list[Row]]] = []
    notes = [LEGEND, "What one intent cost exoarmur, counted from the streams' sequences and the API requests:"]
    with tempfile.TemporaryDirectory(prefix="bench-intents-") as tmp:
        for backend in backends:
            progress(f"{backend}: {', '.join(params.sync_modes)}; {params.serial:,} intents at 1 in flight and "
                     f"{params.concurrent:,} at {params.inflight[1]}, per type; {params.terminal:,} terminal")  # fmt: skip
            out = run_backend(params, backend, Path(tmp) / backend, rates=not args.terminal_only)
            rows = build_rows(params, out)
            expect(bool(rows), "no figures")
            tables.append((backend, rows))
            report["backends"][backend] = {"results": out, "rows": [row.as_json() for row in rows]}
            notes += [f" {backend}:", *cost_notes(out)]
    title = (
        f"{params.serial:,} intents at 1 / {params.concurrent:,} at {params.inflight[1]} in flight per type and "
        f"sync mode, {params.tenants} tenants, {ROUNDS} interleaved rounds"
        + (f"; {params.terminal:,} terminal intents" if params.terminal else "")
    )
    return close_report(report, tables, started=started, name="intents", args=args, title=title, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
