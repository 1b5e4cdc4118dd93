"""The tenants' subtree, and the router that starts intent actors in it.

    tenants                  Supervisor, one_for_one: one child per tenant, started on first use
      tenants/<T>            Supervisor, one_for_one, for tenant T:
        tenants/<T>/audit    its audit chain (AuditStream, chain "intents-<T>")
        tenants/<T>/intent.<id>   an IntentActor per live intent (transient: a
                             crash restarts it, its normal stop at settling does not)
    tenants-router           TenantRouter: `Activate(tenant, id)` -> the intent's actor running

A crash loop stays in its tenant: an intent actor restarts within its
tenant's intensity; a tenant that exceeds it is restarted by `tenants`
after a growing backoff and behind a breaker, which `tenants`' own
intensity is sized to absorb, so one tenant's trouble does not stop the
others. A tenant restarted loses its running intent actors with its
children; the resumer's next scan starts them again from KV
(actors/intents/resume.py).
"""

from __future__ import annotations

from collections import Counter

from exoarmur.actors.intents import IntentActor, IntentSetting
from exoarmur.actors.intents.messages import Activate, FirstRead, Recheck, intent_actor_name, intent_actor_path
from exoarmur.actors.intents.trail import chain_of
from exoarmur.actors.nats import AuditStream
from exoarmur.runtime import Actor, ActorRef, ExoarmurError, ReasonCode, SharedCalls, handles
from exoarmur.supervisors import (
    BackoffPolicy,
    BreakerPolicy,
    ChildSpec,
    Restart,
    RestartIntensity,
    StartChild,
    Strategy,
    Supervisor,
    SupervisorSpec,
)

__all__ = ["TenantRouter", "tenant_spec", "tenants_spec"]

INTENT_BACKOFF = BackoffPolicy(initial=0.1, max_delay=5.0)
TENANT_BACKOFF = BackoffPolicy(initial=0.5, max_delay=30.0)
TENANT_BREAKER = BreakerPolicy(threshold=3, window=60.0, cooldown=10.0, max_cooldown=300.0)
TENANT_INTENSITY = RestartIntensity(50, 10.0)
TENANTS_INTENSITY = RestartIntensity(1000, 60.0)


def tenants_spec() -> SupervisorSpec:
    return SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=TENANTS_INTENSITY, children=())


def tenant_spec(
    tenant: str, *, connection: str, stream: str = "EXOARMUR_AUDIT", replicas: int = 1, appends: Counter[str] | None = None
) -> ChildSpec:
    audit = ChildSpec(
        "audit",
        AuditStream,
        kwargs={"connection": connection, "chain": chain_of(tenant), "stream": stream, "replicas": replicas, "appends": appends},
        backoff=INTENT_BACKOFF,
    )
    return ChildSpec(
        tenant,
        Supervisor,
        kwargs={"spec": SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=TENANT_INTENSITY, children=(audit,))},
        backoff=TENANT_BACKOFF,
        breaker=TENANT_BREAKER,
        tenant=tenant,
    )


class TenantRouter(Actor):
    """Starts tenants and intent actors on demand: `Activate` answers True if
    it started the intent's actor, False if one runs already."""

    mailbox_capacity = 10_000
    concurrency = 256

    def __init__(
        self,
        *,
        tenants: str,
        setting: IntentSetting,
        connection: str,
        stream: str = "EXOARMUR_AUDIT",
        replicas: int = 1,
        intent_actor: type[Actor] = IntentActor,
        appends: Counter[str] | None = None,  # every tenant chain's appends, counted together (/metrics)
    ) -> None:
        self.appends = appends
        self.intent_actor = intent_actor  # an IntentActor, or a class that extends it
        self.tenants_path = tenants
        self.setting = setting
        self.connection = connection
        self.stream = stream
        self.replicas = replicas
        self.starts: SharedCalls[str, ActorRef] = SharedCalls()

    @handles(Activate, concurrent=True)
    async def activate(self, m: Activate) -> bool:
        name = intent_actor_name(m.intent_id)
        if self.context.system.find(intent_actor_path(self.tenants_path, m.tenant, m.intent_id)) is not None:
            return False  # runs already (the resumer asks for every unsettled intent, often)
        tenant = await self._tenant(m.tenant)
        spec = ChildSpec(
            name,
            self.intent_actor,
            kwargs={
                "tenant": m.tenant,
                "intent_id": m.intent_id,
                "setting": self.setting,
                "audit": f"{self.tenants_path}/{m.tenant}/audit",
                "take_over": m.take_over,
                "entry_owner": m.entry_owner,
                "first_read": FirstRead(m.record),
            },
            restart=Restart.TRANSIENT,
            backoff=INTENT_BACKOFF,
            tenant=m.tenant,
        )
        return await _started(tenant, spec)

    @handles(Recheck)
    def recheck(self, m: Recheck) -> int:
        """Recheck told to every live intent actor `m` names; how many there were."""
        system = self.context.system
        if m.tenant and m.intent_id:
            paths = [intent_actor_path(self.tenants_path, m.tenant, m.intent_id)]
        else:
            prefix = f"{self.tenants_path}/{m.tenant}/" if m.tenant else f"{self.tenants_path}/"
            paths = [p for p in system.paths() if p.startswith(prefix) and p.rpartition("/")[2].startswith("intent.")]
        told = 0
        for path in paths:
            ref = system.find(path)
            if ref is None:
                continue
            try:
                ref.tell_nowait(m)
            except ExoarmurError:  # stopping, or its mailbox full: its own poll finds the change
                continue
            told += 1
        return told

    async def _tenant(self, tenant: str) -> ActorRef:
        found = self.context.system.find(f"{self.tenants_path}/{tenant}")
        if found is not None:
            return found
        return await self.starts.call(tenant, lambda: self._start(tenant))  # one start, however many ask

    async def _start(self, tenant: str) -> ActorRef:
        system = self.context.system
        spec = tenant_spec(tenant, connection=self.connection, stream=self.stream, replicas=self.replicas, appends=self.appends)
        await _started(system.lookup(self.tenants_path), spec)
        return system.lookup(f"{self.tenants_path}/{tenant}")


async def _started(supervisor: ActorRef, spec: ChildSpec) -> bool:
    """Start `spec` under `supervisor`; False if a child of that name runs already."""
    try:
        await supervisor.ask(StartChild(spec))
    except ExoarmurError as exc:
        if exc.code is ReasonCode.ACTOR_NAME_TAKEN:
            return False
        raise
    return True
