"""JetStream on the connection: KV buckets and streams.

nats-py's JetStream context is made once per client, its own timeout only a
backstop: each call is cut at its envelope's deadline (calls.py). A bucket's
nats-py handle is opened on first use and kept for that client (`bucket`);
opening is part of the operation that needed it, so it runs in that
operation's time and fails with that operation's code (a put's
TIMEOUT_KV_PUT, not a get's). Reads go to the stream leader, so a read that
decides an outcome sees the latest acknowledged write. KV gets and puts
waiting together are one concurrent run: one crossing to nats-py, each asker
answered on its own (calls.call_each).
"""

from __future__ import annotations

from typing import Any

from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import NoKeysError, NotFoundError

from exoarmur.actors.nats.calls import call, call_each
from exoarmur.actors.nats.js_replies import js_publish_request, leader_get, put_request
from exoarmur.actors.nats.kv_messages import (
    KvCreate,
    KvDelete,
    KvGet,
    KvKeys,
    KvOpen,
    KvPut,
    KvUpdate,
)
from exoarmur.actors.nats.requests import start
from exoarmur.actors.nats.state import ConnectionState
from exoarmur.actors.nats.stream_messages import JsPublish, StreamEnsure, StreamMessage
from exoarmur.runtime import Deferred, ExoarmurError, ReasonCode, error_for
from exoarmur.runtime.margins import JS_BACKSTOP

__all__ = [
    "jetstream",
    "js_publish",
    "kv_create",
    "kv_delete",
    "kv_get",
    "kv_keys",
    "kv_open",
    "kv_put",
    "kv_update",
    "stream_ensure",
    "stream_read",
]


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


async def kv_update(state: ConnectionState, m: KvUpdate) -> int:
    code = ReasonCode.TIMEOUT_KV_PUT
    kv = await bucket(state, m.bucket, code)
    return await call(state, code, kv.update, m.key, m.value, last=m.last)


async def kv_delete(state: ConnectionState, m: KvDelete) -> None:
    code = ReasonCode.TIMEOUT_KV_DELETE
    kv = await bucket(state, m.bucket, code)
    await call(state, code, kv.delete, m.key, last=m.last)


async def kv_keys(state: ConnectionState, m: KvKeys) -> list[str]:
    code = ReasonCode.TIMEOUT_KV_GET
    kv = await bucket(state, m.bucket, code)
    return sorted(await call(state, code, kv.keys, absent_on=(NoKeysError,)) or [])


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
    return None if msg is None else StreamMessage(msg.seq, msg.data or b"")
