"""Actors for the remote tests (wire names "test.remote.*"): a counter whose
handlers are exported for remote use, and a loopback that stands in for the
NATS connection, so a RemoteRef reaches a Gateway of the same system with no
server: `Serve` keeps the responder, `Request` runs it as the connection does
(`call_as_self`) and answers with its one reply."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import orjson
import outcome
import pytest

from exoarmur.actors.nats import Request, Response, Serve, Unsubscribe
from exoarmur.actors.remote import Gateway, RemoteRef
from exoarmur.runtime import Actor, ActorRef, ActorSystem, Deferred, ExoarmurError, ReasonCode, handles, message
from tests.runtime.support import Add, Counter, Crash, Get, Seen, Sleep


@message("test.remote.peek")
class Peek:
    """Answer [seconds left, tenant, trace id] of the envelope being handled."""


@message("test.remote.local")
class Local:
    """Handled, but not exported: the wire must never deliver it."""


class RemoteCounter(Counter):
    """Counter, its messages exported for remote use; `Local` kept local.
    `handled` gets every message type a handler (but Crash's) ran for."""

    def __init__(self, *, start: int = 0, handled: list[type] | None = None) -> None:
        super().__init__(start=start)
        self.handled: list[type] = [] if handled is None else handled

    @handles(Add, remote=True)
    def add(self, message: Add) -> int:
        self.handled.append(Add)
        return super().add(message)

    @handles(Get, remote=True)
    def get(self, message: Get) -> int:
        self.handled.append(Get)
        return super().get(message)

    @handles(Crash, remote=True)
    def crash(self, message: Crash) -> None:
        super().crash(message)

    @handles(Sleep, remote=True)
    async def sleep(self, message: Sleep) -> str:
        self.handled.append(Sleep)
        return await super().sleep(message)

    @handles(Seen, remote=True)
    def seen_envelope(self, message: Seen) -> tuple:
        return super().seen_envelope(message)  # a tuple: it cannot travel

    @handles(Peek, remote=True)
    def peek(self, message: Peek) -> list:
        self.handled.append(Peek)
        env = self.context.envelope
        return [env.deadline - self.context.now(), env.tenant, env.trace_id]

    @handles(Local)
    def local(self, message: Local) -> str:
        self.handled.append(Local)
        return "local"


EXPORTED = frozenset({Add, Get, Sleep, Peek})  # of what RemoteCounter records


class Loopback(Actor):
    """The connection's `Serve` and `Request`, in process. `replies[i]` counts
    the replies the responder gave to request i (one each, always)."""

    def __init__(self, *, replies: list[int]) -> None:
        self.served: dict[str, Callable[..., None]] = {}
        self.replies = replies

    @handles(Serve)
    def serve(self, m: Serve) -> int:
        self.served[m.subject] = m.responder
        return len(self.served)

    @handles(Unsubscribe)
    def unsubscribe(self, m: Unsubscribe) -> None:
        self.served.clear()

    @handles(Request)
    def request(self, m: Request) -> Deferred:
        responder = self.served.get(m.subject)
        if responder is None:
            raise self.context.system.failure("rejected", ReasonCode.NATS_NO_RESPONDERS, path=self.context.path)
        later = self.context.defer()
        index = len(self.replies)
        self.replies.append(0)

        def respond(data: bytes) -> None:
            self.replies[index] += 1
            later.resolve(outcome.Value(Response(data, None)))

        self.context.call_as_self(responder, m.data, m.headers, respond)
        return later


@attrs.frozen
class Looped:
    wire: ActorRef
    replies: list[int]  # per request through the wire, the replies it got
    handled: list[type]  # what the counter's handlers ran for


@asynccontextmanager
async def looped(system: ActorSystem, **gateway: object) -> AsyncIterator[Looped]:
    """In `system`: a Loopback at "wire", a Gateway for system "a" on it (with
    `gateway` options) and a RemoteCounter at "counter"."""
    replies: list[int] = []
    handled: list[type] = []
    wire = await system.spawn(Loopback, name="wire", kwargs={"replies": replies})
    await system.spawn(Gateway, name="gateway", kwargs={"connection": "wire", "system": "a", **gateway})
    await system.spawn(RemoteCounter, name="counter", kwargs={"handled": handled})
    yield Looped(wire, replies, handled)


def remote(system: ActorSystem, path: str, *, system_name: str = "a", connection: str = "wire") -> RemoteRef:
    return RemoteRef(system, connection=connection, system_name=system_name, path=path)


async def code_of(awaitable) -> ReasonCode:
    """The code of the coded error `awaitable` raises (it must raise one)."""
    with pytest.raises(ExoarmurError) as caught:
        await awaitable
    return caught.value.code


def wire_envelope(name: str, body: dict, *, ms: object) -> bytes:
    """An envelope as any peer may write it, `ms` unchecked."""
    headers = {"v": 1, "m": name, "b": body, "ms": ms, "t": None, "s": None, "c": None, "tr": None, "k": None, "a": 1}
    return orjson.dumps(headers)
