"""Real nats-server processes for the integration tests: free loopback ports,
temporary storage, killed and restarted at will."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from exoarmur.actors.nats import ConnectionOptions, NatsConnection
from exoarmur.actors.nats.process import ServerOptions, ServerProcess
from exoarmur.runtime import ActorRef, ActorSystem

READY_SECONDS = 10.0


@asynccontextmanager
async def running_server(data_dir: Path, **options) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(ServerOptions(data_dir=data_dir, **options))
    await server.start(deadline=anyio.current_time() + READY_SECONDS)
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop(timeout=5.0)


def options_for(server: ServerProcess, **overrides) -> ConnectionOptions:
    settings = {"ping_interval": 0.5, "reconnect_time_wait": 0.1, "stuck_after": 2.0, **overrides}
    return ConnectionOptions(urls=[server.url], token=server.token, **settings)


async def connect(system: ActorSystem, server: ServerProcess, *, name: str = "nats", **overrides) -> ActorRef:
    return await system.spawn(NatsConnection, name=name, kwargs={"options": options_for(server, **overrides)})


async def eventually(predicate, *, timeout: float = 10.0, every: float = 0.02) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(every)


class LoopLag:
    """The longest the event loop ran late while open: a task that sleeps
    TICK and notes by how much more it slept. A deadline that fires late
    by that much was late because the process was not running (a loaded
    machine), not because of the code under test."""

    TICK = 0.005

    def __init__(self) -> None:
        self.worst = 0.0

    async def _watch(self) -> None:
        while True:
            before = anyio.current_time()
            await anyio.sleep(self.TICK)
            self.worst = max(self.worst, anyio.current_time() - before - self.TICK)


@asynccontextmanager
async def loop_lag() -> AsyncIterator[LoopLag]:
    lag = LoopLag()
    async with anyio.create_task_group() as group:
        group.start_soon(lag._watch)
        try:
            yield lag
        finally:
            group.cancel_scope.cancel()
