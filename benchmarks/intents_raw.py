"""The raw baseline of the intents benchmark: per intent, the same durable
writes exoarmur makes, in the same order, done directly with nats-py, on
buckets and a stream of its own made with exoarmur's settings (KV history 1,
one replica; the audit stream's duplicate window), against the same server,
in the same run.

Per intent, as the intent service and the intent actor make them
(actors/intents/service.py, intent.py, store.py, trail.py), in the counts
of a `Shape`: those counted on exoarmur's side in the same run (its warmup,
rounded), so that a change in what exoarmur writes changes the baseline
with it; DEFAULT_SHAPE until then:

    submit    the open-index put, the record's create
    drive     for each update (APPROVED,
              EXECUTING, ..., SUCCEEDED): the audit event of the revision
              in hand, then the record's update on that revision
              (before APPROVED: the kill switches' leader reads, at once;
              `ledger`: one line appended and fsynced before the last)
    done      SUCCEEDED acknowledged: the intent's latency ends
    after     the audit events left (SUCCEEDED's), the open-index entry
              erased (a purge of its subject: no delete marker)
              and the leader reads of the record (a look once settled), in a
              task of its own (at most `inflight` pending), as exoarmur's
              actor finishes while its submitter moves on

An audit append is what AuditStream does with its queue: the events queued
on a tenant's chain while its last record was being stored go in one record
(one event: itself, with the intent's message id
`intent.<tenant>.<id>.<revision>`; several: a batch, under its hash, cut at
BATCH_BYTES), with the chain hash and Nats-Expected-Last-Subject-Sequence,
one record at a time per chain (a task per chain, `Chain.serve`), several
chains in parallel. Values have the shape and size of exoarmur's (the
record's JSON; the event around it).

The ledger's line is written with O_APPEND and fsynced in a worker thread,
with no lock and no flock: the least a durable line costs.

What the baseline leaves out is exoarmur's own work: the request and reply,
the actors, the held reply the client learns SUCCEEDED from.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import attrs
import orjson
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import NotFoundError

from exoarmur.actors.intents.trail import chain_of
from exoarmur.actors.nats.audit_stream import GENESIS, AuditStream, Record, batch_event, chain_hash, in_batches
from exoarmur.benchmarks.intents_load import Lap, closed_loop, intent_id, tenant_of
from exoarmur.benchmarks.intents_system import CpuMeter, last_seq
from exoarmur.benchmarks.measure import expect, perf_ns
from exoarmur.benchmarks.nats_baselines import CALL_SECONDS

__all__ = ["DEFAULT_SHAPE", "RAW_AUDIT", "RAW_OPEN", "RAW_RECORDS", "RawIntents", "Shape"]

RAW_RECORDS = "bench_raw_intents"
RAW_OPEN = "bench_raw_intents_open"
RAW_CONTROLS = "bench_raw_controls"
RAW_AUDIT = "BENCH_RAW_AUDIT"
RAW_AUDIT_PREFIX = "bench.raw.audit"
DUPLICATE_WINDOW = 120.0  # seconds: the audit stream's (StreamEnsure's default)
OWNER = "p-00000000000000aa"
THROUGHPUT = AuditStream.throughput  # the most appends it takes in one go


@attrs.frozen
class Shape:
    """What one intent costs: leader reads of its record, writes of its
    record (a create, then updates), of the open index (its puts; the
    entry is erased once settled, which writes nothing), audit events (in however many records the queue makes), and
    leader reads of the kill switches (the global one and the tenant's,
    sent at once, before APPROVED; a share of the intents make them, as
    the checks of one tenant share a clear reading: actors/controls/gates.py)."""

    reads: int = 0
    records: int = 4
    open: int = 1
    audit: int = 4
    switch_reads: float = 0.5  # per intent: a pair every fourth intent

    @classmethod
    def measured(cls, per_intent: dict[str, float]) -> Shape:
        """The counts exoarmur was seen making, rounded (a resumer's scan adds
        a read and a delete now and then); the switches' reads to the
        hundredth, as their share is."""
        counts: dict[str, float] = {name: round(per_intent[name]) for name in ("reads", "records", "open")}
        counts["audit"] = round(per_intent["audit_events"])
        counts["switch_reads"] = round(per_intent["switch_reads"], 2)
        expect(counts["records"] >= 2, f"not an intent's operations: {per_intent}")
        return cls(**counts)

    def states(self) -> list[str]:
        """The states of the updates, SUCCEEDED last."""
        middle = ("APPROVED", "EXECUTING")
        count = self.records - 1
        return [middle[i] if i < len(middle) else "EXECUTING" for i in range(count - 1)] + ["SUCCEEDED"]


DEFAULT_SHAPE = Shape()  # what exoarmur's code made when this was written


@attrs.define
class Chain:
    """One tenant's audit chain, appended as AuditStream appends it: one
    record at a time, holding every event queued meanwhile (a batch, cut at
    BATCH_BYTES; a lone event keeps its message id). `serve` runs for the
    length of a run, as the actor does."""

    name: str
    subject: str
    queue: asyncio.Queue[tuple[dict[str, Any], str, asyncio.Future[None]]] = attrs.Factory(asyncio.Queue)
    position: int = 0
    prev: str = GENESIS
    last_seq: int = 0
    records: int = 0
    events: int = 0

    async def append(self, event: dict[str, Any], msg_id: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((event, msg_id, done))
        await done

    async def serve(self, js: Any) -> None:
        while True:
            taken = [await self.queue.get()]
            while not self.queue.empty() and len(taken) < THROUGHPUT:
                taken.append(self.queue.get_nowait())
            for part in in_batches(taken, _event):
                failure = None
                try:
                    await self._publish(js, part)
                except Exception as exc:  # the waiting intents fail the run, not this task alone
                    failure = exc
                for *_, done in part:
                    if done.done():  # its waiter was cancelled
                        continue
                    if failure is None:
                        done.set_result(None)
                    else:
                        done.set_exception(failure)

    async def _publish(self, js: Any, part: list[tuple[dict[str, Any], str, Any]]) -> None:
        event = part[0][0] if len(part) == 1 else batch_event([e for e, _, _ in part])
        digest = chain_hash(self.name, self.prev, self.position, event)
        msg_id = part[0][1] if len(part) == 1 else digest
        data = Record(self.name, self.position, self.prev, event, digest).to_bytes()
        headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Subject-Sequence": str(self.last_seq)}
        ack = await js.publish(self.subject, data, headers=headers)
        expect(not ack.duplicate, f"raw audit append {msg_id} acked as a duplicate")
        self.position, self.prev, self.last_seq = self.position + 1, digest, ack.seq
        self.records, self.events = self.records + 1, self.events + len(part)


def _event(item: tuple[dict[str, Any], str, Any]) -> dict[str, Any]:
    return item[0]


def record(tenant: str, intent: str, kind: str, state: str, *, attempts: int, created: float) -> dict[str, Any]:
    """A record of the shape exoarmur stores (actors/intents/record.py)."""
    now = time.time()
    return {
        "v": 1, "id": intent, "tenant": tenant, "type": kind, "params": {}, "state": state, "code": "",
        "detail": "", "key": f"{tenant}.{intent}", "owner": OWNER, "attempts": attempts, "created": created,
        "updated": now, "deadline": created + 600.0, "ttl": 0.0, "revert_at": 0.0,
    }  # fmt: skip


def append_synced(fd: int, line: bytes) -> None:
    os.write(fd, line)
    os.fsync(fd)


class RawIntents:
    """The baseline's state for one server: its buckets, chains and ledger."""

    def __init__(self, nc: Any, *, tenants: int, ledger: Path, cpu: CpuMeter) -> None:
        self.nc = nc
        self.cpu = cpu
        self.js = nc.jetstream(timeout=CALL_SECONDS)
        self.tenants = tenants
        self.ledger_path = ledger
        names = {tenant_of(i, tenants): chain_of(tenant_of(i, tenants)) for i in range(tenants)}
        self.chains = {tenant: Chain(name, f"{RAW_AUDIT_PREFIX}.{name}") for tenant, name in names.items()}
        self.fd = -1
        self.shape = DEFAULT_SHAPE
        self.switch_share = 0.0  # switch reads owed: a pair is read once two are

    async def open(self) -> None:
        js = self.js
        self.records = await js.create_key_value(KeyValueConfig(bucket=RAW_RECORDS, replicas=1, history=1))
        self.index = await js.create_key_value(KeyValueConfig(bucket=RAW_OPEN, replicas=1, history=1))
        await js.create_key_value(KeyValueConfig(bucket=RAW_CONTROLS, replicas=1, history=1))
        await js.add_stream(
            StreamConfig(name=RAW_AUDIT, subjects=[f"{RAW_AUDIT_PREFIX}.>"], num_replicas=1, duplicate_window=DUPLICATE_WINDOW)
        )
        self.fd = os.open(self.ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    async def last_seqs(self) -> dict[str, int]:
        streams = {"records": f"KV_{RAW_RECORDS}", "open": f"KV_{RAW_OPEN}", "audit": RAW_AUDIT}
        seqs = {name: await last_seq(self.js, stream) for name, stream in streams.items()}
        return {**seqs, "audit_events": sum(chain.events for chain in self.chains.values())}

    async def run(self, kind: str, *, count: int, inflight: int, tag: str) -> tuple[Lap, dict[str, float]]:
        """A closed loop of `count` intents, `inflight` at a time; every
        intent's after-work is done when this returns. With the CPU time
        the processes spent on it, and the audit records and events made."""
        before = await self.last_seqs()
        cpu_before = self.cpu.sample()
        slots = asyncio.Semaphore(inflight)
        async with asyncio.TaskGroup() as chains:
            serving = [chains.create_task(chain.serve(self.js)) for chain in self.chains.values()]
            async with asyncio.TaskGroup() as after:

                async def one(index: int) -> int:
                    tenant, intent = tenant_of(index, self.tenants), intent_id(tag, index)
                    finish = await self.intent(tenant, intent, kind)
                    done = perf_ns()
                    await slots.acquire()
                    after.create_task(self._after(finish, slots))
                    return done

                lap = await closed_loop(one, count=count, inflight=inflight)
            for task in serving:
                task.cancel()
        cpu = CpuMeter.spent(cpu_before, self.cpu.sample())  # the after-work done
        made = {name: seq - before[name] for name, seq in (await self.last_seqs()).items()}
        for name, per in (("records", self.shape.records), ("open", self.shape.open), ("audit_events", self.shape.audit)):
            expect(made[name] == per * count, f"raw {name}: {made[name]} writes, {per} x {count} expected")
        return lap, {**cpu, "audit": made["audit"], "audit_events": made["audit_events"]}

    async def _after(self, finish: Any, slots: asyncio.Semaphore) -> None:
        try:
            await finish
        finally:
            slots.release()

    async def intent(self, tenant: str, intent: str, kind: str) -> Any:
        """One intent to SUCCEEDED; returns what is left (a coroutine)."""
        records, chain, shape = self.records, self.chains[tenant], self.shape
        key, open_key = f"{tenant}.{intent}", f"{OWNER}.{tenant}.{intent}"
        created = time.time()
        if shape.open:
            await self.index.put(open_key, b"")
        value = record(tenant, intent, kind, "RECEIVED", attempts=0, created=created)
        revision = await records.create(key, orjson.dumps(value))
        appends = shape.audit
        for state in shape.states():
            if appends:
                await chain.append({"kind": "intent", "revision": revision, "record": value}, f"intent.{key}.{revision}")
                appends -= 1
            if state == "APPROVED":
                self.switch_share += shape.switch_reads
                if self.switch_share >= 2:
                    self.switch_share -= 2
                    await self._switches(tenant)
            if state == "SUCCEEDED" and kind == "ledger":
                line = orjson.dumps({"intent": intent, "tenant": tenant, "key": key, "op": "apply"}) + b"\n"
                await asyncio.to_thread(append_synced, self.fd, line)
            value = record(tenant, intent, kind, state, attempts=0 if state == "APPROVED" else 1, created=created)
            revision = await records.update(key, orjson.dumps(value), last=revision)
        return self._finish(chain, key, open_key, value, revision, appends=appends)

    async def _switches(self, tenant: str) -> None:
        """The kill switches' leader reads (the tenant's and the global one's), at once."""
        subjects = [f"$KV.{RAW_CONTROLS}.kill.tenant.{tenant}", f"$KV.{RAW_CONTROLS}.kill.global"]

        async def read(subject: str) -> None:
            try:
                await self.js.get_msg(f"KV_{RAW_CONTROLS}", subject=subject, direct=False)
            except NotFoundError:  # never set: clear
                pass

        await asyncio.gather(*(read(subject) for subject in subjects))

    async def _finish(
        self, chain: Chain, key: str, open_key: str, value: dict[str, Any], revision: int, *, appends: int
    ) -> None:
        """The audit records left (SUCCEEDED's), the index deletes, the reads left."""
        for n in range(appends):
            msg_id = f"intent.{key}.{revision}" + (f".{n}" if n else "")
            await chain.append({"kind": "intent", "revision": revision, "record": value}, msg_id)
        if self.shape.open:
            await self.js.purge_stream(f"KV_{RAW_OPEN}", subject=f"$KV.{RAW_OPEN}.{open_key}")
        for _ in range(self.shape.reads):
            stored = await self.js.get_msg(f"KV_{RAW_RECORDS}", subject=f"$KV.{RAW_RECORDS}.{key}", direct=False)
            expect(stored.seq == revision, f"raw record {key}: read {stored.seq}, wrote {revision}")
