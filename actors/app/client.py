"""The CLI's way to a running process: a small actor system with one
NatsConnection, to the URLs of the process's connection file
(`<state dir>/connection.json`) or to `--nats-url` with the credentials of
the environment (EXOARMUR_NATS_TOKEN, ...).

    async with connected(target) as client:
        reply = await client.call("acme", "get", {"id": "i-1"})

A reply with `"ok": false` raises its coded error; no responder (no process
serving intents) is NATS_NO_RESPONDERS.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import orjson

from exoarmur.actors.app.nats_config import ENVIRONMENT, parse_nats
from exoarmur.actors.app.state import StateDir
from exoarmur.actors.intents.notes import MAX_WHO
from exoarmur.actors.intents.service import PREFIX
from exoarmur.actors.nats import ConnectionOptions, Credentials, NatsConnection, Request
from exoarmur.runtime import ActorRef, ActorSystem, ExoarmurError, MemoryAuditSink, ReasonCode, error_for

__all__ = ["CONNECTION", "Client", "Target", "connected", "operator"]

CONNECTION = "nats"


@attrs.frozen(kw_only=True)
class Target:
    """Where the CLI goes: explicit URLs, else the state directory's connection file."""

    state_dir: Path
    urls: tuple[str, ...] = ()

    def resolve(self, environ: Mapping[str, str]) -> tuple[tuple[str, ...], Credentials]:
        if self.urls:
            checked = parse_nats({"urls": list(self.urls)}, source="--nats-url", base_dir=None)
            found = {field: environ[name] for name, field in ENVIRONMENT.items() if environ.get(name)}
            return checked.urls, Credentials(**found)
        return StateDir(self.state_dir).read_connection()


@attrs.frozen
class Client:
    system: ActorSystem
    connection: ActorRef  # at the path CONNECTION

    async def call(self, tenant: str, operation: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """An intent request (exoarmur.intents.<tenant>.<operation>)."""
        return await self.request(f"{PREFIX}.{tenant}.{operation}", body, timeout=timeout)

    async def request(self, subject: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Any service's JSON request; its reply, or its coded error raised."""
        deadline = None if timeout is None else anyio.current_time() + timeout
        response = await self.connection.ask(Request(subject, orjson.dumps(body)), deadline=deadline)
        try:
            reply = orjson.loads(response.data)
        except orjson.JSONDecodeError:
            raise error_for(ReasonCode.ENVELOPE_INVALID, "the reply is not JSON") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise error_for(ReasonCode.ENVELOPE_INVALID, "the reply is not an exoarmur reply")
        if not reply["ok"]:
            raise _coded(reply)
        return reply


def _coded(reply: dict[str, Any]) -> ExoarmurError:
    code, detail = reply.get("code"), str(reply.get("detail", ""))
    try:
        return error_for(ReasonCode(code), detail)
    except ValueError:
        return error_for(ReasonCode.ENVELOPE_INVALID, f"unknown code {code!r}: {detail}")


def operator() -> str:
    """Who the CLI says is deciding (a kill switch, an approval): user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:MAX_WHO]


@asynccontextmanager
async def connected(target: Target) -> AsyncIterator[Client]:
    urls, credentials = target.resolve(os.environ)
    options = ConnectionOptions(urls=urls, name="exoarmur-cli").with_credentials_of(credentials)
    async with ActorSystem(name="exoarmur-cli", audit=MemoryAuditSink()) as system:
        connection = await system.spawn(NatsConnection, name=CONNECTION, kwargs={"options": options})
        yield Client(system, connection)
