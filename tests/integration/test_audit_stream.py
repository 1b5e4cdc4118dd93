"""AuditStream: a hash chain in JetStream, deduplicated retries, a chain that
continues after a restart, and appends that fail closed with a code."""

from __future__ import annotations

from collections import Counter

import anyio
import attrs
import pytest

from exoarmur.actors.nats.audit_stream import (
    BATCH_BYTES,
    GENESIS,
    Append,
    AuditStream,
    JetStreamAuditSink,
    Record,
    batch_event,
    chain_hash,
    events_of,
    read_records,
    verify_chain,
)
from exoarmur.actors.nats import JsPublish, StreamEnsure
from exoarmur.runtime import ActorSystem, AuditEvent, ExoarmurError, ReasonCode, TimeoutPolicy
from tests.integration.support import connect, eventually, running_server

pytestmark = pytest.mark.anyio


def event(n: int) -> dict:
    return AuditEvent(kind="test", code=ReasonCode.ACTOR_CRASHED, at=float(n), path=f"p/{n}", detail=f"#{n}").to_json()


async def spawn_audit(system: ActorSystem, name: str = "audit"):
    return await system.spawn(AuditStream, name=name, kwargs={"connection": "nats", "chain": "node-a"})


async def test_appends_form_a_verifiable_chain_that_survives_a_restart(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        audit = await spawn_audit(system)
        acks = [await audit.ask(Append(event(i))) for i in range(10)]
        assert [a.position for a in acks] == list(range(10))
        assert not any(a.duplicate for a in acks)
        await system.stop(audit)
        audit = await spawn_audit(system, name="audit-again")  # a fresh instance reads the head back
        ack = await audit.ask(Append(event(10)))
        assert ack.position == 10 and ack.seq == acks[-1].seq + 1
        records = await read_records(conn, "EXOARMUR_AUDIT", range(1, ack.seq + 1))
        assert verify_chain(records) == 11
        assert records[0].prev == GENESIS and records[10].event == event(10)


async def test_appends_queued_together_are_one_record_and_each_is_answered(tmp_path):
    """Told and asked with no wait between them, the appends are all queued
    when the chain takes them: one record holds them, in the order sent."""
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        appends: Counter[str] = Counter()
        kwargs = {"connection": "nats", "chain": "node-a", "appends": appends}
        audit = await system.spawn(AuditStream, name="audit", kwargs=kwargs)
        for i in range(49):
            audit.tell_nowait(Append(event(i)))
        last = await audit.ask(Append(event(49)))
        assert (last.position, last.seq, last.duplicate) == (0, 1, False)
        [record] = await read_records(conn, "EXOARMUR_AUDIT", [1])
        assert record.event == batch_event([event(i) for i in range(50)]) and record.hash == last.hash
        assert events_of(record.event) == [event(i) for i in range(50)]
        alone = await audit.ask(Append(event(50), msg_id="fixed"))  # a lone append keeps its event and id
        again = await audit.ask(Append(event(50), msg_id="fixed"))
        assert (alone.position, alone.duplicate, again.duplicate) == (1, False, True)
        after = await audit.ask(Append(event(51)))
        records = await read_records(conn, "EXOARMUR_AUDIT", range(1, after.seq + 1))
        assert verify_chain(records) == 3 and records[1].event == event(50)
        assert appends == {"stored": 52, "duplicate": 1}  # counted per append, not per record


async def test_an_append_repeated_soon_after_is_stored_once_even_where_a_batch_hides_its_id(tmp_path):
    """A batch record's message id is its hash, so the stream cannot tell a
    repeated event in it: the chain remembers the ids it stored."""
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        appends: Counter[str] = Counter()
        kwargs = {"connection": "nats", "chain": "node-a", "appends": appends}
        audit = await system.spawn(AuditStream, name="audit", kwargs=kwargs)
        first = await audit.ask(Append(event(0), msg_id="i.0"))
        audit.tell_nowait(Append(event(1)))
        audit.tell_nowait(Append(event(0), msg_id="i.0"))  # stored before
        audit.tell_nowait(Append(event(2), msg_id="i.2"))
        last = await audit.ask(Append(event(2), msg_id="i.2"))  # earlier in the same run
        assert (last.position, last.seq, last.duplicate, first.duplicate) == (1, 2, True, False)
        records = await read_records(conn, "EXOARMUR_AUDIT", range(1, last.seq + 1))
        assert verify_chain(records) == 2
        assert [e for r in records for e in events_of(r.event)] == [event(0), event(1), event(2)]
        assert appends == {"stored": 3, "duplicate": 2}


async def test_a_batch_is_cut_at_batch_bytes_and_every_part_is_its_own_record(tmp_path):
    big = [{**event(i), "detail": "x" * (BATCH_BYTES // 2 - 200)} for i in range(5)]  # two fit in a record
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        audit = await spawn_audit(system)
        for one in big[:-1]:
            audit.tell_nowait(Append(one))
        last = await audit.ask(Append(big[-1]))
        records = await read_records(conn, "EXOARMUR_AUDIT", range(1, last.seq + 1))
        assert verify_chain(records) == 3 and last.position == 2
        assert [events_of(r.event) for r in records] == [big[:2], big[2:4], big[4:]]


async def test_two_chains_with_equal_events_share_one_stream_without_colliding(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server)
        one = await system.spawn(AuditStream, name="one", kwargs={"connection": "nats", "chain": "one"})
        two = await system.spawn(AuditStream, name="two", kwargs={"connection": "nats", "chain": "two"})
        a, b = await one.ask(Append(event(0))), await two.ask(Append(event(0)))
        assert (a.duplicate, b.duplicate) == (False, False) and a.seq != b.seq


async def test_a_republished_record_is_acked_as_a_duplicate_and_stored_once(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        await conn.ask(StreamEnsure("DEDUP", ("dedup.>",)))
        record = Record("c", 0, GENESIS, event(0), chain_hash("c", GENESIS, 0, event(0)))
        first = await conn.ask(JsPublish("dedup.a", record.to_bytes(), msg_id=record.hash))
        again = await conn.ask(JsPublish("dedup.a", record.to_bytes(), msg_id=record.hash))
        assert (first.duplicate, again.duplicate) == (False, True)
        assert again.seq == first.seq == 1
        other = await conn.ask(JsPublish("dedup.a", b"other", msg_id="another-id", expected_last_subject_seq=1))
        assert other.seq == 2
        with pytest.raises(ExoarmurError) as caught:  # a late writer that still thinks seq 1 is last
            await conn.ask(JsPublish("dedup.a", b"late", msg_id="late-id", expected_last_subject_seq=1))
        assert caught.value.code is ReasonCode.KV_CONFLICT


def test_a_changed_dropped_or_reordered_record_breaks_the_chain():
    records, prev = [], GENESIS
    for i in range(4):
        record = Record("c", i, prev, event(i), chain_hash("c", prev, i, event(i)))
        records.append(record)
        prev = record.hash
    assert verify_chain(records) == 4
    tampered = Record("c", 1, records[1].prev, {**records[1].event, "detail": "edited"}, records[1].hash)
    renamed = attrs.evolve(records[1], chain="other")
    for broken in (
        [records[0], tampered, *records[2:]],
        [records[0], *records[2:]],
        [records[1], records[0]],
        [records[0], renamed, *records[2:]],
    ):
        with pytest.raises(ExoarmurError) as caught:
            verify_chain(broken)
        assert caught.value.code is ReasonCode.AUDIT_CHAIN_BROKEN


async def test_an_unreachable_stream_fails_closed_within_the_deadline_and_the_chain_resumes(tmp_path):
    async with ActorSystem() as system:
        async with running_server(tmp_path) as server:
            conn = await connect(system, server)
            audit = await spawn_audit(system)
            await audit.ask(Append(event(0)))
            server.kill()
            await server.wait()
            started = anyio.current_time()
            with pytest.raises(ExoarmurError) as caught:
                await audit.ask(Append(event(1)), timeout=0.5)
            assert caught.value.code in {ReasonCode.TIMEOUT_NATS_PUBLISH, ReasonCode.NATS_DISCONNECTED}
            assert anyio.current_time() - started <= 0.55
        async with running_server(tmp_path):
            ack = None
            with anyio.fail_after(10):
                while ack is None:
                    try:
                        ack = await audit.ask(Append(event(2)), timeout=1.0)
                    except ExoarmurError:
                        await anyio.sleep(0.1)
            records = await read_records(conn, "EXOARMUR_AUDIT", range(1, ack.seq + 1))
            assert verify_chain(records) == ack.position + 1  # no fork, whatever landed


async def test_the_sink_hands_kernel_events_to_the_stream_and_counts_what_it_cannot(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        conn = await connect(system, server)
        audit = await spawn_audit(system)
        sink = JetStreamAuditSink(audit)
        sink.emit(AuditEvent(kind="test", code=ReasonCode.ACTOR_CRASHED, at=1.0, path="x", detail="via sink"))
        await eventually(lambda: audit.statistics().processed >= 1)
        last = await audit.ask(Append(event(99)))
        records = await read_records(conn, "EXOARMUR_AUDIT", range(1, last.seq + 1))
        assert records[0].event["detail"] == "via sink"
        await system.stop(audit)
        sink.emit(AuditEvent(kind="test", code=ReasonCode.ACTOR_CRASHED, at=2.0, path="x", detail="lost"))
        assert sink.dropped == 1 and sink.last_drop is ReasonCode.ACTOR_STOPPED


class Tee:
    """The system's sink for the test: every event kept here, and handed on."""

    def __init__(self, sink: JetStreamAuditSink) -> None:
        self.events: list[AuditEvent] = []
        self.sink = sink

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)
        self.sink.emit(event)

    def close(self) -> None:
        pass


async def test_as_the_systems_sink_it_leaves_out_what_the_audit_actor_itself_causes(tmp_path):
    """With the stream gone, a failed append audits failures (the audit
    actor's, and the connection's answers to it) that are not appended in
    turn: no loop. With the audit actor stopped, its refusal of a hand-over
    is not handed over again: no recursion, one drop. (An append may take
    2 s, not the default, and an attempt takes AUDIT_ATTEMPT, 1 s: the first
    attempt fails, and is reported, well inside the append's deadline, not
    in a race with it.)"""
    timeouts = TimeoutPolicy.with_overrides({"nats_publish": 2.0})
    async with running_server(tmp_path) as server, ActorSystem(timeouts=timeouts) as system:
        await connect(system, server)
        audit = await spawn_audit(system)
        sink = JetStreamAuditSink(audit)
        system.audit = tee = Tee(sink)
        with pytest.raises(ExoarmurError):
            system.lookup("missing-1")  # ACTOR_NOT_FOUND, audited: one append
        await eventually(lambda: audit.statistics().processed == 1)
        server.kill()
        await server.wait()
        with pytest.raises(ExoarmurError):
            system.lookup("missing-2")
        await eventually(lambda: any(e.path == "audit" and e.kind == "dependency_failed" for e in tee.events))
        # A hand-over is a tell_nowait made as the event is emitted: any event
        # handed over is counted in `accepted` by now, with no wait.
        # Handed over: the two lookups, and the connection's loss of its server
        # (the connection's own news, not the audit actor's).
        outside = [e for e in tee.events if e.path != "audit" and e.sender != "audit"]
        assert {(e.kind, e.code) for e in outside} >= {("rejected", ReasonCode.ACTOR_NOT_FOUND)}
        assert audit.statistics().accepted == len(outside)
        assert sink.own == len(tee.events) - len(outside) >= 2  # the audit actor's report, the answer to it
        assert sink.dropped == 0
        await system.stop(audit)
        dropped, own, seen = sink.dropped, sink.own, len(tee.events)
        with pytest.raises(ExoarmurError):
            system.lookup("missing-3")
        assert (sink.dropped, sink.last_drop) == (dropped + 1, ReasonCode.ACTOR_STOPPED)
        refusal = tee.events[seen + 1 :]  # after the lookup's own event: the refusal of its hand-over
        assert [(e.kind, e.code, e.path) for e in refusal] == [("rejected", ReasonCode.ACTOR_STOPPED, "audit")]
        assert sink.own == own + 1
