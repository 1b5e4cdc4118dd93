"""Ownership: one lease per process, in KV, that carries its own expiry.

Each process (an `owner`) holds the key `<owner>` in the leases bucket and
renews it every TTL/3 by compare-and-set on the revision it last wrote. The
value says the TTL; NATS KV's per-key TTL is not used (it is set only when a
key is created: an update drops it).

    the holder     its lease holds until the time it SENT its last
                   successful renewal + TTL, on its own monotonic clock
                   (`LeaseRemaining`); an apply starts only if the lease
                   outlasts the type's timeout by LEASE_SPARE.
    an observer    an owner's lease has lapsed at once if it says it was
                   released (a graceful stop) or revoked; otherwise once its
                   revision has stood still for TTL + LEASE_GRACE since this
                   observer first saw that revision, on the observer's own
                   monotonic clock: the observer then REVOKES it, by
                   compare-and-set on that very revision (`Lapsed`). A
                   renewal that lands first makes the revoke fail: the owner
                   is alive after all. A key that is absent (a lost or purged
                   bucket, never a stop) has no TTL to read: it lapses once it
                   has stayed absent for TTL + LEASE_GRACE, TTL being the
                   longer of the observer's own and the one the lease said
                   when the observer last read it.

Neither side compares wall clocks, so skew between hosts cannot shorten a
lease: the holder's view always ends before any observer's. A holder whose
renewal finds its lease revoked has lost it for good: it takes a new one, a
new *generation*, and an apply checks that the generation it wrote EXECUTING
under is still the one that holds (`LeaseView`), so nothing started under a
revoked lease is applied. Taking an intent
over is a compare-and-set of its record to the new owner
(actors/intents/store.py): the former owner's next write is refused
(LEASE_LOST). A process that stops gracefully releases its lease (writes
it so, by compare-and-set), so others take over at once; one killed is
taken over after TTL + LEASE_GRACE.

What a lease cannot do (no lease can): a process paused for longer than its
TTL between its last check and the effect itself could apply after another
has taken over. The check is made right before the apply call, and an
execution type that must be safe even then can compare `intent.owner` with
its effector's own record.
"""

from __future__ import annotations

import os
import socket

import anyio
import attrs
import orjson

from exoarmur.actors.nats import Create, Get, KvEntry, Update, patiently
from exoarmur.runtime import Actor, ActorRef, ExoarmurError, ReasonCode, TimeoutCategory, handles, message
from exoarmur.runtime.margins import LEASE_GRACE

__all__ = ["Lapsed", "LeaseRemaining", "LeaseView", "OwnerLease"]


@message("exoarmur.lease.remaining", timeout=TimeoutCategory.KV_GET)
class LeaseRemaining:
    """This process's own lease: a LeaseView."""


@attrs.frozen
class LeaseView:
    remaining: float  # seconds it still holds (0: lapsed)
    generation: int  # grows each time the lease is taken anew (after a revoke)


@message("exoarmur.lease.lapsed", timeout=TimeoutCategory.KV_GET)
class Lapsed:
    """Whether `owner`'s lease has lapsed, as this observer has seen it."""

    owner: str


class OwnerLease(Actor):
    def __init__(self, *, owner: str, bucket: str, ttl: float = 10.0) -> None:
        self.owner = owner
        self.bucket_path = bucket
        self.ttl = ttl
        self.bucket: ActorRef | None = None
        self.valid_until = float("-inf")
        self.revision = 0  # of the lease as this process last wrote it
        self.generation = 0  # the revision that took the lease: grows across restarts too
        self.seen: dict[str, tuple[int, float]] = {}  # owner -> (revision, first seen at)
        self.ttls: dict[str, float] = {}  # owner -> the TTL its lease said when last read

    async def started(self) -> None:
        self.bucket = self.context.system.lookup(self.bucket_path)
        await patiently(self.context, self._take, what=f"taking lease {self.owner}")
        self.context.start_task(self._renewing)

    async def stopping(self) -> None:
        """Give the lease up: other processes take this one's intents at once
        (a revoked lease, the compare-and-set failing, is given up already)."""
        assert self.bucket is not None
        released = orjson.dumps({"owner": self.owner, "released": True})
        try:
            await self.bucket.ask(Update(self.owner, released, self.revision))
        except ExoarmurError as exc:  # it lapses by itself after its TTL
            self.context.report_failure(exc.code, f"lease {self.owner} not given up: {exc.detail}")

    def _value(self) -> bytes:
        return orjson.dumps({"owner": self.owner, "ttl": self.ttl, "pid": os.getpid(), "host": socket.gethostname()})

    async def _take(self) -> None:
        """A new generation of the lease: over whatever the key holds."""
        assert self.bucket is not None
        sent = self.context.now()
        entry: KvEntry | None = await self.bucket.ask(Get(self.owner))
        if entry is None:
            self.revision = await self.bucket.ask(Create(self.owner, self._value()))
        else:
            self.revision = await self.bucket.ask(Update(self.owner, self._value(), entry.revision))
        # A generation is the revision that took the lease, not a count of
        # this instance's: a restarted actor's first generation is new too.
        self.generation = self.revision
        self.valid_until = sent + self.ttl

    async def _renew(self) -> None:
        """The same generation, by compare-and-set; a conflict means it was
        revoked: lost for good, and a new generation is taken."""
        assert self.bucket is not None
        sent = self.context.now()
        try:
            self.revision = await self.bucket.ask(Update(self.owner, self._value(), self.revision))
        except ExoarmurError as exc:
            if exc.code is not ReasonCode.KV_CONFLICT:
                raise
            self.valid_until = float("-inf")
            self.context.report_failure(ReasonCode.LEASE_LOST, f"lease {self.owner} was revoked; taking a new one")
            await self._take()
            return
        self.valid_until = max(self.valid_until, sent + self.ttl)

    async def _renewing(self) -> None:
        while True:
            await anyio.sleep(self.ttl / 3)
            try:
                await self._renew()
            except ExoarmurError as exc:  # the lease runs down; the next try may hold it again
                self.context.report_failure(exc.code, f"lease {self.owner} not renewed: {exc.detail}")

    @handles(LeaseRemaining)
    def remaining(self, m: LeaseRemaining) -> LeaseView:
        return LeaseView(max(0.0, self.valid_until - self.context.now()), self.generation)

    @handles(Lapsed)
    async def lapsed(self, m: Lapsed) -> bool:
        if m.owner == self.owner:
            return False
        assert self.bucket is not None
        entry: KvEntry | None = await self.bucket.ask(Get(m.owner))
        if entry is not None and _given_up(entry):
            self.seen.pop(m.owner, None)
            return True
        now = self.context.now()
        revision = 0 if entry is None else entry.revision  # 0: absent
        seen = self.seen.get(m.owner)
        if seen is None or seen[0] != revision:
            self.seen[m.owner] = (revision, now)
            return False
        if entry is None:  # no TTL to read: the longest of this observer's and the last its lease said
            ttl = max(self.ttl, self.ttls.get(m.owner, 0.0))
        else:
            ttl = self.ttls[m.owner] = _ttl_of(entry)
        if now - seen[1] <= ttl + LEASE_GRACE:
            return False
        if entry is None:  # nothing to revoke: lapsed for as long as it stays absent
            return True  # (its owner's next renewal fails, and it takes a new generation)
        revoked = orjson.dumps({"owner": m.owner, "revoked_by": self.owner})
        try:
            await self.bucket.ask(Update(m.owner, revoked, entry.revision))
        except ExoarmurError as exc:
            if exc.code is ReasonCode.KV_CONFLICT:
                return False  # renewed just now: alive after all
            raise
        return True


def _given_up(entry: KvEntry) -> bool:
    """Revoked by an observer, or released by its owner's graceful stop."""
    try:
        value = orjson.loads(entry.value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and ("revoked_by" in value or value.get("released") is True)


def _ttl_of(entry: KvEntry) -> float:
    """The TTL a lease says it has; a value that cannot be read counts as the
    longest a lease may have (never taken over early on a bad value)."""
    try:
        ttl = orjson.loads(entry.value)["ttl"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return 3600.0
    return float(ttl) if isinstance(ttl, int | float) and 0 < ttl <= 3600 else 3600.0
