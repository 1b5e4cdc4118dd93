"""NATS benchmarks: the actor path (NatsConnection, KvBucket) next to raw nats-py,
measured in the same run against nats-server processes of our own.

    exoarmur bench nats                                 # full run, asyncio and trio
    exoarmur bench nats --quick                         # smaller counts, well under a minute
    python -m exoarmur.benchmarks.bench_nats --backend trio --out /tmp/results

Results go to ./benchmark-results/ (or --out DIR): see report.py.

Per backend, two fresh servers one after the other (`ServerProcess`, 127.0.0.1
only, in a temporary directory, stopped in a `finally`): one with
`sync_interval: always` (`ServerOptions(sync_always=True)`, the embedded
default), then one with the server's default (periodic fsync); one `anyio.run`
against each, started and stopped inside that run.

    benchmark            actor path                          raw nats-py (same client options)
    publish              `await conn.tell(Publish(...))` x N  `await nc.publish(...)` x N,
                         then `await conn.ask(Flush())`       then `await nc.flush()`
    request p50/p99      `await conn.ask(Request(...))`       `await nc.request(...)`
    remote ask p50/p99   `await RemoteRef(...).ask(Echo(...))` `await nc.request(...)` [the
                         to an Echoer in a second actor       target's baseline]
                         system on its own connection,
                         through that system's Gateway
    KV put               `await bucket.ask(Put(...))`         `await kv.put(...)`
    KV get               `await bucket.ask(Get(...))`         leader read `js.get_msg(stream,
                         (a leader read: js.get_msg,          subject=..., direct=False)` [the
                         direct=False)                        ratio's baseline]; `kv.get` (info)

KV figures are taken sequentially and with 64 concurrent callers (64 anyio tasks
on the actor path, 64 asyncio tasks on the raw one). Core figures (publish,
request) do not touch JetStream: they run once, against the sync-always server.
A responder on a raw nats-py connection of its own answers every request
(echoing the payload). The remote ask crosses the same server twice, as the
raw request does: the asking system's connection sends the envelope to the
other system's gateway, which hands it to the Echoer and publishes its reply.

On trio, nats-py runs on a trio-asyncio loop: the actor opens its own
(`actors/nats/aio.py`), and the raw baseline runs on one opened here
(`trio_asyncio.open_loop()`), its timed loop written as plain asyncio code, so
the raw figure is nats-py's own speed on that loop. For publish and request the
trio table adds, for information, raw nats-py with every call crossing the
bridge (`aio_as_trio`), as the actor's calls do.

Inside one `anyio.run` the actor path and its baselines alternate over ROUNDS
rounds (N split evenly, after one warmup of each), as in bench_kernel;
latencies over LATENCY_ROUNDS shorter ones, every other in reverse order. Every
round checks its counts: the server's `in_msgs` (monitoring /varz) grew by at
least the publishes, every reply echoes its request, every get reads the value
put.

The raw side is in benchmarks/nats_baselines.py, the actor side in
benchmarks/nats_actors.py; this script runs them and writes the report.

Audit appends (per sync mode, sequential: one chain is appended in order):
`audit.ask(Append(event))` on an AuditStream actor, next to raw nats-py doing
the same work per record (the chain hash, then `js.publish` with the hash as
Nats-Msg-Id and Nats-Expected-Last-Subject-Sequence) on a subject of its own.

Targets (ratios from the same run):
    publish, KV put x64, KV get x64,
    audit appends:                    actor >= 0.70x raw throughput
    remote ask:                       p50 <= 1.3x raw request p50
"""


from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import attrs
import sniffio

from exoarmur.actors.nats import ConnectionOptions, KvBucket, NatsConnection
from exoarmur.actors.nats.aio import Bridge
from exoarmur.actors.nats.audit_stream import AuditStream
from exoarmur.actors.nats.process import ServerProcess
from exoarmur.actors.remote import RemoteRef
from exoarmur.benchmarks.nats_actors import (
    actor_audit_appends,
    actor_kv_concurrent,
    actor_kv_ops,
    actor_kv_sequential,
    actor_publish,
    actor_request_latencies,
    remote_ask_latencies,
    remote_echoer,
)
from exoarmur.benchmarks.nats_baselines import (
    BUCKET,
    CALL_SECONDS,
    REMOTE_SYSTEM,
    VARZ_POLL_SECONDS,
    bridged_publish,
    nats_versions,
    bridged_request_latencies,
    raw_audit_appends,
    raw_client,
    raw_kv_concurrent,
    raw_kv_ops,
    raw_kv_sequential,
    raw_publish,
    raw_request_latencies,
    raw_side,
    running_server,
    server_in_msgs,
    start_responder,
)
from exoarmur.benchmarks.measure import BACKENDS, Laps, expect, interleave, latency_summary, perf_ns
from exoarmur.benchmarks.report import Row, close_report, machine_info, script_parser
from exoarmur.runtime import ActorRef, ActorSystem

ROUNDS = 5
# Latencies (request, remote ask) alternate in more, shorter rounds, every
# other one in reverse order: one p50 is compared with another taken over
# the same stretch of time, and a noisy second on this VM lands on both.
LATENCY_ROUNDS = 20
PUBLISH_TARGET = 0.70  # actor / raw throughput, at least
KV_TARGET = 0.70  # actor / raw throughput with 64 concurrent callers, at least
REQUEST_TARGET = 1.3  # remote ask p50 / raw request p50, at most

# (label, ServerOptions.sync_always)
SYNC_MODES = (("sync always", True), ("sync default", False))


# ---- parameters -------------------------------------------------------------


@attrs.frozen
class Params:
    publishes: int  # publish, per side, over all rounds
    requests: int  # sequential requests, per side
    kv_sequential: int  # sequential KV puts (and as many gets), per side and sync mode
    kv_concurrent: int  # KV puts (and as many gets) by `callers` concurrent callers
    callers: int = 64
    keys: int = 256  # keys cycled over
    payload: int = 128  # bytes of every publish, request and value

    @property
    def publish_warmup(self) -> int:
        return max(1_000, self.publishes // 20)

    @property
    def request_warmup(self) -> int:
        return max(100, self.requests // 10)

    @property
    def kv_warmup(self) -> int:
        return max(50, self.kv_sequential // 10)

    @property
    def kv_concurrent_warmup(self) -> int:
        return max(2 * self.callers, self.kv_concurrent // 10)


# Sized for trio, where every call of the actor path crosses the trio-asyncio
# bridge (~100+ us each): the full run stays within a few minutes.
FULL = Params(publishes=60_000, requests=3_000, kv_sequential=1_000, kv_concurrent=6_000)
QUICK = Params(publishes=4_000, requests=300, kv_sequential=80, kv_concurrent=600)


async def run_audit(params: Params, audit: ActorRef, raw: Bridge, options: ConnectionOptions, mode: str) -> dict[str, Any]:
    async with raw_client(raw, options, "bench-raw-audit") as nc:
        js = nc.jetstream(timeout=CALL_SECONDS)
        samples = await interleave(
            {
                "actor": partial(actor_audit_appends, audit),
                "raw": on_raw(raw, raw_audit_appends, js, "exoarmur.audit.raw"),
            },
            count=params.kv_sequential,
            warmup=params.kv_warmup,
            rounds=ROUNDS,
        )
    progress(f"{sniffio.current_async_library()} [{mode}]: audit appends done")
    return {name: latency_summary(totals(samples, name)) for name in samples}


# ---- one backend ----------------------------------------------------------------------


def checked_publish(server: ServerProcess, run: Callable[[int, str], Awaitable[float]]):
    """`run`, then check that the server counted at least `count` more messages
    (outside the timing)."""

    async def checked(count: int, tag: str) -> float:
        before = await server_in_msgs(server)
        seconds = await run(count, tag)
        # /varz's totals can trail the PONG that ended the flush by a moment.
        grew = 0
        for _ in range(100):  # bounded: 2 s at most
            grew = await server_in_msgs(server) - before
            if grew >= count:
                break
            await anyio.sleep(VARZ_POLL_SECONDS)
        expect(grew >= count, f"{tag}: the server counted {grew} of {count} publishes")
        return seconds

    return checked


def on_raw(raw: Bridge, fn: Callable[..., Awaitable[Any]], *args: Any) -> Callable[[int, str], Awaitable[Any]]:
    """fn(*args, count) run on the raw side; the `(count, tag)` shape of interleave."""

    async def run(count: int, tag: str) -> Any:
        return await raw.call(fn, *args, count)

    return run


def totals(samples: dict[str, list[list[int]]], name: str) -> list[int]:
    return [ns for chunk in samples[name] for ns in chunk]


async def run_core(
    params: Params, server: ServerProcess, system: ActorSystem, conn: ActorRef, raw: Bridge, options: ConnectionOptions
) -> dict[str, Any]:
    backend = sniffio.current_async_library()
    data = b"x" * params.payload
    out: dict[str, Any] = {}
    async with raw_client(raw, options, "bench-raw") as nc, raw_client(raw, options, "bench-responder") as responder:
        # 1. publish (before any JetStream traffic, so /varz counts only these)
        runs: dict[str, Callable[[int, str], Awaitable[Any]]] = {
            "actor": checked_publish(server, partial(actor_publish, conn, data)),
            "raw": checked_publish(server, on_raw(raw, raw_publish, nc, data)),
        }
        if backend == "trio":
            runs["bridged"] = checked_publish(server, partial(bridged_publish, raw, nc, data))
        seconds = await interleave(runs, count=params.publishes, warmup=params.publish_warmup, rounds=ROUNDS)
        out["publish_per_s"] = {name: params.publishes / sum(s) for name, s in seconds.items()}
        out["publish_round_seconds"] = seconds
        progress(f"{backend}: publish done")

        # 2. request / reply, against a raw responder on its own connection; and
        # a remote ask, to an actor of another system through its gateway
        sub = await raw.call(start_responder, responder)
        async with remote_echoer(options):
            remote = RemoteRef(system, connection="nats", system_name=REMOTE_SYSTEM, path="echo")
            runs = {
                "actor": partial(actor_request_latencies, conn, data),
                "raw": on_raw(raw, raw_request_latencies, nc, data),
                "remote": partial(remote_ask_latencies, remote, data.decode()),
            }
            if backend == "trio":
                runs["bridged"] = partial(bridged_request_latencies, raw, nc, data)
            samples = await interleave(
                runs, count=params.requests, warmup=params.request_warmup, rounds=LATENCY_ROUNDS, alternate=True
            )
        out["request"] = {name: latency_summary(totals(samples, name)) for name in runs}
        await raw.call(sub.unsubscribe)
        progress(f"{backend}: request and remote ask done")
    return out


async def run_kv(params: Params, bucket: ActorRef, raw: Bridge, options: ConnectionOptions, mode: str) -> dict[str, Any]:
    backend = sniffio.current_async_library()
    value = b"v" * params.payload
    keys = [f"k{i}" for i in range(params.keys)]
    callers = params.callers
    out: dict[str, Any] = {}
    async with raw_client(raw, options, "bench-raw-kv") as nc:
        js = nc.jetstream(timeout=CALL_SECONDS)
        kv = await raw.call(js.key_value, BUCKET)  # created by the KvBucket actor
        out["raw_kv_get_direct"] = getattr(kv, "_direct", None)
        actor_ops, raw_ops = actor_kv_ops(bucket, value), raw_kv_ops(nc, kv, value)

        # put: sequential, then `callers` concurrent
        samples = await interleave(
            {
                "actor": partial(actor_kv_sequential, actor_ops["put"], keys),
                "raw": on_raw(raw, raw_kv_sequential, raw_ops["put"], keys),
            },
            count=params.kv_sequential,
            warmup=params.kv_warmup,
            rounds=ROUNDS,
        )
        out["put_sequential"] = {name: latency_summary(totals(samples, name)) for name in samples}
        seconds = await interleave(
            {
                "actor": partial(actor_kv_concurrent, actor_ops["put"], keys, callers),
                "raw": on_raw(raw, raw_kv_concurrent, raw_ops["put"], keys, callers),
            },
            count=params.kv_concurrent,
            warmup=params.kv_concurrent_warmup,
            rounds=ROUNDS,
        )
        out["put_concurrent_per_s"] = {name: params.kv_concurrent / sum(s) for name, s in seconds.items()}
        progress(f"{backend} [{mode}]: KV put done")

        # get: every key holds `value` (the puts above covered them; make sure)
        for key in keys:
            await raw.call(raw_ops["put"], key)
        samples = await interleave(
            {
                "actor": partial(actor_kv_sequential, actor_ops["get"], keys),
                "raw_leader": on_raw(raw, raw_kv_sequential, raw_ops["leader_get"], keys),
                "raw_kv_get": on_raw(raw, raw_kv_sequential, raw_ops["kv_get"], keys),
            },
            count=params.kv_sequential,
            warmup=params.kv_warmup,
            rounds=ROUNDS,
        )
        out["get_sequential"] = {name: latency_summary(totals(samples, name)) for name in samples}
        seconds = await interleave(
            {
                "actor": partial(actor_kv_concurrent, actor_ops["get"], keys, callers),
                "raw_leader": on_raw(raw, raw_kv_concurrent, raw_ops["leader_get"], keys, callers),
                "raw_kv_get": on_raw(raw, raw_kv_concurrent, raw_ops["kv_get"], keys, callers),
            },
            count=params.kv_concurrent,
            warmup=params.kv_concurrent_warmup,
            rounds=ROUNDS,
        )
        out["get_concurrent_per_s"] = {name: params.kv_concurrent / sum(s) for name, s in seconds.items()}
        progress(f"{backend} [{mode}]: KV get done")
    return out


async def run_server(params: Params, data_dir: Path, sync_always: bool, mode: str, core: bool) -> dict[str, Any]:
    """One `anyio.run` against a fresh server: core figures if `core`, then KV and audit."""
    backend = sniffio.current_async_library()
    wall: dict[str, float] = {}
    out: dict[str, Any] = {"section_seconds": wall}
    lap = Laps(backend, progress, wall)

    async with (
        running_server(data_dir, sync_always=sync_always) as server,
        raw_side() as raw,
        ActorSystem(name=f"bench-nats-{backend}") as system,
    ):
        options = ConnectionOptions(urls=[server.url], token=server.token)
        conn = await system.spawn(NatsConnection, name="nats", kwargs={"options": options})
        if core:
            out["core"] = await run_core(params, server, system, conn, raw, options)
            lap("core (publish, request)")
        bucket = await system.spawn(KvBucket, name="kv", kwargs={"bucket": BUCKET, "connection": "nats"})
        out["kv"] = await run_kv(params, bucket, raw, options, mode)
        lap(f"KV [{mode}]")
        audit = await system.spawn(AuditStream, name="audit", kwargs={"connection": "nats", "chain": "actor"})
        out["kv"]["audit"] = await run_audit(params, audit, raw, options, mode)
        lap(f"audit [{mode}]")
    return out


def run_backend(params: Params, backend: str, root: Path) -> dict[str, Any]:
    """Per sync mode: a fresh server, one `anyio.run` on `backend` against it.
    Core NATS (publish, request) involves no JetStream: only the first server's."""
    out: dict[str, Any] = {"backend": backend, "section_seconds": {}, "kv": {}}
    for i, (mode, sync_always) in enumerate(SYNC_MODES):
        data_dir = root / f"{backend}-{'always' if sync_always else 'default'}"
        part = anyio.run(run_server, params, data_dir, sync_always, mode, i == 0, backend=backend)
        gc.collect()
        out["section_seconds"].update(part["section_seconds"])
        out["kv"][mode] = part["kv"]
        if "core" in part:
            out["core"] = part["core"]
    return out


# ---- the report ------------------------------------------------------------------------


def build_rows(backend: str, out: dict[str, Any]) -> list[Row]:
    core = out["core"]
    pub, req = core["publish_per_s"], core["request"]
    rows = [
        Row("publish (msg/s)", "/s", pub["actor"], "raw nc.publish", pub["raw"], True,
            f">= {PUBLISH_TARGET:.2f}x", pub["actor"] / pub["raw"] >= PUBLISH_TARGET),
    ]
    if "bridged" in pub:
        rows.append(Row("publish (msg/s)", "/s", pub["actor"], "raw, each call bridged", pub["bridged"], True))
    remote = req["remote"]
    rows += [
        Row("remote ask p50 (µs)", "us", remote["p50_us"], "raw nc.request p50", req["raw"]["p50_us"], False,
            f"<= {REQUEST_TARGET:.1f}x", remote["p50_us"] / req["raw"]["p50_us"] <= REQUEST_TARGET),
        Row("remote ask p99 (µs)", "us", remote["p99_us"], "raw nc.request p99", req["raw"]["p99_us"], False),
        Row("request p50 (µs)", "us", req["actor"]["p50_us"], "raw nc.request p50", req["raw"]["p50_us"], False),
        Row("request p99 (µs)", "us", req["actor"]["p99_us"], "raw nc.request p99", req["raw"]["p99_us"], False),
    ]
    if "bridged" in req:
        rows.append(Row("request p50 (µs)", "us", req["actor"]["p50_us"], "raw, each call bridged p50",
                        req["bridged"]["p50_us"], False))
    for mode, _ in SYNC_MODES:
        kv = out["kv"][mode]
        ps, pc = kv["put_sequential"], kv["put_concurrent_per_s"]
        gs, gc_ = kv["get_sequential"], kv["get_concurrent_per_s"]

        def rate(summary: dict[str, float]) -> float:
            return 1e6 / summary["mean_us"]

        rows += [
            Row(f"KV put seq (ops/s) [{mode}]", "/s", rate(ps["actor"]), "raw kv.put", rate(ps["raw"]), True),
            Row(f"KV put x64 (ops/s) [{mode}]", "/s", pc["actor"], "raw kv.put", pc["raw"], True,
                f">= {KV_TARGET:.2f}x", pc["actor"] / pc["raw"] >= KV_TARGET),
            Row(f"KV get seq (ops/s) [{mode}]", "/s", rate(gs["actor"]), "raw leader get_msg",
                rate(gs["raw_leader"]), True),
            Row(f"KV get seq (ops/s) [{mode}]", "/s", rate(gs["actor"]), "raw kv.get", rate(gs["raw_kv_get"]), True),
            Row(f"KV get x64 (ops/s) [{mode}]", "/s", gc_["actor"], "raw leader get_msg", gc_["raw_leader"], True,
                f">= {KV_TARGET:.2f}x", gc_["actor"] / gc_["raw_leader"] >= KV_TARGET),
            Row(f"KV get x64 (ops/s) [{mode}]", "/s", gc_["actor"], "raw kv.get", gc_["raw_kv_get"], True),
        ]
        audit = kv.get("audit")
        if audit is not None:
            rows.append(
                Row(f"audit appends (/s) [{mode}]", "/s", rate(audit["actor"]), "raw chained js.publish",
                    rate(audit["raw"]), True, f">= {KV_TARGET:.2f}x",
                    rate(audit["actor"]) / rate(audit["raw"]) >= KV_TARGET)
            )
    return rows


LEGEND = (
    "exoarmur = the actor path (NatsConnection / KvBucket asks); ratio = actor / baseline. "
    "'as fast': throughput, higher is better; 'of base': latency, lower is better.\n"
    "[sync always]: ServerOptions(sync_always=True), `sync_interval: always`, the embedded default; "
    "[sync default]: the server's default (periodic fsync). publish and request: the sync-always server "
    "(no JetStream involved).\n"
    "KV get targets use the raw leader read, js.get_msg(direct=False), what KvGet does; raw kv.get is "
    "shown for information (nats-py reads direct only if the bucket allows it: raw_kv_get_direct in the "
    "JSON). seq: 1e6 / mean latency."
)


def progress(text: str) -> None:
    print(f"[bench_nats] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None, *, prog: str | None = None) -> argparse.Namespace:
    parser = script_parser(
        "nats",
        description="exoarmur's NATS actors (publish, request, KV) against raw nats-py in the same run.",
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
        "benchmark": "nats",
        "machine": machine_info(args.quick),
        "quick": args.quick,
        "params": attrs.asdict(params),
        "warmups": {
            "publish": params.publish_warmup,
            "request": params.request_warmup,
            "kv_sequential": params.kv_warmup,
            "kv_concurrent": params.kv_concurrent_warmup,
        },
        "rounds": ROUNDS,
        "targets": {
            "publish_ratio_at_least": PUBLISH_TARGET,
            "kv_concurrent_ratio_at_least": KV_TARGET,
            "kv_get_baseline": "raw js.get_msg(stream, subject=..., direct=False) (leader read)",
            "request_p50_ratio_at_most": REQUEST_TARGET,
        },
        "sync_modes": {label: {"sync_always": flag} for label, flag in SYNC_MODES},
        "nats": nats_versions(),
        "backends": {},
    }

    tables: list[tuple[str, list[Row]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        report["data_dir_parent"] = tmp
        for backend in backends:
            progress(
                f"{backend}: {params.publishes:,} publishes, {params.requests:,} requests; per sync mode "
                f"{params.kv_sequential:,} sequential and {params.kv_concurrent:,} x{params.callers} KV puts and gets"
            )
            out = run_backend(params, backend, Path(tmp))
            rows = build_rows(backend, out)
            tables.append((backend, rows))
            report["backends"][backend] = {"results": out, "rows": [row.as_json() for row in rows]}

    title = (
        f"{params.publishes:,} publishes, {params.requests:,} requests, KV {params.kv_sequential:,} seq / "
        f"{params.kv_concurrent:,} x{params.callers} per op and sync mode, {params.payload} B payloads, "
        f"{ROUNDS} interleaved rounds"
    )
    return close_report(report, tables, started=started, name="nats", args=args, title=title, notes=[LEGEND])


if __name__ == "__main__":
    sys.exit(main())
