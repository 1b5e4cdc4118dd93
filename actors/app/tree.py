"""The default supervision tree of `exoarmur run`, started in this order and
stopped in the reverse one.

    nats                 Supervisor, one_for_one
      nats/server        EmbeddedNatsServer (only without a NATS URL)
      nats/connection    NatsConnection (to nats/server, or to the configured URLs)
    store                Supervisor, one_for_one
      store/audit        AuditStream: this process's `kernel-<owner>` chain, the system's audit sink
      store/records      KvBucket: the intent records
      store/open         KvBucket: the index of unsettled intents
      store/leases       KvBucket: the owners' leases
      store/controls     KvBucket: the kill switches
      store/approvals    KvBucket: operators' approvals and denials of intents
      store/tenant_owners  KvBucket: which process owns each tenant
      store/lease        OwnerLease: this process's lease (it outlives every intent actor)
    controls             Supervisor, one_for_one
      controls/audit     AuditStream: the `controls` chain (kill switches set and cleared)
      controls/gates     Gates: every intent's gates, before it executes
      controls/killswitch  KillSwitches: set, clear, status over NATS
      controls/watch     ControlWatch: wakes the intents an approval or a switch concerns
    execution            Supervisor of the execution types, one actor each
    tenants              Supervisor of the tenants, each over its intent actors
    intents              Supervisor, one_for_one
      intents/audit      AuditStream: the `admission` chain (submissions refused by rate or quota)
      intents/desk       TenantDesk: the tenants this process owns, and their limits
      intents/router     TenantRouter: starts intent actors under their tenant
      intents/resumer    Resumer: resumes this process's intents, takes over lapsed ones
      intents/service    IntentService: submit, get, list, revert over NATS
    http                 HealthServer: /livez, /readyz, /metrics (actors/app/health.py; [http])
    status               StatusService: the live tree over NATS (`exoarmur status`)

The connection has a breaker: a NATS that keeps failing is left alone for the
cooldown instead of burning the supervisor's restart intensity. Credentials
come from `[nats]` or the environment (actors/app/nats_config.py). Once the
tree runs, the connection file is written into the state directory for the
CLI (actors/app/state.py).
"""

from __future__ import annotations

import os
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from exoarmur.actors.app.nats_config import NatsConfig
from exoarmur.actors.app.state import StateDir
from exoarmur.actors.app.audit_sink import StreamAuditSink, kernel_chain
from exoarmur.actors.app.health import HealthServer, ServingAt
from exoarmur.actors.app.metrics import AuditCounts, Observed
from exoarmur.actors.app.readiness import Readiness
from exoarmur.actors.app.status import StatusService
from exoarmur.actors.controls import CHAIN as CONTROLS_CHAIN
from exoarmur.actors.controls import ControlWatch, Gates, KillSwitches
from exoarmur.actors.execution import execution_spec, load_types
from exoarmur.actors.intents import FaultPoints, IntentSetting, OwnerLease, Resumer, TypeInfo
from exoarmur.actors.intents.service import IntentService
from exoarmur.actors.nats import AuditStream, ConnectionOptions, KvBucket, NatsConnection, Subscriptions
from exoarmur.actors.nats.credentials import redact_url
from exoarmur.actors.nats.server import EmbeddedNatsServer, NatsEndpoint, ServerInfo
from exoarmur.actors.tenants import ADMISSION_CHAIN, TenantDesk, TenantLimits, TenantRouter, tenants_spec
from exoarmur.runtime import ActorSystem, InvalidInput, ReasonCode, TimeoutCategory
from exoarmur.runtime.logs import logged
from exoarmur.runtime.margins import EXECUTION_ANSWER, LEASE_SPARE
from exoarmur.supervisors import BackoffPolicy, BreakerPolicy, ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec

if TYPE_CHECKING:
    from exoarmur.actors.app.config import Config

NATS = "nats"
SERVER = f"{NATS}/server"
CONNECTION = f"{NATS}/connection"
RECORDS = "store/records"
OPEN = "store/open"
LEASES = "store/leases"
LEASE = "store/lease"
CONTROLS = "store/controls"
APPROVALS = "store/approvals"
OWNERS = "store/tenant_owners"
DESK = "intents/desk"
GATES = "controls/gates"
ADMISSION_AUDIT = "intents/audit"
KERNEL_AUDIT = "store/audit"
TENANT_CHAINS = "intents-*"  # the label of every tenant's chain in /metrics
STATUS = "status"
HTTP = "http"
AUDIT_STREAM = "EXOARMUR_AUDIT"  # AuditStream's defaults: one stream, a subject per chain
AUDIT_PREFIX = "exoarmur.audit"
LOG = logging.getLogger("exoarmur.process")
TENANTS = "tenants"
ROUTER = "intents/router"
SERVICE = "intents/service"
BUCKETS = {
    "records": "exoarmur_intents",
    "open": "exoarmur_intents_open",
    "leases": "exoarmur_leases",
    "controls": "exoarmur_controls",
    "approvals": "exoarmur_approvals",
    "tenant_owners": "exoarmur_tenant_owners",
}

CONNECTION_BREAKER = BreakerPolicy(threshold=5, window=60.0, cooldown=5.0, max_cooldown=60.0)
STORE_BREAKER = BreakerPolicy(threshold=20, window=10.0, cooldown=2.0, max_cooldown=30.0)
RESTART_BACKOFF = BackoffPolicy(initial=0.1, max_delay=5.0)
INTENSITY = RestartIntensity(10, 60.0)


def nats_spec(nats: NatsConfig, *, data_dir: Path) -> SupervisorSpec:
    children = []
    if nats.embedded:
        children.append(
            ChildSpec(
                "server",
                EmbeddedNatsServer,
                kwargs={"data_dir": data_dir, "sync_always": nats.sync_always},
                backoff=RESTART_BACKOFF,
                shutdown=15.0,
            )
        )
        connection: dict[str, object] = {"server": SERVER}
    else:
        connection = {"options": ConnectionOptions(urls=nats.urls).with_credentials_of(nats)}
    connection["subscriptions"] = Subscriptions()  # kept across the connection's restarts
    children.append(
        ChildSpec("connection", NatsConnection, kwargs=connection, breaker=CONNECTION_BREAKER, backoff=RESTART_BACKOFF)
    )
    return SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=INTENSITY, children=tuple(children))


def store_spec(*, owner: str, lease_ttl: float, replicas: int, appends: Counter[str] | None = None) -> SupervisorSpec:
    def bucket(name: str, bucket: str) -> ChildSpec:
        return ChildSpec(
            name,
            KvBucket,
            kwargs={"bucket": bucket, "connection": CONNECTION, "replicas": replicas},
            breaker=STORE_BREAKER,
            backoff=RESTART_BACKOFF,
        )

    lease = ChildSpec(
        "lease", OwnerLease, kwargs={"owner": owner, "bucket": LEASES, "ttl": lease_ttl}, backoff=RESTART_BACKOFF
    )
    audit = ChildSpec(
        "audit",
        AuditStream,
        kwargs={"connection": CONNECTION, "chain": kernel_chain(owner), "replicas": replicas, "appends": appends},
        backoff=RESTART_BACKOFF,
    )
    buckets = tuple(bucket(name, value) for name, value in BUCKETS.items())
    return SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=INTENSITY, children=(audit, *buckets, lease))


def controls_spec(types: Mapping[str, TypeInfo], *, replicas: int, appends: Counter[str] | None = None) -> SupervisorSpec:
    audit = ChildSpec(
        "audit",
        AuditStream,
        kwargs={"connection": CONNECTION, "chain": CONTROLS_CHAIN, "replicas": replicas, "appends": appends},
        backoff=RESTART_BACKOFF,
    )
    gates = ChildSpec(
        "gates", Gates, kwargs={"controls": CONTROLS, "approvals": APPROVALS, "types": types}, backoff=RESTART_BACKOFF
    )
    switches = ChildSpec(
        "killswitch",
        KillSwitches,
        kwargs={"connection": CONNECTION, "controls": CONTROLS, "audit": "controls/audit"},
        backoff=RESTART_BACKOFF,
    )
    watch = ChildSpec(
        "watch",
        ControlWatch,
        kwargs={"connection": CONNECTION, "router": ROUTER, "gates": GATES, "controls": BUCKETS["controls"],
                "approvals": BUCKETS["approvals"]},  # fmt: skip
        backoff=RESTART_BACKOFF,
    )
    return SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=INTENSITY, children=(audit, gates, switches, watch))


def intents_spec(
    setting: IntentSetting,
    *,
    resume_interval: float,
    default_timeout: float,
    replicas: int,
    limits: Mapping[str, TenantLimits],
    default_limits: TenantLimits,
    appends: Counter[str] | None = None,
    tenant_appends: Counter[str] | None = None,
) -> SupervisorSpec:
    audit = ChildSpec(
        "audit",
        AuditStream,
        kwargs={"connection": CONNECTION, "chain": ADMISSION_CHAIN, "replicas": replicas, "appends": appends},
        backoff=RESTART_BACKOFF,
    )
    desk = ChildSpec(
        "desk",
        TenantDesk,
        kwargs={"setting": setting, "owners": OWNERS, "limits": limits, "default": default_limits,
                "audit": ADMISSION_AUDIT, "gates": GATES},  # fmt: skip
        backoff=RESTART_BACKOFF,
    )
    router = ChildSpec(
        "router",
        TenantRouter,
        kwargs={"tenants": TENANTS, "setting": setting, "connection": CONNECTION, "replicas": replicas, "appends": tenant_appends},
    )
    resumer = ChildSpec(
        "resumer",
        Resumer,
        kwargs={"setting": setting, "router": ROUTER, "tenants": TENANTS, "interval": resume_interval},
        backoff=RESTART_BACKOFF,
    )
    service = ChildSpec(
        "service",
        IntentService,
        kwargs={"connection": CONNECTION, "setting": setting, "router": ROUTER, "tenants": TENANTS,
                "default_timeout": default_timeout},  # fmt: skip
        backoff=RESTART_BACKOFF,
    )
    return SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=INTENSITY, children=(audit, desk, router, resumer, service))


def execution_of(config: Config) -> tuple[SupervisorSpec, dict[str, TypeInfo]]:
    """The execution types' subtree and what the intents know of each: the
    types loaded (imported, their options checked) and each one's longest
    call checked against the lease. `exoarmur config` refuses what `run` would."""
    types = load_types(config.execution_types, state_dir=config.state_dir)
    execution, infos = execution_spec(types, parent_path="execution", gates=GATES)
    check_lease(config.lease_ttl, infos.values())
    return execution, infos


def check_lease(lease_ttl: float, types: Iterable[TypeInfo]) -> None:
    """A lease is renewed every third of its TTL, so it holds at least two
    thirds of it: that must outlast the longest call of any type (an apply
    starts only then, actors/intents/intent.py)."""
    for info in types:
        needs = info.timeout + EXECUTION_ANSWER + LEASE_SPARE
        if lease_ttl * 2 / 3 < needs:
            raise InvalidInput(
                ReasonCode.CONFIG_INVALID,
                f"intents.lease_ttl = {lease_ttl:g} s is too short for execution type {info.name!r} "
                f"(timeout {info.timeout:g} s): it must be at least {1.5 * needs:g} s",
            )


async def build_tree(system: ActorSystem, config: Config) -> None:
    nats = config.nats.with_environment(os.environ)
    if config.tree_options:
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID,
            f"tree.options: the default tree takes none, got {', '.join(config.tree_options)}",
        )
    state = StateDir(config.state_dir)
    faults = FaultPoints.from_environment(os.environ)
    execution, infos = execution_of(config)
    owner = state.owner()
    # What /metrics shows: audit events counted in front of the system's sink.
    # The system's audit events: kept locally (as `run` set up), appended to
    # this process's chain once its actor is up, and counted for /metrics.
    sink = StreamAuditSink(system.audit)
    chains = (kernel_chain(owner), CONTROLS_CHAIN, ADMISSION_CHAIN)
    # Appends by chain; the tenants' chains together (one label value, however many tenants).
    observed = Observed(audit=AuditCounts(sink), appends={chain: Counter() for chain in (*chains, TENANT_CHAINS)}, sink=sink)
    system.audit = observed.audit
    setting = IntentSetting(
        owner=owner,
        records=RECORDS,
        open=OPEN,
        lease=LEASE,
        types=infos,
        faults=faults,
        max_attempts=config.max_attempts,
        service=SERVICE,
        gates=GATES,
        approvals=APPROVALS,
        tenants=DESK,
        tally=observed.intents,
        drain=config.drain,
    )
    await system.spawn(Supervisor, name=NATS, kwargs={"spec": nats_spec(nats, data_dir=config.nats_data_dir)})
    store = store_spec(owner=owner, lease_ttl=config.lease_ttl, replicas=nats.replicas, appends=observed.appends[chains[0]])
    await system.spawn(Supervisor, name="store", kwargs={"spec": store})
    sink.attach(system.lookup(KERNEL_AUDIT))
    controls = controls_spec(infos, replicas=nats.replicas, appends=observed.appends[CONTROLS_CHAIN])
    await system.spawn(Supervisor, name="controls", kwargs={"spec": controls})
    await system.spawn(Supervisor, name="execution", kwargs={"spec": execution})
    await system.spawn(Supervisor, name=TENANTS, kwargs={"spec": tenants_spec()})
    default_timeout = config.timeouts.seconds[TimeoutCategory.EXECUTION_INTENT]
    spec = intents_spec(
        setting,
        resume_interval=config.resume_interval,
        default_timeout=default_timeout,
        replicas=nats.replicas,
        limits=config.tenant_limits,
        default_limits=config.tenant_default,
        appends=observed.appends[ADMISSION_CHAIN],
        tenant_appends=observed.appends[TENANT_CHAINS],
    )
    await system.spawn(Supervisor, name="intents", kwargs={"spec": spec})
    status = {"connection": CONNECTION, "owner": owner, "name": config.name}
    http = ""
    if config.http.enabled:
        readiness = Readiness(
            connection=CONNECTION,
            buckets={bucket: f"store/{name}" for name, bucket in BUCKETS.items()},
            roots=(NATS, "store", "controls"),
            streams=tuple((AUDIT_STREAM, f"{AUDIT_PREFIX}.{chain}") for chain in chains),
        )
        kwargs = {"http": config.http, "readiness": readiness, "observed": observed, "owner": owner,
                  "breaker_roots": (NATS, "store", "controls", "execution")}  # fmt: skip
        http = await (await system.spawn(HealthServer, name=HTTP, kwargs=kwargs)).ask(ServingAt())
        status["http"] = http
    await system.spawn(StatusService, name=STATUS, kwargs=status)
    if nats.embedded:
        endpoint: NatsEndpoint = await system.lookup(SERVER).ask(ServerInfo())
        urls = endpoint.urls
        state.write_connection(urls=urls, credentials={"token": endpoint.token}, embedded=True, http=http)
    else:
        urls = nats.urls
        state.write_connection(urls=urls, credentials=nats.credentials(), http=http)
    nats_urls = ", ".join(map(redact_url, urls))
    logged(LOG, logging.INFO, "process.serving",
           f"serving: NATS {nats_urls}{' (embedded)' if nats.embedded else ''}; "
           f"health and metrics {http or 'off'}; state in {config.state_dir.resolve()}",
           nats=nats_urls, http=http or None, state_dir=str(config.state_dir.resolve()), owner=owner)  # fmt: skip
