"""What the load's gates read back from the system itself (gates_load.py):
stored records and the audit stream's head around a NATS SIGKILL (gate 1),
the admission chain's refusal counts (gate 8), the mailbox capacities on
/metrics (gate 8). Each read opens a nats-py client of its own.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import nats
import orjson
from nats.js.errors import KeyNotFoundError

from exoarmur.actors.nats import events_of
from exoarmur.benchmarks.load_record import per_actor, scrape
from exoarmur.benchmarks.load_system import System
from exoarmur.benchmarks.load_verify import RECORDS

__all__ = ["admission_refusals", "mailbox_capacities", "read_back", "snapshot"]

AUDIT_STREAM = "EXOARMUR_AUDIT"
ADMISSION_SUBJECT = "exoarmur.audit.admission"
SNAPSHOT = 1000  # stored terminal records read before the NATS SIGKILL, at most
TERMINAL = {"SUCCEEDED", "FAILED", "DENIED", "EXPIRED", "KILLED", "REVERTED"}
READ_SECONDS = 30.0


async def _connect(system: System) -> Any:
    return await nats.connect(list(system.urls), name="exoarmur-gates-reads", max_reconnect_attempts=-1,
                              reconnect_time_wait=0.2, **system.credentials_kwargs())  # fmt: skip


async def snapshot(system: System, keys: list[str]) -> dict[str, Any]:
    """Of `keys`, up to SNAPSHOT terminal records (key -> (revision, bytes)),
    and the audit stream's last record (its sequence and bytes)."""
    nc = await _connect(system)
    try:
        with anyio.fail_after(READ_SECONDS):
            js = nc.jetstream()
            kv = await js.key_value(RECORDS)
            records: dict[str, tuple[int, bytes]] = {}
            for key in keys:
                if len(records) >= SNAPSHOT:
                    break
                try:
                    entry = await kv.get(key)
                except KeyNotFoundError:
                    continue
                if orjson.loads(entry.value).get("state") in TERMINAL:
                    records[key] = (entry.revision, entry.value)
            last = (await js.stream_info(AUDIT_STREAM)).state.last_seq
            head = (await js.get_msg(AUDIT_STREAM, last)).data
        return {"records": records, "audit_seq": last, "audit": head}
    finally:
        await nc.close()


async def read_back(system: System, before: dict[str, Any]) -> dict[str, Any]:
    """Each snapshotted record and the audit head read again: how many are
    byte for byte the same (a record gone counts as different)."""
    nc = await _connect(system)
    try:
        with anyio.fail_after(READ_SECONDS):
            js = nc.jetstream()
            kv = await js.key_value(RECORDS)
            same = missing = 0
            for key, (revision, value) in before["records"].items():
                try:
                    entry = await kv.get(key)
                except KeyNotFoundError:
                    missing += 1
                    continue
                same += entry.revision == revision and entry.value == value
            try:
                head: bytes | None = (await js.get_msg(AUDIT_STREAM, before["audit_seq"])).data
            except nats.js.errors.NotFoundError:
                head = None
        return {"records": len(before["records"]), "records_same": same, "records_missing": missing,
                "audit_seq": before["audit_seq"], "audit_same": head == before["audit"],
                "audit_found": head is not None}  # fmt: skip
    finally:
        await nc.close()


async def admission_refusals(system: System) -> tuple[Counter[str], int]:
    """The refusals the admission chain holds, summed by code, and how many
    records it has (each: one or more tenants' refusals in one window)."""
    nc = await _connect(system)
    counted: Counter[str] = Counter()
    try:
        with anyio.fail_after(READ_SECONDS):
            js = nc.jetstream()
            info = await js.stream_info(AUDIT_STREAM, subjects_filter=ADMISSION_SUBJECT)
            expected = (info.state.subjects or {}).get(ADMISSION_SUBJECT, 0)
            sub = await js.subscribe(ADMISSION_SUBJECT, ordered_consumer=True)
            for _ in range(expected):
                msg = await sub.next_msg(timeout=READ_SECONDS)
                for event in events_of(orjson.loads(msg.data).get("event", {})):
                    counted.update({code: int(n) for code, n in event.get("refused", {}).items()})
            await sub.unsubscribe()
        return counted, expected
    finally:
        await nc.close()


def mailbox_capacities(metrics_url: str | None) -> dict[str, float]:
    """exoarmur_mailbox_capacity per actor type, from /metrics ({} without one)."""
    if metrics_url is None:
        return {}
    return per_actor(scrape(metrics_url), "exoarmur_mailbox_capacity")
