"""The embedded NATS server as a supervised actor.

`exoarmur run` without a NATS URL starts one: nats-server with JetStream on a
free loopback port, a generated token, data under a local directory
(`actors/nats/process.py` does the process work). If the process exits, the
actor crashes and its supervisor restarts it on the same data directory, same
ports, same token, so clients reconnect to what they knew. Stop is SIGTERM,
then SIGKILL after `shutdown` seconds.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from exoarmur.runtime.margins import SERVER_SHUTDOWN
from exoarmur.runtime import Actor, TimeoutCategory, handles, message
from exoarmur.actors.nats.process import ClusterOptions, ServerOptions, ServerProcess

__all__ = ["EmbeddedNatsServer", "NatsEndpoint", "ServerExited", "ServerInfo"]


@message("exoarmur.nats.server_info")
class ServerInfo:
    """Where the server listens and how to authenticate: a NatsEndpoint."""


@attrs.frozen(kw_only=True)
class NatsEndpoint:
    urls: tuple[str, ...]
    token: str | None = attrs.field(default=None, repr=False)  # never printed
    monitor_url: str | None = None


class ServerExited(Exception):
    """The nats-server process ended while its actor ran: a crash."""


class EmbeddedNatsServer(Actor):
    mailbox_capacity = 100

    def __init__(
        self,
        *,
        data_dir: str | Path,
        name: str = "exoarmur",
        sync_always: bool = True,
        cluster: ClusterOptions | None = None,
        port: int = 0,
        shutdown: float = SERVER_SHUTDOWN,
    ) -> None:
        self.options = ServerOptions(
            data_dir=Path(data_dir), name=name, sync_always=sync_always, cluster=cluster, port=port
        )
        self.shutdown = shutdown
        self.server: ServerProcess | None = None
        self.stopped_on_purpose = False

    async def started(self) -> None:
        system = self.context.system
        self.server = ServerProcess(self.options)
        await self.server.start(deadline=system.now() + system.timeouts.seconds[TimeoutCategory.NATS_CONNECT])
        self.context.start_task(self._watch, self.server)

    async def _watch(self, server: ServerProcess) -> None:
        status = await server.wait()
        if self.stopped_on_purpose:
            return  # `stopping` ended it: no crash
        raise ServerExited(f"nats-server exited with status {status}; log: {server.log_tail(3)}")

    async def stopping(self) -> None:
        self.stopped_on_purpose = True
        if self.server is not None:
            await self.server.stop(timeout=self.shutdown)

    @handles(ServerInfo)
    def info(self, message: ServerInfo) -> NatsEndpoint:
        assert self.server is not None
        return NatsEndpoint(urls=(self.server.url,), token=self.server.token, monitor_url=self.server.monitor_url)
