"""StreamFetch: a stream read in bulk, in order, through the NatsConnection
actor: batches with their sequences and subjects, deleted messages skipped,
an empty batch past the end, no consumer left behind."""

from __future__ import annotations

import asyncio

import anyio
import orjson
import pytest
from nats.aio.msg import Msg
from nats.js.api import Header
from nats.js.errors import APIError, ServiceUnavailableError

from exoarmur.actors.nats import FETCH_LIMIT, JsPublish, Request, StreamEnsure, StreamFetch, StreamMessage
from exoarmur.actors.nats.jetstream import PulledBatch, delivered_position
from exoarmur.runtime import ActorSystem, ExoarmurError, InvalidInput, ReasonCode
from tests.integration.support import connect, running_server

pytestmark = pytest.mark.anyio

STREAM = "FETCHED"


async def filled(conn, count: int) -> list[int]:
    """`count` messages on three subjects; their sequences."""
    await conn.ask(StreamEnsure(STREAM, ("fetched.>",)))
    acks = [await conn.ask(JsPublish(f"fetched.s{n % 3}", b"m%d" % n)) for n in range(count)]
    return [ack.seq for ack in acks]


async def api(conn, subject: str, body: dict | None = None) -> dict:
    """A JetStream API call, as a test makes it: a request through the connection."""
    response = await conn.ask(Request(f"$JS.API.{subject}", orjson.dumps(body) if body else b""))
    return orjson.loads(response.data)


async def read_all(conn, start: int, limit: int) -> list[StreamMessage]:
    found = []
    while batch := await conn.ask(StreamFetch(STREAM, start, limit)):
        assert len(batch) <= limit
        found += batch
        start = batch[-1].seq + 1
    return found


async def test_a_stream_is_read_in_order_in_batches_with_sequences_and_subjects(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        seqs = await filled(conn, 25)
        first = await conn.ask(StreamFetch(STREAM, 1, 10))
        assert [m.seq for m in first] == seqs[:10]
        assert [(m.subject, m.data) for m in first[:4]] == [
            ("fetched.s0", b"m0"), ("fetched.s1", b"m1"), ("fetched.s2", b"m2"), ("fetched.s0", b"m3"),
        ]  # fmt: skip
        found = await read_all(conn, 1, 10)
        assert [m.data for m in found] == [b"m%d" % n for n in range(25)]
        assert await conn.ask(StreamFetch(STREAM, 26, 10)) == []
        assert await conn.ask(StreamFetch(STREAM, 1_000, 10)) == []


async def test_deleted_messages_are_skipped_and_the_batch_still_fills(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        await filled(conn, 12)
        for seq in (1, 5, 6, 12):
            assert (await api(conn, f"STREAM.MSG.DELETE.{STREAM}", {"seq": seq}))["success"]
        batch = await conn.ask(StreamFetch(STREAM, 1, 5))
        assert [m.seq for m in batch] == [2, 3, 4, 7, 8]
        assert [m.seq for m in await read_all(conn, 1, 4)] == [2, 3, 4, 7, 8, 9, 10, 11]


async def test_thousands_of_messages_come_in_one_answer_and_no_consumer_is_left(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        await conn.ask(StreamEnsure(STREAM, ("fetched.>",)))
        count = 3_000
        for n in range(count):
            await conn.tell(JsPublish("fetched.bulk", b"%d" % n))
        await eventually_stored(conn, count)
        batch = await conn.ask(StreamFetch(STREAM, 1, FETCH_LIMIT))
        assert [m.seq for m in batch] == list(range(1, count + 1))
        await eventually_no_consumers(conn)


async def eventually_stored(conn, count: int) -> None:
    stored = [0]

    async def check() -> bool:
        stored[0] = (await api(conn, f"STREAM.INFO.{STREAM}"))["state"]["messages"]
        return stored[0] >= count

    await poll(check)
    assert stored[0] == count


async def eventually_no_consumers(conn) -> None:
    async def none_left() -> bool:
        return (await api(conn, f"STREAM.INFO.{STREAM}"))["state"]["consumer_count"] == 0

    await poll(none_left, timeout=3.0)  # well before an idle consumer would end by itself


async def poll(check, *, timeout: float = 10.0) -> None:
    """Until `check()` holds: a bounded poll of the server's state."""
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def test_a_stream_that_does_not_exist_is_a_coded_error(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        with pytest.raises(ExoarmurError) as caught:
            await conn.ask(StreamFetch("NO_SUCH_STREAM", 1, 10))
        assert caught.value.code is ReasonCode.NATS_API_ERROR
        assert "not found" in caught.value.detail


def test_a_fetch_asks_for_one_to_fetch_limit_messages_from_sequence_one_on():
    for bad in ({"start_seq": 0}, {"limit": 0}, {"limit": FETCH_LIMIT + 1}, {"limit": True}):
        with pytest.raises(InvalidInput) as caught:
            StreamFetch(STREAM, **bad)
        assert caught.value.code is ReasonCode.ENVELOPE_INVALID
    assert StreamFetch(STREAM).start_seq == 1
    assert StreamMessage(3, b"x") == StreamMessage(3, b"x", "")  # the positional form of older callers


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.S.fetch-1.1.42.7.1796588832698135816.3",  # without a domain
        "$JS.ACK._.ACCHASH.S.fetch-1.1.42.7.1796588832698135816.3",  # with one
        "$JS.ACK._.ACCHASH.S.fetch-1.1.42.7.1796588832698135816.3.rNd",  # and a token
    ],
)
def test_a_deliverys_position_is_read_as_nats_py_reads_it(reply):
    metadata = Msg(_client=None, reply=reply).metadata
    assert delivered_position(reply) == (metadata.sequence.stream, metadata.num_pending) == (42, 3)


@pytest.mark.parametrize(
    "reply", ["", "_INBOX.x", "$JS.ACK.S.c.1.x.7.1.3", "$JS.ACK.S.c.1.42.7.1", "$JS.ACK.a.b.S.c.1.42.7.1"]
)
def test_a_reply_that_is_not_a_delivery_has_no_position(reply):
    assert delivered_position(reply) is None


def delivery(seq: int, pending: int) -> Msg:
    return Msg(_client=None, subject="fetched.a", reply=f"$JS.ACK.S.c.1.{seq}.{seq}.0.{pending}", data=b"%d" % seq)


def status(code: str, description: str) -> Msg:
    return Msg(_client=None, subject="_INBOX.x", headers={Header.STATUS: code, Header.DESCRIPTION: description})


@pytest.mark.parametrize(
    ("replies", "found", "error"),
    [
        ([delivery(1, 2), delivery(2, 1), status("404", "No Messages")], [1, 2], None),
        ([delivery(1, 5), delivery(2, 4), delivery(3, 3)], [1, 2], None),  # the limit (2) reached
        ([delivery(7, 0), delivery(8, 0)], [7], None),  # none pending after 7: ended there
        ([delivery(1, 1), status("408", "Request Timeout")], [1], None),
        ([delivery(1, 1), status("409", "Consumer Deleted")], [1], APIError),
        ([status("503", "")], [], ServiceUnavailableError),
    ],
)
def test_a_pull_ends_at_its_limit_at_nothing_pending_or_at_the_servers_status(replies, found, error):
    loop = asyncio.new_event_loop()
    try:
        batch = PulledBatch(2, loop.create_future())
        for reply in replies:
            batch.arrived(reply)
        assert batch.ended.done() and [m.seq for m in batch.found] == found
        if error is None:
            assert batch.ended.exception() is None
        else:
            assert isinstance(batch.ended.exception(), error)
    finally:
        loop.close()
