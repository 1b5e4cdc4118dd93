"""What the connection takes and answers on JetStream streams (the AuditStream
actor, actors/nats/audit_stream.py, sends most of these; replay reads a whole
stream with StreamFetch)."""

from __future__ import annotations

import attrs

from exoarmur.runtime import InvalidInput, ReasonCode, TimeoutCategory, message

__all__ = [
    "FETCH_LIMIT",
    "JsPublish",
    "PubAck",
    "StreamEnsure",
    "StreamFetch",
    "StreamLast",
    "StreamMessage",
    "StreamRead",
]


@message("exoarmur.js.stream", timeout=TimeoutCategory.NATS_STREAM_CREATE)
class StreamEnsure:
    """Create the stream if absent; an existing one is left as it is."""

    name: str
    subjects: tuple[str, ...]
    replicas: int = 1
    duplicate_window: float = 120.0


@message("exoarmur.js.publish", timeout=TimeoutCategory.NATS_PUBLISH)
class JsPublish:
    """Publish and wait for the stream's ack. With `msg_id`, a second publish
    of the same id within the stream's duplicate window is acked as a duplicate
    and stored once."""

    subject: str
    data: bytes
    msg_id: str | None = None
    # Stored only if the subject's last message still has this sequence (0:
    # none yet); KV_CONFLICT otherwise. What keeps a writer's chain from forking.
    expected_last_subject_seq: int | None = None


@attrs.frozen
class PubAck:
    stream: str
    seq: int
    duplicate: bool


@message("exoarmur.js.last", timeout=TimeoutCategory.NATS_REQUEST)
class StreamLast:
    """The stream's last message on `subject` (a leader read), or None."""

    stream: str
    subject: str


@message("exoarmur.js.read", timeout=TimeoutCategory.NATS_REQUEST)
class StreamRead:
    """The stream's message at `seq` (a leader read), or None."""

    stream: str
    seq: int


# The most messages one StreamFetch answers: a reply stays a few MiB, read
# well within one NATS_REQUEST deadline.
FETCH_LIMIT = 10_000


def _check_fetch(_fetch: object, attribute: attrs.Attribute, value: object) -> None:
    """start_seq >= 1; 1 <= limit <= FETCH_LIMIT (ENVELOPE_INVALID otherwise)."""
    top = FETCH_LIMIT if attribute.name == "limit" else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (top is not None and value > top):
        bounds = f"1 to {top}" if top is not None else ">= 1"
        what = f"StreamFetch.{attribute.name} must be an int {bounds}, got {value!r}"
        raise InvalidInput(ReasonCode.ENVELOPE_INVALID, what)


@message("exoarmur.js.fetch", timeout=TimeoutCategory.NATS_REQUEST)
class StreamFetch:
    """The stream's stored messages from sequence `start_seq` on, in order, at
    most `limit` (1 to FETCH_LIMIT): consecutive in the stream, the sequences
    of deleted messages skipped; an empty list past the stream's end. Read
    from the stream's leader, in one batch (jetstream.stream_fetch)."""

    stream: str
    start_seq: int = attrs.field(default=1, validator=_check_fetch)
    limit: int = attrs.field(default=1_000, validator=_check_fetch)


@attrs.frozen
class StreamMessage:
    seq: int
    data: bytes
    subject: str = ""  # the subject it was published on ("" where not read)
