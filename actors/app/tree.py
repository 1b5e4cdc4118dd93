"""The default supervision tree of `exoarmur run`.

    nats                 Supervisor, one_for_one
      nats/server        EmbeddedNatsServer (only without a NATS URL)
      nats/connection    NatsConnection (to nats/server, or to the configured URLs)

The connection has a breaker: a NATS that keeps failing is left alone for the
cooldown instead of burning the supervisor's restart intensity. Credentials
come from `[nats]` or the environment (actors/app/nats_config.py).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from exoarmur.actors.nats import ConnectionOptions, NatsConnection, Subscriptions
from exoarmur.actors.nats.server import EmbeddedNatsServer
from exoarmur.runtime import ActorSystem, InvalidInput, ReasonCode
from exoarmur.actors.app.nats_config import NatsConfig
from exoarmur.supervisors import BackoffPolicy, BreakerPolicy, ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec

if TYPE_CHECKING:
    from exoarmur.actors.app.config import Config

NATS = "nats"
SERVER = f"{NATS}/server"
CONNECTION = f"{NATS}/connection"

CONNECTION_BREAKER = BreakerPolicy(threshold=5, window=60.0, cooldown=5.0, max_cooldown=60.0)
RESTART_BACKOFF = BackoffPolicy(initial=0.1, max_delay=5.0)


def nats_spec(nats: NatsConfig) -> SupervisorSpec:
    children = []
    if nats.embedded:
        children.append(
            ChildSpec(
                "server",
                EmbeddedNatsServer,
                kwargs={"data_dir": nats.data_dir, "sync_always": nats.sync_always},
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
    return SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=RestartIntensity(10, 60.0), children=tuple(children))


async def build_tree(system: ActorSystem, config: Config) -> None:
    nats = config.nats.with_environment(os.environ)
    if config.tree_options:
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID,
            f"tree.options: the default tree takes none, got {', '.join(config.tree_options)}",
        )
    await system.spawn(Supervisor, name=NATS, kwargs={"spec": nats_spec(nats)})
