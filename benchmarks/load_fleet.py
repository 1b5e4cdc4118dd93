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
not, a get with `wait`. An answer that does not come (a timeout, no
responder while the process restarts, the connection down) is asked again,
the same id, for ANSWER_SECONDS at most: a submit is idempotent by id, so
the second answer is the first one's intent, DUPLICATE_SUPPRESSED. With
`copies`, every submit is sent that many times at once, each a delivery of
its own: one creates the intent, the others are answered duplicates.
"""

from __future__ import annotations

import asyncio
from collections import Counter
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

__all__ = ["Driving", "Fleet", "Source", "drive", "fleet", "intent_id", "sources"]

INTENT_TIMEOUT = 600.0  # the intents' own deadline: never EXPIRED under load
CALL_MARGIN = 5.0  # what a request waits beyond its `wait` for its answer
FOLLOW_SECONDS = 300.0  # a submitted intent followed at most this long to its end
ANSWER_SECONDS = 120.0  # a submission asked again at most this long (a restart, an outage)
RESUBMIT_PAUSE = 0.5
# Answers that say nothing final of the intent (none came, the request
# reached no process, or the process could not reach its store, or its
# breaker is open on it): asked again, the same id.
UNANSWERED = frozenset(
    {"TIMED_OUT", "NATS_NO_RESPONDERS", "NATS_DISCONNECTED", "JETSTREAM_UNAVAILABLE", "BREAKER_OPEN"}
    | {code.value for code in TIMEOUT_CODES}
)
CONNECTING_AT_ONCE = 50  # peers' connections opened together
DUPLICATE = "DUPLICATE_SUPPRESSED"
UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME"  # the load could not learn whether its submission made an intent
ABSENT = object()  # `_found`: the service says no such intent
TIMED_OUT = "TIMED_OUT"  # no answer within the request's time (a client-side count, not a system code)
NODE_MAILBOX = 256


@attrs.frozen(kw_only=True)
class Driving:
    """How every submission of a phase is driven."""

    kind: str  # the execution type
    wait: float = 30.0  # a submit's or get's `wait`: the reply is held until the end, at most this long
    copies: int = 1  # each submit sent this many times at once (a chaos run: every delivery three times)

    @property
    def longest(self) -> float:
        """The longest one submission can be driven: its answer, a look
        whether a refused one exists, then its follow (each bound plus the
        request that may be under way when it runs out)."""
        return 2 * ANSWER_SECONDS + FOLLOW_SECONDS + 3 * (self.wait + CALL_MARGIN + RESUBMIT_PAUSE)


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


async def drive(ask: Ask, recorder: Recorder, source: Source, intent: str, driving: Driving, due_ns: int) -> None:
    """Submit `intent` for `source` and follow it to its end, recording
    each answer in `recorder` (latency counted from `due_ns`, when the
    submission was due, so a client late to send it is not let off).
    Counted in flight by whoever started it (`Fleet.submit`), until this ends."""
    try:
        await _drive(ask, recorder, source, intent, driving, due_ns)
    except Exception as exc:  # a bug of the load's own (a reply it cannot read): counted, fails the run
        recorder.errored[type(exc).__name__] += 1
    finally:
        recorder.in_flight -= 1


async def _drive(ask: Ask, recorder: Recorder, source: Source, intent: str, driving: Driving, due_ns: int) -> None:
    subject = f"{PREFIX}.{source.tenant}"
    wait = driving.wait
    body = orjson.dumps(
        {"id": intent, "type": driving.kind, "params": {"source": source.name}, "timeout": INTENT_TIMEOUT, "wait": wait}
    )
    give_up = perf_ns() + ANSWER_SECONDS * 1e9
    attempt = 0
    while True:
        answers = await _copies(ask, f"{subject}.submit", body, wait, driving.copies)
        created = [a for a in answers if a.get("ok") is True and a.get("code") == ""]
        duplicates = [a for a in answers if a.get("ok") is True and a.get("code") == DUPLICATE]
        recorder.duplicates += len(duplicates)
        recorder.created_twice += len(created) > 1  # copies of one id both made an intent: never
        # A duplicate is our own intent if an earlier attempt or a sibling copy may have made it.
        if created or (duplicates and (attempt or driving.copies > 1)):
            answer = (created or duplicates)[0]
            break
        refused = [a for a in answers if a.get("code") not in UNANSWERED]
        # A refusal beside an unanswered copy says nothing: that copy may have made it.
        if (refused and len(refused) == len(answers)) or perf_ns() >= give_up:
            # After an unanswered attempt a refusal proves nothing: refused only if no intent was made.
            found = await _found(ask, subject, intent, wait) if attempt else ABSENT
            if found is ABSENT:
                answer = (refused or answers)[0]
                recorder.rejected(source, str(answer.get("code")), answer)
                return
            if found is None:
                recorder.rejected(source, UNKNOWN_OUTCOME, {"detail": "neither created nor refused, as far as get tells"})
                return
            answer = found
            break
        attempt += 1
        recorder.resubmitted += 1
        await anyio.sleep(RESUBMIT_PAUSE)
    recorder.accepted(source, intent)
    state = answer["intent"]["state"]
    follow_until = perf_ns() + FOLLOW_SECONDS * 1e9
    get = orjson.dumps({"id": intent, "wait": wait})
    while state not in recorder.terminal and perf_ns() < follow_until:
        answer = await _asked(ask, f"{subject}.get", get, wait)
        if answer.get("ok") is True:
            state = answer["intent"]["state"]
        else:  # no answer, or a refusal (the service shedding waits): not again at once
            await anyio.sleep(RESUBMIT_PAUSE)
    if state in recorder.terminal:
        recorder.ended(source, intent, state, due_ns)
    else:
        recorder.unended(source, intent, state)


async def _found(ask: Ask, subject: str, intent: str, wait: float) -> dict[str, Any] | object | None:
    """The intent's `get` answer if it exists; ABSENT if the service says
    INTENT_NOT_FOUND; None if no such answer came within ANSWER_SECONDS."""
    give_up = perf_ns() + ANSWER_SECONDS * 1e9
    get = orjson.dumps({"id": intent})
    while perf_ns() < give_up:
        answer = await _asked(ask, f"{subject}.get", get, wait)
        if answer.get("ok") is True:
            return answer
        if answer.get("code") == "INTENT_NOT_FOUND":
            return ABSENT
        await anyio.sleep(RESUBMIT_PAUSE)
    return None


async def _copies(ask: Ask, subject: str, body: bytes, wait: float, copies: int) -> list[dict[str, Any]]:
    if copies == 1:
        return [await _asked(ask, subject, body, wait)]
    answers: list[dict[str, Any]] = []

    async def one() -> None:
        answers.append(await _asked(ask, subject, body, wait))

    async with anyio.create_task_group() as group:
        for _ in range(copies):
            group.start_soon(one)
    return answers


async def _asked(ask: Ask, subject: str, body: bytes, wait: float) -> dict[str, Any]:
    try:
        return await ask(subject, body, wait + CALL_MARGIN)
    except TimeoutError:
        return {"ok": False, "code": TIMED_OUT}


# ---- nodes: actors in this process ------------------------------------------------------------


@message("exoarmur.load.emit")
class Emit:
    intent: str
    due_ns: int
    recorder: Recorder  # the phase's: a node lives through several
    driving: Driving


class Node(Actor):
    """A logical node: submits an intent for its tenant each time it is told
    to (`Emit`), through the connection actor, and follows it to its end.
    Its submissions run concurrently: a slow answer never delays the next."""

    mailbox_capacity = NODE_MAILBOX
    concurrency = NODE_MAILBOX

    def __init__(self, *, source: Source, connection: str) -> None:
        self.source = source
        self.connection_path = connection
        self.connection: ActorRef | None = None

    async def started(self) -> None:
        self.connection = self.context.system.lookup(self.connection_path)

    @handles(Emit, concurrent=True)
    async def emit(self, m: Emit) -> None:
        await drive(self._ask, m.recorder, self.source, m.intent, m.driving, m.due_ns)

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

    nodes: dict[str, ActorRef]
    peers: dict[str, Any]  # source name -> nats-py client
    group: Any  # the task group the peers' submissions run in
    errors: Counter[str]  # what the peers' clients reported (a chaos run's outages), by exception

    def submit(self, source: Source, intent: str, due_ns: int, recorder: Recorder, driving: Driving) -> None:
        recorder.submitted(source, late_ns=perf_ns() - due_ns)
        recorder.in_flight += 1  # from now: a node may take its Emit later
        node = self.nodes.get(source.name)
        if node is not None:
            try:
                # The node's handler runs under this deadline: the whole drive, not the default 30 s.
                node.tell_nowait(Emit(intent, due_ns, recorder, driving), timeout=driving.longest)
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

        self.group.start_soon(drive, ask, recorder, source, intent, driving, due_ns)


@asynccontextmanager
async def fleet(all_sources: list[Source], *, urls: tuple[str, ...], credentials: Credentials) -> AsyncIterator[Fleet]:
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
                kwargs = {"source": source, "connection": "nats"}
                nodes[source.name] = await system.spawn(Node, name=source.name, kwargs=kwargs)
        errors: Counter[str] = Counter()
        peers = await stack.enter_async_context(
            _peers([s for s in all_sources if s.kind == "peer"], urls, options.credential_kwargs(), errors)
        )
        group = await stack.enter_async_context(anyio.create_task_group())
        yield Fleet(nodes, peers, group, errors)


@asynccontextmanager
async def _peers(
    peers: list[Source], urls: tuple[str, ...], kwargs: dict[str, Any], errors: Counter[str]
) -> AsyncIterator[dict[str, Any]]:
    connected: dict[str, Any] = {}
    limiter = anyio.Semaphore(CONNECTING_AT_ONCE)

    async def error_cb(exc: Exception) -> None:  # counted, not a traceback per peer per outage
        errors[type(exc).__name__] += 1

    async def connect(source: Source) -> None:
        async with limiter:
            connected[source.name] = await nats.connect(
                list(urls), name=f"exoarmur-load-{source.name}", connect_timeout=5.0, max_reconnect_attempts=-1,
                allow_reconnect=True, error_cb=error_cb, **kwargs,
            )  # fmt: skip

    try:
        async with anyio.create_task_group() as group:
            for source in peers:
                group.start_soon(connect, source)
        yield connected
    finally:
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*(nc.close() for nc in connected.values()), return_exceptions=True)
