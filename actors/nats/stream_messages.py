"""What the connection takes and answers on JetStream streams (the AuditStream
actor, actors/nats/audit_stream.py, sends these)."""

from __future__ import annotations

import attrs

from exoarmur.runtime import TimeoutCategory, message

__all__ = ["JsPublish", "PubAck", "StreamEnsure", "StreamLast", "StreamMessage", "StreamRead"]


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


@attrs.frozen
class StreamMessage:
    seq: int
    data: bytes
