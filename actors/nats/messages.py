"""What the connection takes and answers on core NATS: publishes, requests,
subscriptions, served subjects, statistics. (KV: kv_messages.py; streams:
stream_messages.py.)"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from exoarmur.runtime import TimeoutCategory, message

__all__ = [
    "Delivery",
    "Flush",
    "NatsStatistics",
    "Publish",
    "Request",
    "Response",
    "Serve",
    "Statistics",
    "Subscribe",
    "Unsubscribe",
]


@message("exoarmur.nats.publish", timeout=TimeoutCategory.NATS_PUBLISH)
class Publish:
    subject: str
    data: bytes
    headers: dict[str, str] | None = None
    reply: str = ""


@message("exoarmur.nats.flush", timeout=TimeoutCategory.NATS_PUBLISH)
class Flush:
    """Until the server has everything published so far."""


@message("exoarmur.nats.request", timeout=TimeoutCategory.NATS_REQUEST)
class Request:
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


@attrs.frozen
class Response:
    data: bytes
    headers: dict[str, str] | None


@message("exoarmur.nats.subscribe", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Subscribe:
    """Deliver what arrives on `subject` to the actor at `target` as Delivery
    tells; past `pending_msgs` waiting in nats-py, messages are dropped and
    counted. A request the target's mailbox refuses for being full is
    answered with `refusal`, if given, instead of being left to time out;
    one it refuses because the target is stopping or stopped (the process
    shutting down), with `closing`, if given. Answers the subscription id."""

    subject: str
    target: str
    queue: str = ""
    pending_msgs: int = 10_000
    pending_bytes: int = 64 * 1024 * 1024
    refusal: bytes | None = None
    closing: bytes | None = None


@message("exoarmur.nats.serve", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Serve:
    """Answer the requests on `subject` from here, with no mailbox between
    the wire and the actor that does the work (the data plane of a gateway,
    as Erlang's distribution controller delivers straight to the target).
    For each message, `responder(context, data, headers, respond)` runs at
    once as this connection (`context.call_as_self`): it must not block; it
    hands the work on (`ask_then`) and calls `respond(reply_bytes)` once,
    now or from the callback. A subject served again gets the new responder
    (a restarted gateway does not answer twice). Answers the subscription
    id, which Unsubscribe takes. The responder runs from nats-py's read loop
    as each request arrives: no queue of nats-py's stands in between, so
    nothing waits there; the work's own mailbox is the backpressure."""

    subject: str
    responder: Callable[..., None]
    queue: str = ""


@message("exoarmur.nats.unsubscribe", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Unsubscribe:
    """Answered once the server has taken the UNSUB: from then on it routes
    nothing more here (a request finds no responders)."""

    sid: int


@message("exoarmur.nats.delivery", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Delivery:
    sid: int
    subject: str
    data: bytes
    headers: dict[str, str] | None = None
    reply: str = ""


@message("exoarmur.nats.statistics")
class Statistics:
    pass


@attrs.frozen(kw_only=True)
class NatsStatistics:
    connected: bool
    reconnects: int
    disconnects: int
    aborted_sockets: int
    permission_errors: int
    slow_consumer_drops: int  # nats-py's own (pending limits)
    mailbox_drops: int  # the target's mailbox refused a delivery
    subscriptions: int
    replies_lost: int = 0  # served requests whose reply could not be sent
    requests_in_flight: int = 0  # requests and JetStream publishes started, not yet ended
