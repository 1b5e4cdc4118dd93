"""KV watches: every change of a bucket's keys, told to an actor as KvChange.

A watch is an ordered push consumer from the watch's next revision (or the
latest value per key, the first time), so after a reconnect or a restart of
the connection it resumes after the last revision it delivered: nothing
twice, nothing skipped. A change the target's mailbox refuses is dropped and
counted (NATS_SLOW_CONSUMER audited once per burst); the watch moves on.
After a reconnect every watch is made again at once (`resume`): nats-py's
ordered consumers would otherwise stall for about 20 s (docs/nats.md).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from exoarmur.actors.nats.calls import call
from exoarmur.actors.nats.jetstream import jetstream
from exoarmur.actors.nats.js_replies import KV_OPERATION
from exoarmur.actors.nats.kv_messages import KvChange, KvWatch
from exoarmur.actors.nats.state import ConnectionState, WatchRecord, audit, mailbox_drop
from exoarmur.runtime import ExoarmurError, ReasonCode, TimeoutCategory
from exoarmur.runtime.margins import CLIENT_CLOSE

__all__ = ["attach", "resume", "unwatch", "watch"]

CODE = ReasonCode.TIMEOUT_KV_GET


async def watch(state: ConnectionState, m: KvWatch) -> int:
    subscriptions = state.subscriptions
    record = WatchRecord(subscriptions.new_id(), m, state.context.system.lookup(m.target))
    await attach(state, record)
    subscriptions.watches[record.wid] = record
    return record.wid


async def unwatch(state: ConnectionState, wid: int) -> None:
    record = state.subscriptions.watches.pop(wid, None)
    if record is not None and record.handle is not None:
        await call(state, CODE, record.handle.unsubscribe)


async def attach(state: ConnectionState, record: WatchRecord) -> None:
    """The watch's consumer on the current client, from its next revision."""
    spec = record.spec
    if record.last_revision:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=record.last_revision + 1)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
    config.ack_policy = AckPolicy.NONE
    record.handle = await call(
        state,
        CODE,
        jetstream(state).subscribe,
        _subject_prefix(spec) + spec.keys,
        cb=partial(_deliver, state, record),
        stream=f"KV_{spec.bucket}",
        ordered_consumer=True,
        config=config,
    )


async def resume(state: ConnectionState) -> None:
    """After a reconnect: each watch's consumer made again, after its last revision."""
    seconds = state.context.system.timeouts.seconds[TimeoutCategory.KV_GET]
    for record in list(state.subscriptions.watches.values()):
        old, record.handle = record.handle, None
        if old is not None:
            with anyio.move_on_after(CLIENT_CLOSE):
                try:
                    await state.bridge.call(old.unsubscribe)
                except Exception as exc:  # noqa: BLE001 - the old consumer may be gone with the old link
                    audit(state, ReasonCode.NATS_API_ERROR, f"dropping the old consumer of watch {record.spec.bucket}: {exc!r}")
        with anyio.move_on_after(seconds):
            await attach(state, record)


def _subject_prefix(spec: KvWatch) -> str:
    """Where a bucket's keys live: `$KV.<bucket>.<key>`."""
    return f"$KV.{spec.bucket}."


async def _deliver(state: ConnectionState, record: WatchRecord, msg: Any) -> None:
    """nats-py's callback, on the asyncio side; never blocks."""
    state.bridge.actor_side(_changed, state, record, msg)


def _changed(state: ConnectionState, record: WatchRecord, msg: Any) -> None:
    revision = msg.metadata.sequence.stream
    if revision <= record.last_revision:
        return  # seen before a resume
    record.last_revision = revision
    spec = record.spec
    operation = msg.headers.get(KV_OPERATION) if msg.headers else None
    key = msg.subject[len(_subject_prefix(spec)) :]
    change = KvChange(record.wid, key, msg.data or b"", revision, operation in ("DEL", "PURGE"))
    try:
        record.target.tell_nowait(change)
    except ExoarmurError as exc:
        if mailbox_drop(state, record):
            audit(state, ReasonCode.NATS_SLOW_CONSUMER, f"watch {spec.bucket}/{spec.keys} -> {spec.target}: {exc.code}")
