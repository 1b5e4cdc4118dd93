"""What the parts of one NatsConnection share, in one object.

The actor (connection.py) makes a `ConnectionState` when an instance starts
and hands it to the functions of each part: lifecycle.py, calls.py,
publishing.py, requests.py, subscriptions.py, jetstream.py, watches.py. No
part keeps state of its own. What outlives the instance (its subscriptions
and watches, if the spec gives a `Subscriptions`) is held in `Subscriptions`.

Threads: on trio, nats-py runs on trio-asyncio's loop, in the same thread, so
a counter moved from an asyncio callback needs no lock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from exoarmur.actors.nats.aio import Bridge
from exoarmur.actors.nats.kv_messages import KvWatch
from exoarmur.actors.nats.messages import NatsStatistics, Serve, Subscribe
from exoarmur.actors.nats.options import ConnectionOptions
from exoarmur.runtime import ActorContext, ActorRef, AuditEvent, ReasonCode, error_for

__all__ = ["ConnectionState", "Subscriptions", "audit", "audited_drop", "mailbox_drop", "statistics"]


@attrs.define(eq=False)
class SubscriptionRecord:
    """A Subscribe or Serve, by our own id (kept across clients)."""

    sid: int
    spec: Subscribe | Serve
    target: ActorRef | None  # Subscribe's; None for Serve
    handle: Any = None  # nats-py's Subscription on the current client
    dropped: int = 0  # deliveries the target's mailbox refused


@attrs.define(eq=False)
class WatchRecord:
    """A KvWatch, by our own id; resumed after `last_revision`."""

    wid: int
    spec: KvWatch
    target: ActorRef
    last_revision: int = 0  # the last one delivered (or refused): resume after it
    handle: Any = None  # nats-py's ordered consumer on the current client
    dropped: int = 0


class Subscriptions:
    """The subscriptions and KV watches of one connection, by our own ids.
    Give one instance in the connection's spec kwargs and it outlives the
    connection's restarts: a fresh instance subscribes every one again on its
    new client, and deliveries keep their ids. (Without it each instance
    starts empty.)"""

    def __init__(self) -> None:
        self.records: dict[int, SubscriptionRecord] = {}
        self.watches: dict[int, WatchRecord] = {}
        self.next_id = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def add(self, spec: Subscribe | Serve, target: ActorRef | None) -> SubscriptionRecord:
        """A record with a fresh id, not yet kept (the caller keeps it once subscribed)."""
        return SubscriptionRecord(self.new_id(), spec, target)


@attrs.define(eq=False)
class ConnectionState:
    """One connection instance's state, shared by its parts."""

    # The instance's context: its clock, the deadline of the envelope being
    # handled, its system (timeouts, audit, lookup), its breaker reports.
    context: ActorContext
    options: ConnectionOptions
    # To the asyncio side, where nats-py runs (trio-asyncio's loop on trio).
    bridge: Bridge
    subscriptions: Subscriptions
    # Requests and JetStream publishes started and not yet ended, at most:
    # one more is refused at once (OVERLOAD_SHED).
    requests_limit: int
    # The client this instance owns: None before it is connected, and from
    # the moment it is being closed (so nothing new starts on it).
    nc: Any = None
    # The instance is gone (crashed or stopped): its client's callbacks do
    # nothing (`current`), so a fresh instance never hears an old client.
    ended: bool = False
    # (client, its JetStream context), made once per client; `buckets` holds
    # nats-py's KeyValue handles on that context, emptied with a new client
    # (and empty in a fresh instance: the first use of a bucket reopens it).
    js: tuple[Any, Any] | None = None
    buckets: dict[str, Any] = attrs.field(factory=dict)
    # Requests made by nats-py's own request task (while not connected):
    # reaped at close.
    request_tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)
    # Counters: they only grow, but `requests_in_flight`, counted up on the
    # actor's side and down on the asyncio side (one thread: see above).
    reconnects: int = 0
    disconnects: int = 0
    aborted_sockets: int = 0
    permission_errors: int = 0
    slow_consumer_drops: int = 0  # nats-py's own (pending limits)
    mailbox_drops: int = 0  # a target's mailbox refused a delivery
    replies_lost: int = 0  # served requests whose reply could not be sent
    requests_in_flight: int = 0
    down_since: float | None = None  # when the connection was lost, until it is back
    down_logged: float = 0.0  # when that was last logged

    def current(self) -> bool:
        """This instance still owns a live client: its callbacks may act."""
        return not self.ended and self.nc is not None

    def client(self) -> Any:
        """The client, or NATS_DISCONNECTED if there is none to use."""
        nc = self.nc
        if nc is None or nc.is_closed:
            raise error_for(ReasonCode.NATS_DISCONNECTED, "no client")
        return nc


def audit(state: ConnectionState, code: ReasonCode, detail: str) -> None:
    context = state.context
    context.system.audit.emit(AuditEvent(kind="nats", code=code, at=context.now(), path=context.path, detail=detail))


def audited_drop(count: int) -> bool:
    """Drops are counted one by one and audited at the 1st, 2nd, 4th, 8th...:
    a flood is visible in the log without one event per lost message."""
    return count & (count - 1) == 0


def mailbox_drop(state: ConnectionState, record: SubscriptionRecord | WatchRecord) -> bool:
    """A delivery the target's mailbox refused, counted; True if this one is
    to be audited (`audited_drop`)."""
    record.dropped += 1
    state.mailbox_drops += 1
    return audited_drop(record.dropped)


def statistics(state: ConnectionState) -> NatsStatistics:
    return NatsStatistics(
        connected=state.nc is not None and state.nc.is_connected,
        reconnects=state.reconnects,
        disconnects=state.disconnects,
        aborted_sockets=state.aborted_sockets,
        permission_errors=state.permission_errors,
        slow_consumer_drops=state.slow_consumer_drops,
        mailbox_drops=state.mailbox_drops,
        subscriptions=len(state.subscriptions.records),
        replies_lost=state.replies_lost,
        requests_in_flight=state.requests_in_flight,
    )
