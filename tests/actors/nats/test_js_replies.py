"""JetStream requests made and replies read without nats-py's coroutines (a
run's KV gets, puts, updates and deletes, JsPublish) are what nats-py's own
calls make and give, errors included."""

from __future__ import annotations

import asyncio
import base64
import types

import nats.js.errors
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.manager import JetStreamManager

from exoarmur.actors.nats.errors import coded
from exoarmur.actors.nats.js_replies import acked_sequence, delete_request, entry, pub_ack, update_request
from exoarmur.actors.nats.kv_messages import KvDelete, KvEntry, KvUpdate
from exoarmur.runtime import ReasonCode

HEADER_VALUES = st.sampled_from(["DEL", "PURGE", "del", " DEL", "DEL ", "\tPURGE", "PUT", "DELETE", ""])
HEADER_NAMES = st.sampled_from([b"KV-Operation", b"kv-operation", b"KV-Operation ", b" KV-Operation"])


class ReplyingClient:
    """Answers every request with one reply, as a server would."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def request(self, subject: str, payload: bytes, timeout: float = 0, headers=None):
        return types.SimpleNamespace(data=self.data, headers=None, subject=subject)


def by_nats_py(key: str, data: bytes) -> KvEntry | None | type[Exception]:
    """What nats-py's leader read makes of the reply, as KvGet answers it."""
    manager = JetStreamManager(ReplyingClient(data))
    try:
        msg = asyncio.run(manager.get_msg("KV_b", subject=f"$KV.b.{key}", direct=False))
    except nats.js.errors.NotFoundError:
        return None
    except nats.js.errors.APIError as exc:
        return type(exc)
    if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    return KvEntry(key, msg.data or b"", msg.seq)


def by_us(key: str, data: bytes) -> KvEntry | None | type[Exception]:
    try:
        return entry(key, types.SimpleNamespace(data=data, headers=None))
    except nats.js.errors.APIError as exc:
        return type(exc)


@given(
    value=st.binary(max_size=8),
    operation=st.none() | HEADER_VALUES,
    name=HEADER_NAMES,
    other=st.booleans(),
    error=st.sampled_from([None, 404, 503, 500, 400, 409]),
)
def test_a_leader_read_reply_is_read_as_nats_py_reads_it(value, operation, name, other, error):
    if error is not None:
        reply = {"error": {"code": error, "err_code": 10037, "description": "no message found"}}
    else:
        lines = [b"NATS/1.0"]
        if other:
            lines.append(b"Nats-Msg-Id: x")
        if operation is not None:
            lines.append(name + b": " + operation.encode())
        header = b"\r\n".join(lines) + b"\r\n\r\n"
        stored = {"subject": "$KV.b.k", "seq": 7, "time": "2026-11-23T00:00:00Z"}
        if len(lines) > 1:
            stored["hdrs"] = base64.b64encode(header).decode()
        if value:
            stored["data"] = base64.b64encode(value).decode()
        reply = {"type": "io.nats.jetstream.api.v1.stream_msg_get_response", "message": stored}
    data = orjson.dumps(reply)
    assert by_us("k", data) == by_nats_py("k", data)


@pytest.mark.parametrize("duplicate", [None, False, True])
def test_a_publish_ack_is_read_as_nats_py_reads_it(duplicate):
    reply = {"stream": "AUDIT", "seq": 12}
    if duplicate is not None:
        reply["duplicate"] = duplicate
    msg = types.SimpleNamespace(data=orjson.dumps(reply), headers=None)
    ack = nats.js.api.PubAck.from_response(reply)
    assert (pub_ack(msg).stream, pub_ack(msg).seq, pub_ack(msg).duplicate) == (ack.stream, ack.seq, bool(ack.duplicate))
    assert acked_sequence(msg) == ack.seq


def test_an_error_ack_raises_nats_py_s_error():
    msg = types.SimpleNamespace(data=orjson.dumps({"error": {"code": 400, "err_code": 10071, "description": "wrong last sequence: 3"}}), headers=None)
    with pytest.raises(nats.js.errors.BadRequestError):
        pub_ack(msg)


class RecordingClient:
    """Keeps the request nats-py makes and answers it with a stream ack."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict | None]] = []

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 0, headers=None, **_):
        self.sent.append((subject, payload, headers))
        return types.SimpleNamespace(data=orjson.dumps({"stream": "KV_b", "seq": 9}), headers=None, subject=subject)


def sent_by_nats_py(operation: str, key: str, *args) -> tuple[str, bytes, dict | None]:
    client = RecordingClient()
    kv = nats.js.kv.KeyValue("b", "KV_b", "$KV.b.", nats.js.JetStreamContext(client), False)
    asyncio.run(getattr(kv, operation)(key, *args))
    (sent,) = client.sent
    return sent


@given(key=st.sampled_from(["k", "acme.i-1", "a_b-c=d/e"]), value=st.binary(max_size=8), last=st.integers(0, 2**40))
def test_an_update_is_the_request_nats_py_makes(key, value, last):
    kv = nats.js.kv.KeyValue("b", "KV_b", "$KV.b.", None, False)
    ours = update_request(kv, KvUpdate("b", key, value, last))
    assert (ours.subject, ours.data, ours.headers) == sent_by_nats_py("update", key, value, last)


@given(key=st.sampled_from(["k", "o.acme.i-1"]), last=st.none() | st.integers(0, 2**40))
def test_a_delete_is_the_request_nats_py_makes(key, last):
    kv = nats.js.kv.KeyValue("b", "KV_b", "$KV.b.", None, False)
    ours = delete_request(kv, KvDelete("b", key, last=last))
    assert (ours.subject, ours.data, ours.headers) == sent_by_nats_py("delete", key, last)


def test_a_lost_compare_and_set_is_a_conflict_either_way():
    for err_code in (10071, 10164):
        reply = {"error": {"code": 400, "err_code": err_code, "description": "wrong last sequence: 3"}}
        with pytest.raises(nats.js.errors.APIError) as caught:
            acked_sequence(types.SimpleNamespace(data=orjson.dumps(reply), headers=None))
        assert coded(caught.value, timeout=ReasonCode.TIMEOUT_KV_PUT).code is ReasonCode.KV_CONFLICT
