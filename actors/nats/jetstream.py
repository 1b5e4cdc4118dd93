"""JetStream on the connection: KV buckets and streams.

nats-py's JetStream context is made once per client, its own timeout only a
backstop: each call is cut at its envelope's deadline (calls.py). A bucket's
nats-py handle is opened on first use and kept for that client (`bucket`);
opening is part of the operation that needed it, so it runs in that
operation's time and fails with that operation's code (a put's
TIMEOUT_KV_PUT, not a get's). Reads go to the stream leader, so a read that
decides an outcome sees the latest acknowledged write. KV gets, puts,
updates and deletes waiting together are one concurrent run: one crossing to nats-py, each asker
answered on its own (calls.call_each); a KvBucket's get, put, update or
delete starts at once as the one request it is, with no task and no scope
(`kv_at_once`, requests.py), as a Request does, once its bucket is open on
this client (a task opens it first). A stream is read in bulk by
`stream_fetch`: one batch of messages per pull request, not one request each.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header, KeyValueConfig, StreamConfig
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from exoarmur.actors.nats.calls import call, call_each
from exoarmur.actors.nats.js_replies import delete_request, js_publish_request, leader_get, put_request, update_request
from exoarmur.actors.nats.kv_messages import (
    Delete,
    Get,
    KvCreate,
    KvDelete,
    KvGet,
    KvKeys,
    KvOpen,
    KvPut,
    KvUpdate,
    Put,
    Update,
)
from exoarmur.actors.nats.read_loop import Inline
from exoarmur.actors.nats.requests import start
from exoarmur.actors.nats.starting import OneRequest
from exoarmur.actors.nats.state import ConnectionState
from exoarmur.actors.nats.stream_messages import FETCH_LIMIT, JsPublish, StreamEnsure, StreamFetch, StreamMessage
from exoarmur.runtime import Deferred, ExoarmurError, ReasonCode, error_for
from exoarmur.runtime.margins import FETCH_CONSUMER_IDLE, JS_BACKSTOP

__all__ = [
    "jetstream",
    "js_publish",
    "kv_at_once",
    "kv_create",
    "kv_delete",
    "kv_get",
    "kv_keys",
    "kv_open",
    "kv_put",
    "kv_update",
    "stream_ensure",
    "stream_fetch",
    "stream_read",
]

# How long the server keeps a fetch's consumer once nothing pulls from it: a
# fetch deletes its own, so this only ends those of fetches cut short.
# The status of the reply that ends a pull request early: no more messages
# (404), or the request is over (408, which servers before 2.11 send after a
# partly filled batch).
_BATCH_ENDED = frozenset({"404", "408"})


def jetstream(state: ConnectionState) -> Any:
    """The client's JetStream context, made once per client (a context per
    call costs tens of µs in nats-py); a new client empties the buckets."""
    nc = state.client()
    if state.js is None or state.js[0] is not nc:
        state.js = (nc, nc.jetstream(timeout=JS_BACKSTOP))
        state.buckets.clear()
    return state.js[1]


async def bucket(state: ConnectionState, name: str, code: ReasonCode) -> Any:
    """The bucket's nats-py handle, opened if this client has none yet,
    within the operation's time and with its timeout `code`."""
    kv = state.buckets.get(name)
    if kv is None:
        if not name:
            raise error_for(ReasonCode.KV_BUCKET_NOT_FOUND, "no bucket named (a KvBucket form asked of the connection)")
        kv = await call(state, code, jetstream(state).key_value, name)
        state.buckets[name] = kv
    return kv


async def _buckets(state: ConnectionState, batch: list[Any], code: ReasonCode) -> dict[str, Any]:
    """The run's buckets, each opened once: its nats-py handle, or the
    coded error that is the answer of every message for it."""
    kvs: dict[str, Any] = {}
    for name in {m.bucket for m in batch}:
        try:
            kvs[name] = await bucket(state, name, code)
        except ExoarmurError as exc:
            kvs[name] = exc
    return kvs


async def kv_open(state: ConnectionState, m: KvOpen) -> None:
    js = jetstream(state)
    code = ReasonCode.TIMEOUT_KV_CREATE
    try:
        kv = await call(state, code, js.key_value, m.bucket)
    except ExoarmurError as exc:
        if exc.code is not ReasonCode.KV_BUCKET_NOT_FOUND:
            raise
        config = KeyValueConfig(bucket=m.bucket, replicas=m.replicas, history=m.history)
        kv = await call(state, code, js.create_key_value, config)
    state.buckets[m.bucket] = kv


# A KvBucket's operation as the one request it is: its timeout code, its request.
_AT_ONCE: dict[type, tuple[ReasonCode, Callable[[Any, Any], OneRequest | tuple[Any, ...]]]] = {
    Get: (ReasonCode.TIMEOUT_KV_GET, lambda kv, m: leader_get(m)),
    Put: (ReasonCode.TIMEOUT_KV_PUT, put_request),
    Update: (ReasonCode.TIMEOUT_KV_PUT, update_request),
    Delete: (ReasonCode.TIMEOUT_KV_DELETE, delete_request),
}


def kv_at_once(state: ConnectionState, m: Get | Put | Update | Delete) -> Deferred:
    """`m` started now, answered when its reply comes (requests.start), if
    its bucket is open on this client and its key is one a plain request
    takes; otherwise from a task of this instance's that opens the bucket
    first, in the envelope's time and with its operation's code (`_opened`)."""
    code, request = _AT_ONCE[type(m)]
    jetstream(state)  # a new client's buckets are opened anew
    kv = state.buckets.get(m.bucket)
    one = request(kv, m) if kv is not None else None
    if isinstance(one, OneRequest):
        return start(state, code, one)
    later = state.context.defer()
    state.context.start_task(_opened, state, m, later)
    return later


async def _opened(state: ConnectionState, m: Get | Put | Update | Delete, later: Deferred) -> None:
    """`m`'s bucket opened, then `m` made as kv_at_once would (nats-py's own
    call for a key a plain request does not take): `later` answered with
    its value or its coded error. A bug raises: this instance crashes, and
    the asker hears so."""
    code, request = _AT_ONCE[type(m)]
    with state.context.on_behalf_of(later.envelope):  # its deadline bounds the calls
        try:
            one = request(await bucket(state, m.bucket, code), m)
            if isinstance(one, OneRequest):
                start(state, code, one, later)
            else:
                later.reply(await call(state, code, *one))
        except ExoarmurError as exc:
            later.fail(exc)


async def kv_get(state: ConnectionState, batch: list[KvGet]) -> list[Deferred]:
    code = ReasonCode.TIMEOUT_KV_GET
    kvs = await _buckets(state, batch, code)
    calls = [kv if isinstance(kv := kvs[m.bucket], ExoarmurError) else leader_get(m) for m in batch]
    return await call_each(state, code, calls)


async def kv_put(state: ConnectionState, batch: list[KvPut]) -> list[Deferred]:
    code = ReasonCode.TIMEOUT_KV_PUT
    kvs = await _buckets(state, batch, code)
    calls = [kv if isinstance(kv := kvs[m.bucket], ExoarmurError) else put_request(kv, m) for m in batch]
    return await call_each(state, code, calls)


async def kv_create(state: ConnectionState, m: KvCreate) -> int:
    code = ReasonCode.TIMEOUT_KV_PUT
    kv = await bucket(state, m.bucket, code)
    return await call(state, code, kv.create, m.key, m.value)


async def kv_update(state: ConnectionState, batch: list[KvUpdate]) -> list[Deferred]:
    code = ReasonCode.TIMEOUT_KV_PUT
    kvs = await _buckets(state, batch, code)
    calls = [kv if isinstance(kv := kvs[m.bucket], ExoarmurError) else update_request(kv, m) for m in batch]
    return await call_each(state, code, calls)


async def kv_delete(state: ConnectionState, batch: list[KvDelete]) -> list[Deferred]:
    code = ReasonCode.TIMEOUT_KV_DELETE
    kvs = await _buckets(state, batch, code)
    calls = [kv if isinstance(kv := kvs[m.bucket], ExoarmurError) else delete_request(kv, m) for m in batch]
    return await call_each(state, code, calls)


async def kv_keys(state: ConnectionState, m: KvKeys) -> list[str]:
    code = ReasonCode.TIMEOUT_KV_GET
    await bucket(state, m.bucket, code)  # KV_BUCKET_NOT_FOUND for a bucket that is not there
    # A key written while the consumer reads is delivered twice (its last
    # message, then the new one): each key once.
    return sorted(set(await call(state, code, _matching_keys, state.client(), jetstream(state), m.bucket, m.filter)))


async def _matching_keys(nc: Any, js: Any, bucket_name: str, pattern: str) -> list[str]:
    """The live keys matching `pattern`: an ephemeral pull consumer on the
    bucket's stream, filtered by the server to the pattern's subjects, last
    message per subject, headers only, pulled in batches until the server
    says it has no more (not by the deliveries' pending count: while keys
    are written during the listing, a last-per-subject consumer's count
    reaches 0 before its last key, and a key was missed; a key written
    meanwhile may come twice, so the caller keeps each once). Keys whose
    last message is a delete or purge marker are left out.

    Not nats-py's `keys(filters)`: it reads every key and keeps those that
    CONTAIN a filter as a substring ("acme.*" matches nothing), and its watch
    may signal "no more keys" before the first delivery is handled (consumer
    info answered while the deliveries wait in the subscription's queue), so
    it can answer none when there are many."""
    stream, prefix = f"KV_{bucket_name}", f"$KV.{bucket_name}."
    name = f"keys-{secrets.token_hex(8)}"
    config = ConsumerConfig(
        name=name,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        filter_subject=prefix + pattern,
        ack_policy=AckPolicy.NONE,
        headers_only=True,
        inactive_threshold=FETCH_CONSUMER_IDLE,
        mem_storage=True,
        num_replicas=1,
    )
    await js.add_consumer(stream, config)
    keys: list[str] = []
    try:
        while True:
            next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
            found = await _pull(nc, next_subject, FETCH_LIMIT, convert=_live_key, until_status=True)
            keys += [key[len(prefix) :] for key in found if key is not None]
            if len(found) < FETCH_LIMIT:
                return keys
    finally:
        if nc.is_connected:  # else the server ends it (FETCH_CONSUMER_IDLE)
            await nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{name}", b"")


def _live_key(msg: Any) -> str | None:
    """A delivery's subject, or None if it marks its key deleted or purged."""
    operation = (msg.headers or {}).get("KV-Operation")
    return None if operation in ("DEL", "PURGE") else msg.subject


async def stream_ensure(state: ConnectionState, m: StreamEnsure) -> None:
    js = jetstream(state)
    code = ReasonCode.TIMEOUT_NATS_STREAM_CREATE
    if await call(state, code, js.stream_info, m.name, absent_on=(NotFoundError,)) is not None:
        return  # it exists: left as it is
    config = StreamConfig(
        name=m.name, subjects=list(m.subjects), num_replicas=m.replicas, duplicate_window=m.duplicate_window
    )
    await call(state, code, js.add_stream, config)


def js_publish(state: ConnectionState, m: JsPublish) -> Deferred:
    """nats-py's `JetStreamContext.publish` as the one request it is."""
    return start(state, ReasonCode.TIMEOUT_NATS_PUBLISH, js_publish_request(m))


async def stream_read(
    state: ConnectionState, stream: str, *, subject: str | None = None, seq: int | None = None
) -> StreamMessage | None:
    """The last message on `subject` (or the one at `seq`), read from the
    stream leader; None if there is none."""
    js = jetstream(state)
    msg = await call(
        state,
        ReasonCode.TIMEOUT_NATS_REQUEST,
        js.get_msg,
        stream,
        seq=seq,
        subject=subject,
        direct=False,
        absent_on=(NotFoundError,),
    )
    return None if msg is None else StreamMessage(msg.seq, msg.data or b"", msg.subject or "")


async def stream_fetch(state: ConnectionState, m: StreamFetch) -> list[StreamMessage]:
    """Up to `m.limit` stored messages from `m.start_seq` on, in stream order
    (deleted ones skipped), read in one batch: an ephemeral pull consumer
    (acks none, kept in memory) from that sequence, one pull request for the
    whole batch with `no_wait`, the messages handed over from nats-py's read
    loop as they arrive, then the consumer deleted.

    Why this way: a direct get per message is one request per record (and any
    replica may answer one, stale); a batched direct get needs the stream made
    with `allow_direct`. nats-py's pull subscription `fetch` raises a timeout
    instead of answering an empty batch at the stream's end, waits out its
    whole timeout when the stream holds nothing past the start, and queues
    every message for a task of its own; its ordered consumer is push-based,
    with flow control and heartbeat tasks that a close leaves running
    (docs/nats.md). Here the batch ends at `limit` messages, at the message
    whose metadata says none are pending, or at the server's 404/408 status,
    whichever comes first, all within the envelope's deadline. On a cluster
    the consumer reads one replica's copy, which can trail the leader by what
    is being replicated at that moment."""
    return await call(state, ReasonCode.TIMEOUT_NATS_REQUEST, _fetch, state.client(), jetstream(state), m)


async def _fetch(nc: Any, js: Any, m: StreamFetch) -> list[StreamMessage]:
    """On the asyncio side: the consumer made, the batch pulled, the consumer
    deleted (fire and forget; FETCH_CONSUMER_IDLE ends it if that is lost)."""
    name = f"fetch-{secrets.token_hex(8)}"
    config = ConsumerConfig(
        name=name,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=m.start_seq,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=FETCH_CONSUMER_IDLE,
        mem_storage=True,
        num_replicas=1,
    )
    await js.add_consumer(m.stream, config)
    try:
        return await _pull(nc, f"$JS.API.CONSUMER.MSG.NEXT.{m.stream}.{name}", m.limit)
    finally:
        if nc.is_connected:  # else the server ends it (FETCH_CONSUMER_IDLE)
            await nc.publish(f"$JS.API.CONSUMER.DELETE.{m.stream}.{name}", b"")


async def _pull(
    nc: Any,
    next_subject: str,
    limit: int,
    *,
    convert: Callable[[Any], Any] | None = None,
    until_status: bool = False,
) -> list[Any]:
    """One pull request of `limit` messages; what it delivers, in order (as
    StreamMessages, or as `convert` makes each). `until_status`: ended by
    the server's "no more" status (or the limit), never by a delivery's
    pending count."""
    batch = PulledBatch(limit, asyncio.get_running_loop().create_future(), convert, until_status=until_status)
    sub = await nc.subscribe(nc.new_inbox(), future=Inline(batch.arrived))
    try:
        await nc.publish(next_subject, orjson.dumps({"batch": limit, "no_wait": True}), reply=sub.subject)
        await batch.ended
    finally:
        if not (nc.is_closed or nc.is_draining):
            await sub.unsubscribe()  # its sink is dropped at once, before any wait
    return batch.found


class PulledBatch:
    """Where a pull request's replies arrive: a subscription's sink that
    nats-py's read loop hands each message as it is read (read_loop.Inline:
    no queue, no task, so no slow-consumer drop). Never raises there:
    whatever goes wrong ends `ended` with it."""

    __slots__ = ("convert", "ended", "found", "limit", "until_status")

    def __init__(
        self,
        limit: int,
        ended: asyncio.Future[None],
        convert: Callable[[Any], Any] | None = None,
        *,
        until_status: bool = False,
    ) -> None:
        self.limit = limit
        self.ended = ended
        self.convert = convert
        self.until_status = until_status
        self.found: list[Any] = []

    def arrived(self, msg: Any) -> None:
        if self.ended.done():
            return
        if not msg.reply:  # a status: the batch ends, or the request failed
            headers = msg.headers or {}
            status = headers.get(Header.STATUS)
            if status in _BATCH_ENDED:
                self.ended.set_result(None)
            elif status == "503":
                self.ended.set_exception(ServiceUnavailableError())
            else:
                code = int(status) if status and status.isdigit() else None
                self.ended.set_exception(APIError(code=code, description=headers.get(Header.DESCRIPTION, "")))
            return
        position = delivered_position(msg.reply)
        if position is None:
            self.ended.set_exception(APIError(description=f"not a consumer's delivery: {msg.reply!r}"))
            return
        seq, pending = position
        self.found.append(StreamMessage(seq, msg.data, msg.subject) if self.convert is None else self.convert(msg))
        if len(self.found) >= self.limit or (pending == 0 and not self.until_status):
            self.ended.set_result(None)


def delivered_position(reply: str) -> tuple[int, int] | None:
    """(stream sequence, messages pending) from a consumer delivery's reply
    subject, as nats-py's `Msg.metadata` reads it: `$JS.ACK.<stream>.
    <consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or
    the form with a domain and an account hash after `$JS.ACK` (and a random
    token at the end); None if it is neither."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    first = 5 if len(tokens) == 9 else 7
    try:
        return int(tokens[first]), int(tokens[first + 3])
    except (ValueError, IndexError):
        return None
