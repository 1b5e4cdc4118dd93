"""JetStream calls as the one request each is, and their replies read as
nats-py's own coroutines read them (errors included), so a run of KV gets,
puts and JetStream publishes needs no coroutine of nats-py's per call
(starting.py). Pure functions: tests/actors/nats/test_js_replies.py holds
each against nats-py's own reading.
"""

from __future__ import annotations

import base64
from functools import partial
from typing import Any

import orjson
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError
from nats.js.kv import _is_key_valid

from exoarmur.actors.nats.kv_messages import KvDelete, KvEntry, KvGet, KvPut, KvUpdate
from exoarmur.actors.nats.starting import OneRequest
from exoarmur.actors.nats.stream_messages import JsPublish, PubAck

__all__ = [
    "acked_sequence",
    "api_reply",
    "delete_request",
    "entry",
    "js_publish_request",
    "leader_get",
    "pub_ack",
    "put_request",
    "update_request",
]

KV_OPERATION = "KV-Operation"  # the header naming a KV message's operation (PUT, DEL, PURGE)
_KV_OPERATION = KV_OPERATION.encode()
_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"  # a publish refused unless the subject's last is this


def put_request(kv: Any, m: KvPut) -> OneRequest | tuple[Any, ...]:
    """nats-py's `KeyValue.put(key, value)`: a publish to the key's subject,
    answered with the stream's ack; an invalid key goes to nats-py's own
    put, for its own error."""
    if not _is_key_valid(m.key):
        return (kv.put, m.key, m.value)
    return OneRequest(f"{kv._pre}{m.key}", m.value, acked_sequence, NoStreamResponseError)


def update_request(kv: Any, m: KvUpdate) -> OneRequest | tuple[Any, ...]:
    """nats-py's `KeyValue.update(key, value, last)`: a publish expecting the
    key's last revision, answered with the stream's ack or its wrong-last-
    sequence error (KV_CONFLICT, errors.py)."""
    if not _is_key_valid(m.key):
        return (kv.update, m.key, m.value, m.last)
    headers = {_EXPECTED_LAST: str(m.last or 0)}
    return OneRequest(f"{kv._pre}{m.key}", m.value, acked_sequence, NoStreamResponseError, headers)


def delete_request(kv: Any, m: KvDelete) -> OneRequest | tuple[Any, ...]:
    """nats-py's `KeyValue.delete(key, last)`: a delete marker published,
    with the expected last revision if `last` is given (and above 0); or,
    to `erase` it, the stream's `purge(subject=...)` of the key's subject."""
    if not _is_key_valid(m.key):
        return (kv.delete, m.key, m.last)
    if m.erase:  # the subject purged: no marker left
        purge = orjson.dumps({"filter": f"{kv._pre}{m.key}"})
        return OneRequest(f"$JS.API.STREAM.PURGE.{kv._stream}", purge, _deleted, ServiceUnavailableError)
    headers = {KV_OPERATION: "DEL"}
    if m.last:
        headers[_EXPECTED_LAST] = str(m.last)
    return OneRequest(f"{kv._pre}{m.key}", b"", _deleted, NoStreamResponseError, headers)


def _deleted(msg: Any) -> None:
    api_reply(msg)


def leader_get(m: KvGet) -> OneRequest:
    """nats-py's `get_msg(stream, subject=..., direct=False)`: the key's last
    message, from the stream leader."""
    request = orjson.dumps({"last_by_subj": f"$KV.{m.bucket}.{m.key}"})
    return OneRequest(f"$JS.API.STREAM.MSG.GET.KV_{m.bucket}", request, partial(entry, m.key), ServiceUnavailableError)


def js_publish_request(m: JsPublish) -> OneRequest:
    """nats-py's `JetStreamContext.publish`, answered with a PubAck."""
    headers = {}
    if m.msg_id is not None:
        headers["Nats-Msg-Id"] = m.msg_id
    if m.expected_last_subject_seq is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(m.expected_last_subject_seq)
    return OneRequest(m.subject, m.data, pub_ack, NoStreamResponseError, headers or None)


def acked_sequence(msg: Any) -> int:
    return api_reply(msg)["seq"]


def pub_ack(msg: Any) -> PubAck:
    reply = api_reply(msg)
    return PubAck(reply["stream"], reply["seq"], bool(reply.get("duplicate")))


def entry(key: str, msg: Any) -> KvEntry | None:
    """The key's entry in a stream message reply; None if absent or deleted."""
    try:
        stored = api_reply(msg)["message"]
    except NotFoundError:
        return None
    if stored.get("hdrs") and _operation(base64.b64decode(stored["hdrs"])) in (b"DEL", b"PURGE"):
        return None
    data = stored.get("data")
    return KvEntry(key, base64.b64decode(data) if data else b"", stored["seq"])


def api_reply(msg: Any) -> dict[str, Any]:
    """A JetStream API reply, or the APIError (a subclass per status) it carries."""
    reply = orjson.loads(msg.data)
    if "error" in reply:
        raise APIError.from_error(reply["error"])
    return reply


def _operation(header: bytes) -> bytes | None:
    """The KV-Operation header's value in a raw header block, if any, as
    nats-py reads it (the name exactly, in this case; the value without its
    leading blanks)."""
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name == _KV_OPERATION:
            return value.lstrip(b" \t")
    return None
