"""An intents subtree on a real nats-server, with an effector that counts
what it applies, for the integration tests of actors/intents/."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from contextlib import asynccontextmanager

import anyio
import attrs
import orjson

from exoarmur.actors.intents import (
    Apply,
    Effect,
    IntentRecord,
    IntentSetting,
    IntentStore,
    Outcome,
    OwnerLease,
    Reconcile,
    Reconciled,
    Resumer,
    Revert,
    TypeInfo,
)
from exoarmur.actors.controls import ControlWatch, Gates, KillSwitches
from exoarmur.actors.intents.service import IntentService
from exoarmur.actors.nats import AuditStream, KvBucket, Record, Request, StreamFetch, events_of
from exoarmur.actors.tenants import TenantDesk, TenantLimits, TenantRouter, tenants_spec
from exoarmur.runtime import Actor, ActorSystem, handles
from exoarmur.supervisors import Supervisor
from tests.integration.support import connect, running_server

OWNER = "p-0000000000000001"


class Effector(Actor):
    """An execution type's actor that counts its effects per (key, op); its
    reconcile answers from them unless `answers` says otherwise."""

    def __init__(self, *, effects: Counter, answers: dict) -> None:
        self.effects = effects
        self.answers = answers

    @handles(Apply)
    def apply(self, m: Apply) -> Effect:
        self.effects[m.key, "apply"] += 1
        return Effect(Outcome.APPLIED)

    @handles(Revert)
    def revert(self, m: Revert) -> Effect:
        self.effects[m.key, "revert"] += 1
        return Effect(Outcome.APPLIED)

    @handles(Reconcile)
    def reconcile(self, m: Reconcile) -> Reconciled:
        if m.key in self.answers:
            return self.answers[m.key]
        op = "revert" if m.intent.state == "REVERTING" else "apply"
        return Reconciled.APPLIED if self.effects[m.key, op] else Reconciled.NOT_APPLIED


@attrs.define
class Intents:
    system: ActorSystem
    store: IntentStore
    effects: Counter
    answers: dict
    setting: IntentSetting

    async def request(self, tenant: str, op: str, body: dict | bytes) -> dict:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        response = await self.system.lookup("nats").ask(Request(f"exoarmur.intents.{tenant}.{op}", data))
        return orjson.loads(response.data)

    async def control(self, subject: str, body: dict | bytes) -> dict:
        """A request to a control service (`killswitch.set`, ...)."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        response = await self.system.lookup("nats").ask(Request(f"exoarmur.{subject}", data))
        return orjson.loads(response.data)

    async def settled(self, tenant: str, intent_id: str, *, timeout: float = 10.0) -> IntentRecord:
        found: list[IntentRecord] = []

        async def poll() -> bool:
            """Terminal in KV, audited and out of the index of unsettled intents."""
            record = await self.store.load(tenant, intent_id)
            found[:] = [record] if record else []
            if not found or found[0].state not in {"SUCCEEDED", "FAILED", "EXPIRED", "REVERTED", "KILLED", "DENIED"}:
                return False
            return (tenant, intent_id) not in {(t, i) for _, t, i in await self.store.unsettled()}

        deadline = time.monotonic() + timeout
        while not await poll():
            assert time.monotonic() < deadline, f"{tenant}.{intent_id} not settled: {found}"
            await anyio.sleep(0.02)
        return found[0]

    async def events(self, tenant: str, *, chain: str = "") -> list[dict[str, Any]]:
        """The events of the tenant's audit chain (or the chain named), in
        order (a batch record's unfolded)."""
        connection = self.system.lookup("nats")
        subject = f"exoarmur.audit.{chain or f'intents-{tenant}'}"
        records, seq = [], 1
        while batch := await connection.ask(StreamFetch("EXOARMUR_AUDIT", seq, 1000)):
            records += [e for m in batch if m.subject == subject for e in events_of(Record.from_bytes(m.data).event)]
            seq = batch[-1].seq + 1
        return records

    async def unsettled(self) -> list[tuple[str, str, str]]:
        return await self.store.unsettled()


@asynccontextmanager
async def intents_on(
    tmp_path,
    *,
    owner: str = OWNER,
    lease_ttl: float = 6.0,
    server=None,
    intent_actor=None,
    gates: bool = False,
    types: dict[str, TypeInfo] | None = None,
    limits: TenantLimits | None = None,
    unknown_grace: float = 1.0,
) -> AsyncIterator[Intents]:
    """The intents subtree of one process; `gates`: with the controls (the
    gates and the kill-switch service, as the default tree has them);
    `types`: more execution types, whose actors the test spawns itself;
    `limits`: every tenant's, kept by its owner (the tenants' desk);
    `unknown_grace`: how long the gates read unreadable switches again
    before they count as set (shorter than a real process's, for speed)."""
    async with _server(tmp_path, server) as running, ActorSystem() as system:
        await connect(system, running)
        effects: Counter = Counter()
        answers: dict = {}
        for name, bucket in (("records", "exoarmur_intents"), ("open", "exoarmur_intents_open"), ("leases", "exoarmur_leases")):
            await system.spawn(KvBucket, name=name, kwargs={"bucket": bucket, "connection": "nats"})
        await system.spawn(OwnerLease, name="lease", kwargs={"owner": owner, "bucket": "leases", "ttl": lease_ttl})
        await system.spawn(Effector, name="fx", kwargs={"effects": effects, "answers": answers})
        info = TypeInfo(name="fx", path="fx", timeout=2.0, revertible=True)
        infos = {"fx": info, **(types or {})}
        if gates:
            for name in ("controls", "approvals"):
                await system.spawn(KvBucket, name=name, kwargs={"bucket": f"exoarmur_{name}", "connection": "nats"})
            await system.spawn(AuditStream, name="controls-audit", kwargs={"connection": "nats", "chain": "controls"})
            gate_args = {"controls": "controls", "approvals": "approvals", "types": infos, "unknown_grace": unknown_grace}
            await system.spawn(Gates, name="gates", kwargs=gate_args)
            switches = {"connection": "nats", "controls": "controls", "audit": "controls-audit"}
            await system.spawn(KillSwitches, name="killswitch", kwargs=switches)
        setting = IntentSetting(
            owner=owner,
            records="records",
            open="open",
            lease="lease",
            types=infos,
            service="service",
            gates="gates" if gates else "",
            approvals="approvals" if gates else "",
            tenants="desk" if limits is not None else "",
        )
        if limits is not None:
            await system.spawn(KvBucket, name="tenant_owners", kwargs={"bucket": "exoarmur_tenant_owners", "connection": "nats"})
            await system.spawn(AuditStream, name="admission-audit", kwargs={"connection": "nats", "chain": "admission"})
            desk = {"setting": setting, "owners": "tenant_owners", "default": limits, "audit": "admission-audit",
                    "gates": "gates" if gates else "", "refusals_window": 0.5}  # fmt: skip
            await system.spawn(TenantDesk, name="desk", kwargs=desk)
        await system.spawn(Supervisor, name="tenants", kwargs={"spec": tenants_spec()})
        router = {"tenants": "tenants", "setting": setting, "connection": "nats"}
        if intent_actor is not None:
            router["intent_actor"] = intent_actor
        await system.spawn(TenantRouter, name="router", kwargs=router)
        await system.spawn(Resumer, name="resumer", kwargs={"setting": setting, "router": "router", "tenants": "tenants", "interval": 0.5})
        service = {"connection": "nats", "setting": setting, "router": "router", "tenants": "tenants"}
        await system.spawn(IntentService, name="service", kwargs=service)
        if gates:
            buckets = {"controls": "exoarmur_controls", "approvals": "exoarmur_approvals"}
            await system.spawn(ControlWatch, name="watch", kwargs={"connection": "nats", "router": "router", "gates": "gates", **buckets})
        store = IntentStore(system.lookup("records"), system.lookup("open"))
        yield Intents(system, store, effects, answers, setting)


@asynccontextmanager
async def _server(tmp_path, server):
    if server is not None:
        yield server
        return
    async with running_server(tmp_path) as started:
        yield started
