"""The live status of a running process, over NATS.

    exoarmur.process.<owner>.status   this process (its owner id: actors/app/state.py)
    exoarmur.status                   any one process (a queue group)

A request's body is ignored. The reply:

    {"ok": true,
     "process": {"owner", "name", "pid", "version", "python", "backend", "started", "uptime", "http"},
     "tree": [{"path", "actor", "state", "restarts", "depth", "capacity", "breaker", "children": [...]}, ...]}

`tree` is the supervision tree as SIGUSR1 prints it (supervisors/describe.py):
every actor's state, its restarts, its mailbox's depth and capacity, and
the breaker its supervisor keeps for it (CLOSED, OPEN, HALF_OPEN; null
where there is none).
"""

from __future__ import annotations

import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import attrs
import sniffio

from exoarmur.actors.nats import Delivery, Subscribe
from exoarmur.actors.nats.json_replies import reply_json
from exoarmur.runtime import Actor, ActorRef, handles
from exoarmur.supervisors import describe_system

__all__ = ["ANY_PROCESS", "StatusService", "exoarmur_version", "status_subject"]

ANY_PROCESS = "exoarmur.status"
QUEUE = "exoarmur-status"


def status_subject(owner: str) -> str:
    return f"exoarmur.process.{owner}.status"


def exoarmur_version() -> str:
    try:
        return version("exoarmur")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


class StatusService(Actor):
    mailbox_capacity = 64
    concurrency = 4

    def __init__(self, *, connection: str, owner: str, name: str, http: str = "") -> None:
        self.http = http  # the health and metrics server's URL ("": none)
        self.connection_path = connection
        self.owner = owner
        self.name = name
        self.started_at = time.time()

    async def started(self) -> None:
        self.connection: ActorRef = self.context.system.lookup(self.connection_path)
        path = self.context.path
        await self.connection.ask(Subscribe(status_subject(self.owner), path))
        await self.connection.ask(Subscribe(ANY_PROCESS, path, queue=QUEUE))

    @handles(Delivery, concurrent=True)
    async def on_request(self, m: Delivery) -> None:
        await reply_json(self.context, self.connection, m, self._answer)

    async def _answer(self, subject: str, data: bytes, reply: str) -> dict[str, Any]:
        nodes = await describe_system(self.context.system)
        now = time.time()
        process = {
            "owner": self.owner,
            "name": self.name,
            "pid": os.getpid(),
            "version": exoarmur_version(),
            "python": platform.python_version(),
            "backend": sniffio.current_async_library(),
            "started": self.started_at,
            "uptime": now - self.started_at,
            "http": self.http or None,
        }
        return {"ok": True, "process": process, "tree": [attrs.asdict(node) for node in nodes]}
