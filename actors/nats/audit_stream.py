"""The audit log as a hash-chained JetStream stream, and the sink that feeds it.

Each record is `{"chain", "position", "prev", "event", "hash"}`: `hash` is the
SHA-256 of `prev` and the canonical JSON of chain, position and event, so a
replay can prove that nothing was changed, dropped or reordered
(`verify_chain`). Records of one chain go to `<subject_prefix>.<chain>`;
several processes can share the stream with a chain each (the chain's name is
hashed in, so equal events of two chains never share a message id).

Exactly once across retries: the message id of a record is its hash. An append
whose ack timed out is published again with the same id until its deadline; if
the first one had landed, the stream acks the retry as a duplicate and stores
nothing. If the deadline passes with the outcome unknown, the next append first
reads the chain's head back from the stream (a leader read), so the chain never
forks. An `Append` may name its own message id, derived from what it records
(an intent's transition: the intent and its revision), so that a lone record
of the same fact appended again after a crash is stored once: a duplicate ack
then means it is already in the stream (within its duplicate window), and the
head is read back.

Appends queued together are one record: the appends waiting in the mailbox
when the chain is free (`@handles(..., batch=True)`) go in one publish, as
the event `{"kind": "batch", "events": [...]}` (at most BATCH_BYTES of
events per record; a lone append keeps its own event and message id). The
chain then costs one round trip and one fsync per record, not per event, and
a queue behind the chain drains faster the longer it is. A batch's message
id is its hash: a retry of that very record is stored once, and an append
whose id this chain stored in the last AUDIT_STORED_IDS is answered as a
duplicate (`StoredIds`); but an event appended again in a batch after a
crash, a lost ack, a takeover or past that memo is stored again (readers
count the same fact once: replay by intent and revision). `events_of` is
how every reader unfolds a record's event. Runs are appended one at a time,
each under the latest deadline among its appends (an append with little
time left does not cut the others short; its asker's own timer answers it).

Fail closed: `Append` answers the record's position or a code (a timeout, the
connection's NATS_DISCONNECTED, BREAKER_OPEN from this actor's supervisor).
Work that requires audit asks and stops on a code. `JetStreamAuditSink` is the
kernel's `AuditSink` on top: fire-and-forget, it counts what it could not hand
over instead of blocking the runtime.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import anyio
import attrs
import orjson

from exoarmur.actors.nats.errors import DEPENDENCY_CODES
from exoarmur.actors.nats.patience import patiently
from exoarmur.actors.nats.stream_messages import JsPublish, PubAck, StreamEnsure, StreamLast, StreamMessage, StreamRead
from exoarmur.runtime import (
    Actor,
    ActorRef,
    AuditEvent,
    ExoarmurError,
    ReasonCode,
    TimeoutCategory,
    detached,
    error_for,
    handles,
    message,
)
from exoarmur.runtime.margins import AUDIT_ATTEMPT, AUDIT_RETRY_PAUSE, AUDIT_STORED_IDS

__all__ = [
    "Append",
    "AppendAck",
    "AuditStream",
    "JetStreamAuditSink",
    "Record",
    "batch_event",
    "chain_hash",
    "events_of",
    "in_batches",
    "read_records",
    "verify_chain",
]

T = TypeVar("T")
GENESIS = "0" * 64
BATCH = "batch"
# The most event bytes in one record: far below NATS's default max_payload
# (1 MiB), so a record is never refused for its size unless one event is.
BATCH_BYTES = 256 * 1024
STORED_IDS_LIMIT = 1024  # message ids a chain remembers (StoredIds), some 300 bytes each
RETRYABLE = frozenset({ReasonCode.TIMEOUT_NATS_PUBLISH, ReasonCode.NATS_DISCONNECTED})


@attrs.frozen
class Record:
    chain: str
    position: int
    prev: str
    event: dict[str, Any]
    hash: str

    def to_bytes(self) -> bytes:
        fields = {"chain": self.chain, "position": self.position, "prev": self.prev, "event": self.event, "hash": self.hash}
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)  # attrs.asdict would copy the event, deeply

    @classmethod
    def from_bytes(cls, data: bytes) -> Record:
        fields = orjson.loads(data)
        return cls(fields["chain"], fields["position"], fields["prev"], fields["event"], fields["hash"])


def chain_hash(chain: str, prev: str, position: int, event: dict[str, Any]) -> str:
    body = orjson.dumps({"chain": chain, "position": position, "event": event}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()


def batch_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The event of a record holding several appends, in their order."""
    return {"kind": BATCH, "events": events}


def events_of(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The events one record holds: a batch's, in order, or the event itself.
    A malformed batch is returned as itself (for a reader to reject)."""
    if event.get("kind") == BATCH and set(event) == {"kind", "events"}:
        inner = event["events"]
        if isinstance(inner, list) and inner and all(isinstance(e, dict) and e.get("kind") != BATCH for e in inner):
            return inner
    return [event]


def verify_chain(records: Iterable[Record]) -> int:
    """The number of records if they form one unbroken chain from the genesis;
    AUDIT_CHAIN_BROKEN naming the first position that does not."""
    prev, expected, chain = GENESIS, 0, None
    for record in records:
        chain = record.chain if chain is None else chain
        if record.chain != chain:
            raise error_for(ReasonCode.AUDIT_CHAIN_BROKEN, f"record {record.position} is of chain {record.chain!r}")
        if record.position != expected:
            raise error_for(ReasonCode.AUDIT_CHAIN_BROKEN, f"position {record.position}, expected {expected}")
        if record.prev != prev or record.hash != chain_hash(chain, prev, record.position, record.event):
            raise error_for(ReasonCode.AUDIT_CHAIN_BROKEN, f"record {record.position} does not match its chain")
        prev, expected = record.hash, expected + 1
    return expected


@message("exoarmur.audit.append", timeout=TimeoutCategory.NATS_PUBLISH)
class Append:
    event: dict[str, Any]
    # None: the record's hash (a retry of this very record is stored once).
    msg_id: str | None = None


@attrs.frozen
class AppendAck:
    position: int
    seq: int
    duplicate: bool
    hash: str


class AuditStream(Actor):
    mailbox_capacity = 10_000
    concurrency = 1

    def __init__(
        self,
        *,
        connection: str,
        chain: str = "main",
        stream: str = "EXOARMUR_AUDIT",
        subject_prefix: str = "exoarmur.audit",
        replicas: int = 1,
        appends: Counter[str] | None = None,
    ) -> None:
        self.connection_path = connection
        # "stored", "duplicate", or the code an append failed with (for /metrics);
        # handed in, so the counts outlive this actor's restarts.
        self.appends: Counter[str] = appends if appends is not None else Counter()
        self.chain = chain
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.subject = f"{subject_prefix}.{chain}"
        self.replicas = replicas
        self.connection: ActorRef | None = None
        # (next position, prev hash, stream seq of the last record); None: unknown.
        self.head: tuple[int, str, int] | None = None
        self.stored_ids = StoredIds()

    async def started(self) -> None:
        connection = self.connection = self.context.system.lookup(self.connection_path)
        ensure = StreamEnsure(self.stream, (f"{self.subject_prefix}.>",), replicas=self.replicas)
        await patiently(self.context, lambda: connection.ask(ensure), what=f"making stream {self.stream}")
        await patiently(self.context, self._read_head, what=f"reading the head of chain {self.chain}")

    async def _read_head(self) -> None:
        assert self.connection is not None
        last: StreamMessage | None = await self._ask(StreamLast(self.stream, self.subject))
        if last is None:
            self.head = (0, GENESIS, 0)
            return
        record = Record.from_bytes(last.data)
        self.head = (record.position + 1, record.hash, last.seq)

    async def _ask(self, message: Any, *, deadline: float | None = None) -> Any:
        assert self.connection is not None
        try:
            return await self.connection.ask(message, deadline=deadline)
        except ExoarmurError as exc:
            if exc.code in DEPENDENCY_CODES:
                self.context.report_failure(exc.code, exc.detail)
            raise

    # One run at a time (the chain's order), under the run's latest deadline:
    # an append with little time left does not cut the others' record short;
    # its asker's own timer answers it.
    @handles(Append, batch=True, per_item=True, concurrent=True)
    async def append(self, run: list[Append]) -> list[AppendAck | ExoarmurError]:
        """The appends queued together, in records of at most BATCH_BYTES of
        events; once one record fails, the rest get its code (fail closed:
        the run's time is up, or the chain is unreachable). An
        append whose message id this chain stored lately, or that repeats
        one before it in the run, is answered as that one's duplicate."""
        now = self.context.now()
        answers: dict[int, AppendAck | ExoarmurError] = {}
        todo: list[tuple[int, Append]] = []
        firsts: dict[str, int] = {}
        for index, m in enumerate(run):
            known = self.stored_ids.get(m.msg_id, now)
            if known is not None:
                answers[index] = known
            elif m.msg_id is None:
                todo.append((index, m))
            elif m.msg_id not in firsts:
                firsts[m.msg_id] = index
                todo.append((index, m))
        failed: ExoarmurError | None = None
        for part in in_batches(todo, _event_of):
            if failed is None:
                try:
                    ack = await self._append([m for _, m in part])
                except ExoarmurError as exc:
                    failed = exc
            for index, m in part:
                answers[index] = ack if failed is None else failed
                if failed is None and m.msg_id is not None:
                    self.stored_ids.add(m.msg_id, ack, now)
        out = [answers[i] if i in answers else _repeated(answers[firsts[str(m.msg_id)]]) for i, m in enumerate(run)]
        for answer in out:
            self.appends[answer.code.value if isinstance(answer, ExoarmurError) else _result(answer)] += 1
        return out

    async def _append(self, part: list[Append]) -> AppendAck:
        """One record, one at a time: the chain's order is the order appends
        are handled. Each publish expects the chain's last stream sequence,
        so a publish that lands late (buffered through a reconnect) cannot
        fork the chain: the stream refuses whichever comes second, and it is
        rebuilt on the head read back."""
        deadline = self.context.deadline
        assert deadline is not None
        event = part[0].event if len(part) == 1 else batch_event([m.event for m in part])
        msg_id = part[0].msg_id if len(part) == 1 else None
        while True:
            if self.head is None:
                await self._read_head()  # the last outcome is unknown
            assert self.head is not None
            position, prev, last_seq = self.head
            record = Record(self.chain, position, prev, event, chain_hash(self.chain, prev, position, event))
            self.head = None  # unknown until acked
            try:
                ack = await self._publish(record, last_seq, deadline, msg_id)
            except ExoarmurError as exc:
                if exc.code is not ReasonCode.KV_CONFLICT or self.context.now() >= deadline:
                    raise
                continue  # someone else's record (or our late one) is the head now
            if ack.duplicate and msg_id is not None:
                return AppendAck(position, ack.seq, True, record.hash)  # stored before: head unknown
            self.head = (position + 1, record.hash, ack.seq)
            return AppendAck(position, ack.seq, ack.duplicate, record.hash)

    async def _publish(self, record: Record, last_seq: int, deadline: float, msg_id: str | None) -> PubAck:
        """Publish with `msg_id` (default: the record's hash); after a lost ack
        or a lost connection, again with the same id, until `deadline` (each
        attempt AUDIT_ATTEMPT at most, AUDIT_RETRY_PAUSE between them)."""
        publish = JsPublish(
            self.subject, record.to_bytes(), msg_id=msg_id or record.hash, expected_last_subject_seq=last_seq
        )
        while True:
            attempt_deadline = min(deadline, self.context.now() + AUDIT_ATTEMPT)
            try:
                return await self._ask(publish, deadline=attempt_deadline)
            except ExoarmurError as exc:
                if exc.code not in RETRYABLE or self.context.now() >= deadline:
                    raise
            await anyio.sleep(AUDIT_RETRY_PAUSE)


def in_batches(items: list[T], event: Callable[[T], dict[str, Any]]) -> list[list[T]]:
    """`items` in order, cut so that no batch holds more than BATCH_BYTES of
    events (an event larger than that is a batch alone)."""
    if len(items) <= 1:
        return [items] if items else []
    batches: list[list[T]] = [[]]
    size = 0
    for item in items:
        length = len(orjson.dumps(event(item)))
        if batches[-1] and size + length > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += length
    return batches


async def read_records(connection: ActorRef, stream: str, seqs: Iterable[int]) -> list[Record]:
    """The records stored at these stream sequences (leader reads), for replay."""
    found = []
    for seq in seqs:
        msg: StreamMessage | None = await connection.ask(StreamRead(stream, seq))
        if msg is not None:
            found.append(Record.from_bytes(msg.data))
    return found


def _event_of(item: tuple[int, Append]) -> dict[str, Any]:
    return item[1].event


def _repeated(answer: AppendAck | ExoarmurError) -> AppendAck | ExoarmurError:
    return attrs.evolve(answer, duplicate=True) if isinstance(answer, AppendAck) else answer


def _result(ack: AppendAck) -> str:
    return "duplicate" if ack.duplicate else "stored"


class StoredIds:
    """The message ids a chain stored lately, with their acks, oldest first:
    for AUDIT_STORED_IDS seconds, at most STORED_IDS_LIMIT of them."""

    def __init__(self) -> None:
        self.acks: OrderedDict[str, tuple[float, AppendAck]] = OrderedDict()

    def get(self, msg_id: str | None, now: float) -> AppendAck | None:
        """The ack of `msg_id`'s append, as a duplicate's, if remembered."""
        acks = self.acks
        while acks and (len(acks) > STORED_IDS_LIMIT or next(iter(acks.values()))[0] < now - AUDIT_STORED_IDS):
            acks.popitem(last=False)
        found = acks.get(msg_id) if msg_id is not None else None
        return None if found is None else attrs.evolve(found[1], duplicate=True)

    def add(self, msg_id: str, ack: AppendAck, now: float) -> None:
        self.acks[msg_id] = (now, ack)


class JetStreamAuditSink:
    """The kernel's AuditSink on an AuditStream actor: `emit` never blocks; an
    event the actor cannot take (full mailbox, breaker open, stopped) is
    counted in `dropped` with its code in `last_drop`.

    Events about the audit actor itself are not handed to it (counted in
    `own`): those whose path is its path (its refusals, crashes, reported
    failures) or whose sender is (the connection's answers to the publishes
    it makes). Handed over, each failed append would audit a failure that
    asks for another append, without end; a refused hand-over would audit a
    refusal that is handed over again, in the same stack, until Python's
    recursion limit. Keep them in a local sink next to this one."""

    def __init__(self, ref: ActorRef) -> None:
        self.ref = ref
        self.dropped = 0
        self.own = 0
        self.last_drop: ReasonCode | None = None
        self.drops: Counter[ReasonCode] = Counter()  # `dropped`, by code

    def emit(self, event: AuditEvent) -> None:
        path = self.ref.path
        if event.path == path or event.sender == path:
            self.own += 1
            return
        try:
            with detached():  # not the emitting handler's deadline: a deadline's own event must get through
                self.ref.tell_nowait(Append(event.to_json()))
        except ExoarmurError as exc:
            self.dropped += 1
            self.last_drop = exc.code
            self.drops[exc.code] += 1

    def close(self) -> None:
        pass
