"""Subscriptions: deliveries to an actor's mailbox, and served subjects.

A Subscribe delivers each message to its target actor as a Delivery tell
(`tell_nowait`): a full mailbox drops it, counted (NATS_SLOW_CONSUMER audited
once per burst) and, for a request, answered with the Subscribe's `refusal`, and nats-py's own pending limits, set per subscription,
bound what waits before that. A Serve hands each request to its responder
from nats-py's read loop as it is read (read_loop.py), and the responder's
reply goes straight into nats-py's buffer (publishing.respond). Records are
kept by our own ids in `Subscriptions` (state.py), so a restarted
connection subscribes each one again (`attach`) and deliveries keep their ids.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import nats

from exoarmur.actors.nats.aio import Bridge
from exoarmur.actors.nats.calls import call
from exoarmur.actors.nats.messages import Delivery, Serve, Subscribe
from exoarmur.actors.nats.publishing import flush, respond
from exoarmur.actors.nats.read_loop import Inline
from exoarmur.actors.nats.state import ConnectionState, SubscriptionRecord, audit, mailbox_drop
from exoarmur.runtime import ActorUnavailable, ExoarmurError, ReasonCode
from exoarmur.runtime.margins import ANSWER

__all__ = ["attach", "serve", "subscribe", "unsubscribe"]

CODE = ReasonCode.TIMEOUT_NATS_SUBSCRIBE


async def subscribe(state: ConnectionState, m: Subscribe) -> int:
    """The subscription's id, once the server knows of it (a flush)."""
    subscriptions = state.subscriptions
    record = subscriptions.add(m, state.context.system.lookup(m.target))
    await attach(state, record)
    try:
        await flush(state, CODE)
    except ExoarmurError:
        # Not known to the server in time: the asker never learns the id,
        # so nothing may go on delivering to it.
        with anyio.CancelScope(shield=True), anyio.move_on_after(ANSWER):
            await state.bridge.call(_unsubscribe_quietly, record.handle)
        raise
    subscriptions.records[record.sid] = record
    return record.sid


async def serve(state: ConnectionState, m: Serve) -> int:
    """The subscription's id; a subject served again keeps its subscription
    and gets the new responder."""
    subscriptions = state.subscriptions
    for record in subscriptions.records.values():
        if isinstance(record.spec, Serve) and record.spec.subject == m.subject:
            record.spec = m
            return record.sid
    record = subscriptions.add(m, None)
    await attach(state, record)
    # Kept before the flush: if that fails, the asker (a gateway) serves
    # again, and finds this record instead of subscribing twice.
    subscriptions.records[record.sid] = record
    await flush(state, CODE)
    return record.sid


async def unsubscribe(state: ConnectionState, sid: int) -> None:
    """Answered once the server has taken the UNSUB (a flush)."""
    record = state.subscriptions.records.pop(sid, None)
    if record is not None and record.handle is not None:
        await call(state, CODE, record.handle.unsubscribe)
        await flush(state, CODE)


async def attach(state: ConnectionState, record: SubscriptionRecord) -> None:
    """Subscribe `record` on the current client."""
    spec = record.spec
    if isinstance(spec, Serve):
        # `_served` never blocks nor raises (a responder's crash is the
        # connection's): it can run in nats-py's read loop.
        sink: dict[str, Any] = {"future": Inline(partial(state.bridge.actor_side, _served, state, record))}
    else:
        deliver = partial(_deliver, state.bridge, partial(_delivered, state, record))
        sink = {"cb": deliver, "pending_msgs_limit": spec.pending_msgs, "pending_bytes_limit": spec.pending_bytes}
    record.handle = await call(state, CODE, state.client().subscribe, spec.subject, queue=spec.queue, **sink)


async def _deliver(bridge: Bridge, handle: Any, msg: Any) -> None:
    """nats-py's callback, on the asyncio side; never blocks."""
    bridge.actor_side(handle, msg)


def _served(state: ConnectionState, record: SubscriptionRecord, msg: Any) -> None:
    """A request on a served subject, to the current responder (a Serve's record)."""
    reply = partial(respond, state, msg.reply) if msg.reply else _unanswered
    headers = dict(msg.headers) if msg.headers else None
    state.context.call_as_self(record.spec.responder, msg.data, headers, reply)


def _delivered(state: ConnectionState, record: SubscriptionRecord, msg: Any) -> None:
    assert record.target is not None
    delivery = Delivery(
        sid=record.sid,
        subject=msg.subject,
        data=msg.data,
        headers=dict(msg.headers) if msg.headers else None,
        reply=msg.reply or "",
    )
    try:
        record.target.tell_nowait(delivery)
    except ExoarmurError as exc:
        spec = record.spec
        assert isinstance(spec, Subscribe)
        answer = spec.refusal if exc.code is ReasonCode.OVERLOAD_MAILBOX_FULL else spec.closing if exc.code in CLOSED else None
        if msg.reply and answer is not None:
            respond(state, msg.reply, answer)  # the requester learns it at once
        if mailbox_drop(state, record):
            audit(state, ReasonCode.NATS_SLOW_CONSUMER, f"{spec.subject} -> {spec.target}: {exc.code}")


CLOSED = ActorUnavailable.codes  # the target stops or has stopped: it takes no more mail


def _unanswered(data: bytes) -> None:
    """The reply of a request that asked for none (a plain publish): nowhere to go."""


async def _unsubscribe_quietly(handle: Any) -> None:
    """On the asyncio side: drop a subscription the server may not know of;
    a client already gone has dropped it too."""
    try:
        await handle.unsubscribe()
    except nats.errors.Error:
        pass
