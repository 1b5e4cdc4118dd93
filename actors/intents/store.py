"""Intent records in JetStream KV, written by compare-and-set only.

Two buckets, each behind its KvBucket actor (its breaker, its deadlines):

    records   <tenant>.<id> -> the IntentRecord (actors/intents/record.py)
    open      <owner>.<tenant>.<id> (no value): the index of intents not yet settled

`open` is what a process reads at start to find the intents it must resume
(listing the records would read every intent ever made). Its entry is
written before the record is created and deleted only once the intent is
terminal and its last transition audited, so a crash at any point leaves
either an entry to resume from or nothing that needs it: an entry whose
record does not exist is a submission that was never acknowledged, and is
dropped.

Fencing: every write of a record is an update on the revision it was read
at. A process that lost its lease finds the record moved on under another
owner and gets LEASE_LOST, never a second writer on the same revision.
"""

from __future__ import annotations

import time

import attrs
import orjson

from exoarmur.actors.intents.record import IntentRecord, intent_key
from exoarmur.actors.nats import Create, Delete, Get, Keys, KvEntry, Put, Update
from exoarmur.runtime import ActorRef, Conflict, ExoarmurError, ReasonCode, ask_all

__all__ = ["IntentStore"]


@attrs.frozen
class IntentStore:
    records: ActorRef
    open: ActorRef  # the index of unsettled intents

    async def load(self, tenant: str, intent_id: str) -> IntentRecord | None:
        entry: KvEntry | None = await self.records.ask(Get(intent_key(tenant, intent_id)))
        if entry is None:
            return None
        return IntentRecord.from_bytes(entry.value, revision=entry.revision)

    async def load_many(self, tenant: str, ids: list[str]) -> list[IntentRecord]:
        """These intents' records, read at once, in the order of `ids` (absent ones left out)."""
        entries = await ask_all((self.records, Get(intent_key(tenant, intent_id))) for intent_id in ids)
        return [IntentRecord.from_bytes(e.value, revision=e.revision) for e in entries if e is not None]

    async def create(self, record: IntentRecord) -> tuple[IntentRecord, bool]:
        """The record as stored, and whether this call created it (False: an
        intent with this id existed; it is returned as it is)."""
        try:
            revision = await self.records.ask(Create(record.kv_key, record.to_bytes()))
        except ExoarmurError as exc:
            if exc.code is not ReasonCode.KV_CONFLICT:
                raise
            existing = await self.load(record.tenant, record.id)
            if existing is None:  # deleted between the two: never by exoarmur
                raise
            return existing, False
        return record.at(revision), True

    async def write(self, before: IntentRecord, after: IntentRecord) -> IntentRecord:
        """`after` stored on `before`'s revision, at its new revision. Lost to
        another writer: LEASE_LOST if the record now has another owner, else
        KV_CONFLICT."""
        try:
            revision = await self.records.ask(Update(after.kv_key, after.to_bytes(), before.revision))
        except ExoarmurError as exc:
            if exc.code is not ReasonCode.KV_CONFLICT:
                raise
            now = await self.load(before.tenant, before.id)
            if now is not None and now.owner != before.owner:
                raise Conflict(
                    ReasonCode.LEASE_LOST, f"{before.kv_key} is owned by {now.owner!r} since revision {now.revision}"
                ) from None
            raise
        return after.at(revision)

    # ---- the index of unsettled intents --------------------------------------
    # The owner leads the key, so one owner's entries are read by a filter
    # and a takeover scan needs no read per entry.

    async def mark_open(self, owner: str, tenant: str, intent_id: str) -> None:
        """The entry says when it was written (wall clock): see drop_orphan."""
        await self.open.ask(Put(f"{owner}.{intent_key(tenant, intent_id)}", orjson.dumps({"at": time.time()})))

    async def mark_settled(self, owner: str, tenant: str, intent_id: str) -> None:
        """Erased, not deleted: the index keeps no marker of every intent
        that ever settled, so a scan reads only the unsettled ones."""
        await self.open.ask(Delete(f"{owner}.{intent_key(tenant, intent_id)}", erase=True))

    async def is_open(self, owner: str, tenant: str, intent_id: str) -> bool:
        """Whether `owner`'s index entry of the intent is there."""
        return await self.open.ask(Get(f"{owner}.{intent_key(tenant, intent_id)}")) is not None

    async def drop_orphan(self, owner: str, tenant: str, intent_id: str, *, older_than: float) -> bool:
        """Drop an entry whose record does not exist, once it is older than
        `older_than` seconds: a younger one may be a submission whose create
        has not landed yet (it is acknowledged only after). Deleted by
        compare-and-set, so an entry written again meanwhile stays. Whether
        the entry is gone (dropped now, or not there)."""
        key = f"{owner}.{intent_key(tenant, intent_id)}"
        entry: KvEntry | None = await self.open.ask(Get(key))
        if entry is None:
            return True
        if time.time() - _written_at(entry) < older_than:
            return False
        try:
            await self.open.ask(Delete(key, last=entry.revision))
        except ExoarmurError as exc:
            if exc.code is not ReasonCode.KV_CONFLICT:
                raise
            return False  # written again meanwhile: a submission of that id again
        return True

    async def unsettled(self, owner: str = "*") -> list[tuple[str, str, str]]:
        """(owner, tenant, id) of every intent not yet settled (of `owner`'s only, if named)."""
        found = []
        for key in await self.open.ask(Keys(f"{owner}.*.*")):
            entry_owner, tenant, intent_id = key.split(".", 2)
            found.append((entry_owner, tenant, intent_id))
        return found

    async def keys(self, tenant: str) -> list[str]:
        """The ids of a tenant's intents, sorted."""
        prefix = f"{tenant}."
        return [key[len(prefix) :] for key in await self.records.ask(Keys(f"{tenant}.*"))]


def _written_at(entry: KvEntry) -> float:
    """When an index entry was written; now for one that does not say (never
    dropped early)."""
    try:
        at = orjson.loads(entry.value)["at"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return time.time()
    return float(at) if isinstance(at, int | float) else time.time()
