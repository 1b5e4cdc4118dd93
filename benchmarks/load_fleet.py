"""The load's sources: logical nodes and peer identities, and how one
submission is driven to its end.

    nodes   actors of exoarmur's own runtime in this process (`Node`), each
            bound to one tenant, submitting through one NatsConnection
            actor, as a user's own actors would
    peers   remote submitters (`Peer`), each with a NATS connection and
            client name of its own (`exoarmur-load-peer-0001`), reaching the
            system only through its NATS interface

Every submission names its source in the intent's params (`{"source":
"node-0001"}`), so the sources that actually submitted are counted from
the records the system stored (load_verify.py), not from these counts.

A submission is `drive`n the same way from either side: a submit with
`wait` (the reply comes once the intent is terminal), then, while it is
not, a get with `wait`. An answer that does not come in time is asked
again, the same id (a submit is idempotent by id: the second answer is the
first one's intent, DUPLICATE_SUPPRESSED), at most RESUBMITS times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import attrs
import nats
import orjson

from exoarmur.actors.intents.requests import PREFIX
from exoarmur.actors.nats import ConnectionOptions, Credentials, NatsConnection, Request
from exoarmur.actors.nats.errors import coded
from exoarmur.benchmarks.load_record import Recorder
from exoarmur.benchmarks.measure import perf_ns
from exoarmur.runtime import (
    TIMEOUT_CODES,
    Actor,
    ActorRef,
    ActorSystem,
    ExoarmurError,
    MemoryAuditSink,
    ReasonCode,
    handles,
    message,
)

__all__ = ["Fleet", "Source", "drive", "fleet", "intent_id", "sources"]

INTENT_TIMEOUT = 600.0  # the intents' own deadline: never EXPIRED under load
WAIT = 30.0  # a submit's or get's `wait`: held until the intent is terminal, at most this long
CALL_MARGIN = 5.0  # what a request waits beyond `wait` for its answer
FOLLOW_SECONDS = 300.0  # a submitted intent followed at most this long to its end
RESUBMITS = 3
RESUBMIT_PAUSE = 0.5
# Answers that say nothing of the intent (none came, or the request never
# reached a process): asked again, the same id.
UNANSWERED = frozenset({"TIMED_OUT", "NATS_NO_RESPONDERS", "NATS_DISCONNECTED"})
CONNECTING_AT_ONCE = 50  # peers' connections opened together
DUPLICATE = "DUPLICATE_SUPPRESSED"
TIMED_OUT = "TIMED_OUT"  # no answer within the request's time (a client-side count, not a system code)
NODE_MAILBOX = 256
# The longest one submission can be driven: every resubmit, then the follow.
DRIVE_SECONDS = (RESUBMITS + 1) * (WAIT + CALL_MARGIN + RESUBMIT_PAUSE) + FOLLOW_SECONDS + WAIT + CALL_MARGIN

Ask = Callable[[str, bytes, float], Awaitable[dict[str, Any]]]


@attrs.frozen
class Source:
    """One submitter: `node-0001` or `peer-0001`, and the tenant it submits for."""

    name: str
    tenant: str

    @property
    def kind(self) -> str:
        return self.name.split("-", 1)[0]


def sources(*, nodes: int, peers: int, tenants: int) -> list[Source]:
    """Nodes then peers, tenants dealt round-robin within each (`tenant-00`...)."""
    named = [f"node-{i:05d}" for i in range(nodes)] + [f"peer-{i:05d}" for i in range(peers)]
    return [Source(name, f"tenant-{i % tenants:02d}") for i, name in enumerate(named)]


def intent_id(run: str, source: Source, seq: int) -> str:
    return f"{run}-{source.name}-{seq}"


async def drive(ask: Ask, recorder: Recorder, source: Source, intent: str, kind: str, due_ns: int) -> None:
    """Submit `intent` for `source` and follow it to its end, recording
    each answer in `recorder` (latency counted from `due_ns`, when the
    submission was due, so a client late to send it is not let off).
    Counted in flight by whoever started it (`Fleet.submit`), until this ends."""
    try:
        await _drive(ask, recorder, source, intent, kind, due_ns)
    finally:
        recorder.in_flight -= 1


async def _drive(ask: Ask, recorder: Recorder, source: Source, intent: str, kind: str, due_ns: int) -> None:
    subject = f"{PREFIX}.{source.tenant}"
    body = orjson.dumps(
        {"id": intent, "type": kind, "params": {"source": source.name}, "timeout": INTENT_TIMEOUT, "wait": WAIT}
    )
    answer: dict[str, Any] = {}
    for attempt in range(RESUBMITS + 1):
        if attempt:
            recorder.resubmitted += 1
            await anyio.sleep(RESUBMIT_PAUSE)
        answer = await _asked(ask, f"{subject}.submit", body)
        if answer.get("code") not in UNANSWERED:
            break
    # A resubmit finds the first attempt's intent, if that one got through.
    codes = ("", DUPLICATE) if attempt else ("",)
    if answer.get("ok") is not True or answer.get("code") not in codes:
        recorder.rejected(source, str(answer.get("code")), answer)
        return
    recorder.accepted(source, intent)
    state = answer["intent"]["state"]
    follow_until = perf_ns() + FOLLOW_SECONDS * 1e9
    get = orjson.dumps({"id": intent, "wait": WAIT})
    while state not in recorder.terminal and perf_ns() < follow_until:
        answer = await _asked(ask, f"{subject}.get", get)
        if answer.get("ok") is True:
            state = answer["intent"]["state"]
        elif answer.get("code") in UNANSWERED:
            await anyio.sleep(RESUBMIT_PAUSE)
    if state in recorder.terminal:
        recorder.ended(source, intent, state, due_ns)
    else:
        recorder.unended(source, intent, state)


async def _asked(ask: Ask, subject: str, body: bytes) -> dict[str, Any]:
    try:
        return await ask(subject, body, WAIT + CALL_MARGIN)
    except TimeoutError:
        return {"ok": False, "code": TIMED_OUT}


# ---- nodes: actors in this process ------------------------------------------------------------


@message("exoarmur.load.emit")
class Emit:
    intent: str
    due_ns: int
    recorder: Recorder  # the phase's: a node lives through several


class Node(Actor):
    """A logical node: submits an intent for its tenant each time it is told
    to (`Emit`), through the connection actor, and follows it to its end.
    Its submissions run concurrently: a slow answer never delays the next."""

    mailbox_capacity = NODE_MAILBOX
    concurrency = NODE_MAILBOX

    def __init__(self, *, source: Source, connection: str, kind: str) -> None:
        self.source = source
        self.connection_path = connection
        self.kind = kind
        self.connection: ActorRef | None = None

    async def started(self) -> None:
        self.connection = self.context.system.lookup(self.connection_path)

    @handles(Emit, concurrent=True)
    async def emit(self, m: Emit) -> None:
        await drive(self._ask, m.recorder, self.source, m.intent, self.kind, m.due_ns)

    async def _ask(self, subject: str, body: bytes, timeout: float) -> dict[str, Any]:
        assert self.connection is not None
        try:
            response = await self.connection.ask(Request(subject, body), timeout=timeout)
        except ExoarmurError as exc:
            if exc.code in TIMEOUT_CODES:
                raise TimeoutError(exc.detail) from None
            return {"ok": False, "code": exc.code.value, "detail": exc.detail}
        return orjson.loads(response.data)


# ---- the fleet --------------------------------------------------------------------------------


@attrs.define
class Fleet:
    """Every source, ready: nodes spawned, peers connected. `submit` starts
    one submission at once and never waits for it."""

    system: ActorSystem
    nodes: dict[str, ActorRef]
    peers: dict[str, Any]  # source name -> nats-py client
    kind: str
    group: Any  # the task group the peers' submissions run in

    def submit(self, source: Source, intent: str, due_ns: int, recorder: Recorder) -> None:
        recorder.submitted(source)
        recorder.in_flight += 1  # from now: a node may take its Emit later
        node = self.nodes.get(source.name)
        if node is not None:
            try:
                node.tell_nowait(Emit(intent, due_ns, recorder))
            except ExoarmurError as exc:  # the node's own backlog: this client fell behind
                recorder.client_refused(source, exc.code.value)
                recorder.in_flight -= 1
            return
        nc = self.peers[source.name]

        async def ask(subject: str, body: bytes, timeout: float) -> dict[str, Any]:
            try:
                reply = await nc.request(subject, body, timeout=timeout)
            except nats.errors.TimeoutError:
                raise TimeoutError(subject) from None
            except nats.errors.Error as exc:  # no responders, or the connection down (a chaos run)
                error = coded(exc, timeout=ReasonCode.TIMEOUT_NATS_REQUEST)
                if error is None:
                    raise
                return {"ok": False, "code": error.code.value, "detail": error.detail}
            return orjson.loads(reply.data)

        self.group.start_soon(drive, ask, recorder, source, intent, self.kind, due_ns)


@asynccontextmanager
async def fleet(all_sources: list[Source], *, urls: tuple[str, ...], credentials: Credentials, kind: str) -> AsyncIterator[Fleet]:
    """The nodes (one actor system, one connection actor) and the peers
    (a nats-py connection each), ready; on exit the peers' submissions
    still running are let finish, then all is closed (a phase waits for
    its own submissions to end: load_phases.py)."""
    options = ConnectionOptions(urls=urls, name="exoarmur-load-nodes").with_credentials_of(credentials)
    async with AsyncExitStack() as stack:
        system = await stack.enter_async_context(ActorSystem(name="exoarmur-load", audit=MemoryAuditSink(limit=1000)))
        await system.spawn(NatsConnection, name="nats", kwargs={"options": options})
        nodes = {}
        for source in all_sources:
            if source.kind == "node":
                kwargs = {"source": source, "connection": "nats", "kind": kind}
                nodes[source.name] = await system.spawn(Node, name=source.name, kwargs=kwargs)
        peers = await stack.enter_async_context(
            _peers([s for s in all_sources if s.kind == "peer"], urls, options.credential_kwargs())
        )
        group = await stack.enter_async_context(anyio.create_task_group())
        yield Fleet(system, nodes, peers, kind, group)


@asynccontextmanager
async def _peers(peers: list[Source], urls: tuple[str, ...], kwargs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    connected: dict[str, Any] = {}
    limiter = anyio.Semaphore(CONNECTING_AT_ONCE)

    async def connect(source: Source) -> None:
        async with limiter:
            connected[source.name] = await nats.connect(
                list(urls), name=f"exoarmur-load-{source.name}", connect_timeout=5.0, max_reconnect_attempts=-1,
                allow_reconnect=True, **kwargs,
            )  # fmt: skip

    try:
        async with anyio.create_task_group() as group:
            for source in peers:
                group.start_soon(connect, source)
        yield connected
    finally:
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*(nc.close() for nc in connected.values()), return_exceptions=True)
