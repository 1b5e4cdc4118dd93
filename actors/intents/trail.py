"""An intent's audit trail: one record per write of its KV record.

Each write of an intent's record (a transition, or a takeover by another
owner) is followed by one audit append of

    {"kind": "intent", "revision": <the KV revision written>, "record": <the record as stored>}

to its tenant's chain (`chain_of`), with the message id `message_id`: the
intent and the revision. The intent actor appends the revision it finds
before it writes the next one, whatever happened before (a crash between a
write and its append included), so the trail is never more than the latest
revision behind, and never for good. An append of what was already stored
is stored once when the stream can tell (a lone record's message id, within
its duplicate window) or the chain remembers the id (actors/nats/audit_stream.py,
StoredIds: the last 10 s); otherwise (in a batch record after a crash, a
lost ack or a takeover) the same event twice, which replay counts as one.

Replay (actors/intents/replay.py) rebuilds each intent from these records
alone: every record's state must follow from the one before by the
transition table, revisions must grow, and the last must equal KV.
"""

from __future__ import annotations

from typing import Any

from exoarmur.actors.intents.record import IntentRecord

__all__ = ["CHAIN_PREFIX", "KIND", "chain_of", "message_id", "transition_event"]

KIND = "intent"
CHAIN_PREFIX = "intents-"


def chain_of(tenant: str) -> str:
    """The audit chain of a tenant's intents (one chain per tenant: chains
    append in parallel, each one at a time)."""
    return f"{CHAIN_PREFIX}{tenant}"


def transition_event(record: IntentRecord) -> dict[str, Any]:
    """The audit event for `record` as just stored (its revision set)."""
    return {"kind": KIND, "revision": record.revision, "record": record.to_dict()}


def message_id(record: IntentRecord) -> str:
    return f"intent.{record.tenant}.{record.id}.{record.revision}"
