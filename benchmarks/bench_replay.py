"""Replay benchmark: `exoarmur replay --verify` on the audit of N intents,
against the REPLAY_PROCESSING budget, next to a raw read of the same stream.

    exoarmur bench replay                        # 100,000 intents, asyncio and trio
    exoarmur bench replay --quick                # 5,000 intents
    python -m exoarmur.benchmarks.bench_replay --intents 20000 --backend asyncio

Results go to ./benchmark-results/ (or --out DIR): see report.py.

Setup (not timed): one fresh nats-server (127.0.0.1, a temporary directory,
the server's default fsync: the reads measured do not depend on it) gets,
through raw nats-py with many publishes in flight, what a deployment would
hold after N intents each went RECEIVED -> APPROVED -> EXECUTING ->
SUCCEEDED: the records bucket (every write a KV put, its revision read from
the ack; the last one kept per key) and the audit stream (every write's
audit record, `{"kind": "intent", "revision": r, "record": ...}` with its
message id, hash-chained on its tenant's chain, TENANTS tenants), plus one
kernel audit event on chain "main" per KERNEL_EVERY intents. The server is
stopped and, per backend, started again on the same data.

Timed, per backend: `verify` (actors/intents/replay.py) through a
NatsConnection actor: the whole stream read and reduced, every chain and
trail checked, every KV record read and compared. The report must be `ok`
and count every record, intent and KV record, or the run is void. Next to
it, raw nats-py reading the same stream with a pull consumer and no checks
at all (on trio through one trio-asyncio crossing): the floor set by NATS.

Target: verify within REPLAY_PROCESSING (300 s) for the run's records.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import nats
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.replay import AUDIT_STREAM, AUDIT_SUBJECT_PREFIX, verify
from exoarmur.actors.intents.states import IntentState
from exoarmur.actors.intents.trail import chain_of, message_id, transition_event
from exoarmur.actors.nats import ConnectionOptions, NatsConnection
from exoarmur.actors.nats.audit_stream import GENESIS, Record, chain_hash
from exoarmur.benchmarks.measure import BACKENDS, expect, perf_ns
from exoarmur.benchmarks.nats_baselines import (
    CALL_SECONDS,
    CONNECT_ATTEMPT_SECONDS,
    nats_versions,
    raw_client,
    raw_side,
    running_server,
)
from exoarmur.benchmarks.report import Row, close_report, machine_info, script_parser
from exoarmur.runtime import ActorSystem, AuditEvent, ReasonCode, TimeoutCategory, TimeoutPolicy

FULL_INTENTS = 100_000
QUICK_INTENTS = 5_000
TENANTS = 8
KERNEL_EVERY = 20
BUCKET = "exoarmur_intents"
STEPS = (IntentState.APPROVED, IntentState.EXECUTING, IntentState.SUCCEEDED)
WINDOW = 2_000  # setup publishes in flight
RAW_BATCH = 5_000  # messages per raw pull
BUDGET = TimeoutPolicy()[TimeoutCategory.REPLAY_PROCESSING]  # the default; verify's own bound


# ---- setup: raw nats-py, not timed -----------------------------------------------------


async def publish_all(js: Any, messages: Iterable[tuple[str, bytes, dict[str, str] | None]]) -> list[int]:
    """Every message published, WINDOW in flight, in order; their sequences.
    Made as they are sent: orjson's output keeps room to grow, so 100,000
    encoded records held at once would take gigabytes."""
    seqs: list[int] = []
    messages = iter(messages)
    while chunk := list(itertools.islice(messages, WINDOW)):
        acks = await asyncio.gather(*(js.publish(s, data, headers=h, timeout=CALL_SECONDS) for s, data, h in chunk))
        seqs += [ack.seq for ack in acks]
    return seqs


async def build(url: str, token: str, intents: int, tenants: int) -> dict[str, int]:
    """The records bucket and the audit stream of `intents` intents (see the module)."""
    nc = await nats.connect(url, token=token, connect_timeout=CONNECT_ATTEMPT_SECONDS)
    try:
        js = nc.jetstream(timeout=CALL_SECONDS)
        await js.add_stream(StreamConfig(name=AUDIT_STREAM, subjects=[f"{AUDIT_SUBJECT_PREFIX}.>"]))
        await js.create_key_value(bucket=BUCKET, history=1)
        heads: dict[str, tuple[int, str]] = {}
        records = [
            IntentRecord.received(intent_id=f"i-{n}", tenant=f"t{n % tenants}", type="ledger",
                                  params={"target": f"10.0.{n // 256 % 256}.{n % 256}"}, owner="p-bench",
                                  now=1_796_000_000.0 + n, deadline=1_796_000_030.0 + n)  # fmt: skip
            for n in range(intents)
        ]
        audit_records = 0
        for step, state in enumerate((None, *STEPS)):
            if state is not None:
                records = [r.moved(state, now=r.updated + 1, attempt=state is IntentState.EXECUTING) for r in records]
            kv = ((f"$KV.{BUCKET}.{r.kv_key}", r.to_bytes(), None) for r in records)
            records = [r.at(revision) for r, revision in zip(records, await publish_all(js, kv), strict=True)]
            audit = itertools.chain(
                (appended(heads, chain_of(r.tenant), transition_event(r), message_id(r)) for r in records),
                (appended(heads, "main", kernel_event(step, n), None) for n in range(0, intents, KERNEL_EVERY)),
            )
            appends = len(await publish_all(js, audit))
            audit_records += appends
            progress(f"setup: step {step + 1} of {len(STEPS) + 1} stored "
                     f"({len(records):,} KV puts, {appends:,} appends)")  # fmt: skip
        return {"intents": intents, "tenants": tenants, "records": audit_records, "kv_records": intents}
    finally:
        await nc.close()


def appended(heads: dict[str, tuple[int, str]], chain: str, event: dict, msg_id: str | None):
    """The next record of `chain` as an AuditStream publishes it: subject, bytes, message id."""
    position, prev = heads.get(chain, (0, GENESIS))
    record = Record(chain, position, prev, event, chain_hash(chain, prev, position, event))
    heads[chain] = (position + 1, record.hash)
    return f"{AUDIT_SUBJECT_PREFIX}.{chain}", record.to_bytes(), {"Nats-Msg-Id": msg_id or record.hash}


def kernel_event(step: int, n: int) -> dict:
    return AuditEvent(kind="dependency_failed", code=ReasonCode.TIMEOUT_KV_GET, at=float(step * 1_000_000 + n),
                      path=f"tenants/t{n % TENANTS}", detail="bench").to_json()  # fmt: skip


async def setup(data_dir: Path, intents: int, tenants: int) -> dict[str, int]:
    async with running_server(data_dir, sync_always=False) as server:
        return await build(server.url, server.token, intents, tenants)


# ---- timed, per backend -----------------------------------------------------------------


async def raw_read(nc: Any, count: int) -> float:
    """Seconds for raw nats-py to read `count` messages of the stream (a pull
    consumer, acks none, RAW_BATCH per fetch); no decoding, no checks."""
    js = nc.jetstream(timeout=CALL_SECONDS)
    start = perf_ns()
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, mem_storage=True, inactive_threshold=CALL_SECONDS)
    sub = await js.pull_subscribe(f"{AUDIT_SUBJECT_PREFIX}.>", stream=AUDIT_STREAM, config=config)
    read = 0
    while read < count:  # stops at the count: nats-py's fetch waits out its timeout past the end
        read += len(await sub.fetch(min(RAW_BATCH, count - read), timeout=CALL_SECONDS))
    seconds = (perf_ns() - start) / 1e9
    await sub.unsubscribe()
    return seconds


async def run_backend(data_dir: Path, built: dict[str, int]) -> dict[str, Any]:
    async with running_server(data_dir, sync_always=False) as server, raw_side() as raw:
        options = ConnectionOptions(urls=[server.url], token=server.token)
        async with ActorSystem(name="bench-replay") as system:
            await system.spawn(NatsConnection, name="nats", kwargs={"options": options})
            gc.collect()
            start = perf_ns()
            report = await verify(system, records_bucket=BUCKET)
            seconds = (perf_ns() - start) / 1e9
        summary = report.summary
        expect(report.ok, f"replay found problems: {report.lines()[:5]}")
        expect((summary.records, summary.intents, summary.kv_records) == (built["records"], built["intents"],
               built["kv_records"]), f"replay counted {summary}, the setup stored {built}")  # fmt: skip
        async with raw_client(raw, options, "bench-raw-replay") as nc:
            raw_seconds = await raw.call(raw_read, nc, built["records"])
    return {"verify_seconds": seconds, "summary": summary.to_dict(), "raw_read_seconds": raw_seconds}


def build_rows(out: dict[str, Any]) -> list[Row]:
    records, seconds = out["summary"]["records"], out["verify_seconds"]
    rate = records / seconds
    return [
        Row(f"replay --verify, {records:,} records (records/s)", "/s", rate, f"budget: all in {BUDGET:.0f} s",
            records / BUDGET, True, ">= 1.00x", seconds <= BUDGET),
        Row("replay --verify (records/s)", "/s", rate, "raw nats-py read, no checks", records / out["raw_read_seconds"],
            True),
    ]  # fmt: skip


def counts_line(backend: str, out: dict[str, Any]) -> str:
    s = out["summary"]
    return (
        f"{backend}: {s['records']:,} records ({s['intent_records']:,} of {s['intents']:,} intents on "
        f"{s['chains'] - 1} tenant chains, {s['other_records']:,} kernel events on 'main'), {s['kv_records']:,} "
        f"KV records: verify {out['verify_seconds']:.1f} s ({s['records'] / out['verify_seconds']:,.0f} records/s, "
        f"{s['intents'] / out['verify_seconds']:,.0f} intents/s) against a budget of {BUDGET:.0f} s, of which "
        f"reading KV {s['kv_seconds']:.1f} s ({s['kv_records'] / max(s['kv_seconds'], 1e-9):,.0f} gets/s, keys listed "
        f"included); raw read {out['raw_read_seconds']:.1f} s"
    )


LEGEND = (
    "exoarmur = verify through the NatsConnection actor: read, hash every record, fold every intent, read and "
    "compare every KV record. budget: the records/s that REPLAY_PROCESSING allows for this many records "
    "(target: ratio >= 1, i.e. done within the budget). raw: nats-py alone reading the stream, for the floor."
)


def progress(text: str) -> None:
    print(f"[bench_replay] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None, *, prog: str | None = None) -> argparse.Namespace:
    parser = script_parser(
        "replay",
        description="replay --verify of N intents' audit records and KV records, against the REPLAY_PROCESSING budget.",
        prog=prog,
    )
    parser.add_argument(
        "--intents", type=int, metavar="N", help=f"intents (default {FULL_INTENTS:,}; {QUICK_INTENTS:,} with --quick)"
    )
    parser.add_argument("--tenants", type=int, default=TENANTS, metavar="N", help=f"tenants (default {TENANTS})")
    args = parser.parse_args(argv)
    if args.intents is None:
        args.intents = QUICK_INTENTS if args.quick else FULL_INTENTS
    if args.intents < 1 or args.tenants < 1:
        parser.error("--intents and --tenants must be at least 1")
    return args


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run, print and write the report; 0, or 1 if replay took longer than its
    budget. `prog`: how the caller names the command in its help."""
    args = parse_args(argv, prog=prog)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    started = perf_ns()
    report: dict[str, Any] = {
        "benchmark": "replay",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "params": {"intents": args.intents, "tenants": args.tenants, "steps": len(STEPS) + 1,
                   "kernel_every": KERNEL_EVERY, "budget_seconds": BUDGET},  # fmt: skip
        "nats": nats_versions(),
        "backends": {},
    }
    tables: list[tuple[str, list[Row]]] = []
    lines = [LEGEND]
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        data_dir = Path(tmp) / "server"
        progress(f"setup: {args.intents:,} intents of {args.tenants} tenants, {len(STEPS) + 1} writes each")
        built = anyio.run(setup, data_dir, args.intents, args.tenants, backend="asyncio")
        report["built"] = built
        for backend in backends:
            progress(f"{backend}: verify")
            out = anyio.run(run_backend, data_dir, built, backend=backend)
            gc.collect()
            rows = build_rows(out)
            tables.append((backend, rows))
            lines.append(counts_line(backend, out))
            report["backends"][backend] = {"results": out, "rows": [row.as_json() for row in rows]}
    title = f"replay --verify of {args.intents:,} intents ({built['records']:,} audit records)"
    return close_report(report, tables, started=started, name="replay", args=args, title=title, notes=lines)


if __name__ == "__main__":
    sys.exit(main())
