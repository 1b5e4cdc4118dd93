"""The tenants' desk: which process owns each tenant, and the owner's limits.

A tenant has one owner process at a time, as a sharded entity has one live
instance in Akka or Orleans, so its rate and quota hold for the tenant as a
whole however many processes share the NATS deployment (a limiter per
process would let a tenant multiply its budget by their number):

    exoarmur_tenant_owners   <tenant> -> {"owner": "<process id>"}

- The first process to see a tenant takes it, by compare-and-set on an
  absent key. Another process reads the key and forwards the tenant's
  submissions to the owner (actors/intents/service.py).
- An owner whose process lease has lapsed (actors/intents/leases.py) is
  replaced by compare-and-set on the revision read: one process wins.
- What a process knows of an owner is read again every OWNER_CHECK, so a
  takeover is seen within that.

Admission (limits.py) is the owner's: `Admit` answers "" and counts the
intent, or refuses with RATE_LIMITED or OVERLOAD_TENANT_QUOTA. `Released`
uncounts it when it settles; every RECOUNT the counts are set again from
the index of unsettled intents, so an end that was never told is not a
leak. While two processes both think they own a tenant (for at most one
OWNER_CHECK after a takeover), its budget is briefly doubled; nothing
executes twice: that is the intents' own fencing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import anyio
import attrs
import orjson

from exoarmur.actors.intents import IntentSetting, Lapsed
from exoarmur.actors.intents.messages import Admit, Released
from exoarmur.actors.nats import Create, Get, KvEntry, Update
from exoarmur.actors.tenants.limits import Admission, TenantLimits
from exoarmur.runtime import Actor, ActorRef, ExoarmurError, ReasonCode, error_for, handles
from exoarmur.runtime.margins import OWNER_CHECK, QUOTA_RECOUNT

__all__ = ["TenantDesk"]


@attrs.frozen
class _Known:
    owner: str
    revision: int
    at: float  # runtime time it was read


class TenantDesk(Actor):
    mailbox_capacity = 10_000
    concurrency = 256

    def __init__(
        self,
        *,
        setting: IntentSetting,
        owners: str,
        limits: Mapping[str, TenantLimits] | None = None,
        default: TenantLimits = TenantLimits(),
    ) -> None:
        self.setting = setting
        self.owners_path = owners  # the KvBucket of `exoarmur_tenant_owners`
        self.admission = Admission(limits or {}, default=default)
        self.known: dict[str, _Known] = {}

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.owners: ActorRef = lookup(self.owners_path)
        self.lease: ActorRef = lookup(self.setting.lease)
        self.store = self.setting.store(self.context.system)
        self.context.start_task(self._recount)

    @handles(Admit, concurrent=True)
    async def admit(self, m: Admit) -> str:
        if not m.forwarded:
            owner = await self._owner_of(m.tenant)
            if owner != self.setting.owner:
                return owner
        self.admission.admit(m.tenant, now=self.context.now())
        return ""

    @handles(Released)
    def released(self, m: Released) -> None:
        self.admission.settled(m.tenant)

    async def _owner_of(self, tenant: str) -> str:
        known = self.known.get(tenant)
        now = self.context.now()
        if known is not None and now - known.at < OWNER_CHECK:
            return known.owner
        me = self.setting.owner
        entry: KvEntry | None = await self.owners.ask(Get(tenant))
        if entry is None:
            try:
                revision = await self.owners.ask(Create(tenant, _owner_value(me)))
            except ExoarmurError as exc:
                if exc.code is not ReasonCode.KV_CONFLICT:
                    raise
                return await self._read_again(tenant)
            return self._learn(tenant, me, revision)
        owner = _owner_in(entry)
        if owner != me and (not owner or await self.lease.ask(Lapsed(owner))):
            try:
                revision = await self.owners.ask(Update(tenant, _owner_value(me), entry.revision))
            except ExoarmurError as exc:
                if exc.code is not ReasonCode.KV_CONFLICT:
                    raise
                return await self._read_again(tenant)
            return self._learn(tenant, me, revision)
        return self._learn(tenant, owner, entry.revision)

    async def _read_again(self, tenant: str) -> str:
        """Another process won the compare-and-set: its owner stands."""
        entry: KvEntry | None = await self.owners.ask(Get(tenant))
        if entry is None:
            raise error_for(ReasonCode.KV_CONFLICT, f"tenant {tenant}'s owner key vanished while taken")
        return self._learn(tenant, _owner_in(entry), entry.revision)

    def _learn(self, tenant: str, owner: str, revision: int) -> str:
        self.known[tenant] = _Known(owner, revision, self.context.now())
        return owner

    async def _recount(self) -> None:
        """Every QUOTA_RECOUNT: the owner's unsettled intents per tenant, from the index."""
        while True:
            await anyio.sleep(QUOTA_RECOUNT)
            try:
                entries = await self.store.unsettled(self.setting.owner)
            except ExoarmurError as exc:
                self.context.report_failure(exc.code, f"recounting the tenants' unsettled intents: {exc.detail}")
                continue
            self.admission.recount(Counter(tenant for _, tenant, _ in entries))


def _owner_value(owner: str) -> bytes:
    return orjson.dumps({"owner": owner})


def _owner_in(entry: KvEntry) -> str:
    """The owner a key names ("" if unreadable: taken over as a lapsed one would be)."""
    try:
        owner = orjson.loads(entry.value)["owner"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""
    return owner if isinstance(owner, str) else ""
