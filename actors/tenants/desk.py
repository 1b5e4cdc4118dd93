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

A refused submission never becomes an intent, so it has no transition to
audit. The owner counts its refusals instead, per tenant and code, and
appends one record per tenant that had any every REFUSALS_WINDOW to the
`admission` audit chain (and the rest when it stops):

    {"kind": "admission", "tenant": T, "owner": P, "refused": {"RATE_LIMITED": n, ...},
     "from": <wall>, "to": <wall>}

One record a window, not one a refusal: a flood is refused at the cost of a
reply, not of an audit append too. A window's record keeps its message id
until it is appended (`admission.<owner>.<tenant>.<from>`), so one sent
again after a timeout is stored once; its counts are dropped only once it
is. A crash loses the window being counted.

The kill switches come before the tenant's limits in the gates' order: a
submission the limits refuse while a switch covering its tenant is active
is refused KILL_SWITCH_ACTIVE (with the switch's detail) instead, and
counted so. The switches are read from the leader through the gates
(`SwitchesCheck`) at most once per tenant every KILL_CHECK_FRESH, one read
at a time (`TenantSwitches`), so a flood costs no read per refusal; one
that cannot be read leaves the limit's code. The tenant's owner is read the
same way: once stale, one read, shared by the admissions that wait for it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import anyio
import attrs
import orjson

from exoarmur.actors.intents import IntentSetting, Lapsed
from exoarmur.actors.intents.gates import TenantSwitches
from exoarmur.actors.intents.messages import Admit, Released
from exoarmur.actors.nats import Append, Create, Get, KvEntry, Update
from exoarmur.actors.tenants.limits import Admission, TenantLimits
from exoarmur.runtime import Actor, ActorRef, ExoarmurError, ReasonCode, SharedCalls, error_for, handles
from exoarmur.runtime.margins import OWNER_CHECK, QUOTA_RECOUNT, REFUSALS_WINDOW

__all__ = ["ADMISSION_CHAIN", "ADMISSION_EVENT", "TenantDesk"]

ADMISSION_CHAIN = "admission"
ADMISSION_EVENT = "admission"


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
        audit: str = "",
        gates: str = "",
        refusals_window: float = REFUSALS_WINDOW,
    ) -> None:
        self.setting = setting
        self.owners_path = owners  # the KvBucket of `exoarmur_tenant_owners`
        self.audit_path = audit  # the AuditStream of the `admission` chain ("": refusals not audited)
        self.gates_path = gates  # the Gates, for the kill switches ("": not asked)
        self.refusals_window = refusals_window
        self.admission = Admission(limits or {}, default=default)
        self.known: dict[str, _Known] = {}
        self.counting: dict[str, Counter[str]] = {}  # this window's refusals, per tenant and code
        self.window_from = time.time()
        self.unsent: list[tuple[dict[str, Any], str]] = []  # closed windows' records, oldest first
        self.flushing = anyio.Lock()
        self.owner_reads: SharedCalls[str, str] = SharedCalls()  # a flood meets an owner stale: one read

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.owners: ActorRef = lookup(self.owners_path)
        self.lease: ActorRef = lookup(self.setting.lease)
        self.store = self.setting.store(self.context.system)
        self.audit: ActorRef | None = lookup(self.audit_path) if self.audit_path else None
        find = self.context.system.find
        self.switches = TenantSwitches(lambda: find(self.gates_path) if self.gates_path else None, now=self.context.now)
        self.context.start_task(self._recount)
        if self.audit is not None:
            self.context.start_task(self._audit_refusals)

    async def stopping(self) -> None:
        await self._append_refusals()

    @handles(Admit, concurrent=True)
    async def admit(self, m: Admit) -> str:
        if not m.forwarded:
            owner = await self._owner_of(m.tenant)
            if owner != self.setting.owner:
                return owner
        try:
            self.admission.admit(m.tenant, now=self.context.now())
        except ExoarmurError as exc:
            stopped = await self._switch_active(m.tenant)
            code = ReasonCode.KILL_SWITCH_ACTIVE if stopped else exc.code
            self.counting.setdefault(m.tenant, Counter())[code.value] += 1
            if stopped:
                raise error_for(code, stopped) from None
            raise
        return ""

    @handles(Released, urgent=True)  # ahead of the admissions a flood queues here
    def released(self, m: Released) -> None:
        self.admission.settled(m.tenant)

    async def _switch_active(self, tenant: str) -> str:
        """A switch covering `tenant` seen active within KILL_CHECK_FRESH
        (its detail), read again if older; "" if none or unreadable."""
        try:
            seen = await self.switches.check(tenant)
        except ExoarmurError:
            return ""
        return "" if seen is None else seen[1]

    async def _owner_of(self, tenant: str) -> str:
        known = self.known.get(tenant)
        if known is not None and self.context.now() - known.at < OWNER_CHECK:
            return known.owner
        return await self.owner_reads.call(tenant, lambda: self._read_owner(tenant))

    async def _read_owner(self, tenant: str) -> str:
        """The tenant's owner from KV; this process if it has none, or one
        whose lease lapsed (taken by compare-and-set)."""
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

    async def _audit_refusals(self) -> None:
        while True:
            await anyio.sleep(self.refusals_window)
            await self._append_refusals()

    async def _append_refusals(self) -> None:
        """Close this window (a record per tenant) and append every record
        not yet appended, oldest first, each under its own message id."""
        if self.audit is None:
            return
        async with self.flushing:
            self._close_window()
            while self.unsent:
                event, msg_id = self.unsent[0]
                try:
                    await self.audit.ask(Append(event, msg_id=msg_id))
                except ExoarmurError as exc:
                    self.context.report_failure(exc.code, f"refused submissions not audited yet: {exc.detail}")
                    return
                del self.unsent[0]

    def _close_window(self) -> None:
        counting, self.counting = self.counting, {}
        start, end = self.window_from, time.time()
        self.window_from = end
        owner = self.setting.owner
        for tenant in sorted(counting):
            event = {"kind": ADMISSION_EVENT, "tenant": tenant, "owner": owner,
                     "refused": dict(sorted(counting[tenant].items())), "from": start, "to": end}  # fmt: skip
            self.unsent.append((event, f"{ADMISSION_EVENT}.{owner}.{tenant}.{round(start * 1e6)}"))

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
