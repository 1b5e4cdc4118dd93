"""The replay reducer on hand-made audit streams: legal trails verify, each
kind of fault is found and named (chain and position, intent and revision)."""

from __future__ import annotations

import attrs
import orjson
import pytest

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.reducer import Reducer, reduce
from exoarmur.actors.intents.replay_chains import chained
from exoarmur.actors.intents.replay_compare import compare
from exoarmur.actors.intents.replay_problems import ProblemKind as K
from exoarmur.actors.intents.states import CODES, IntentState
from exoarmur.actors.intents.trail import chain_of, transition_event
from exoarmur.actors.nats import KvEntry, Record, StreamMessage, batch_event
from exoarmur.runtime import AuditEvent, ReasonCode

S = IntentState
SUCCESS = (S.RECEIVED, S.APPROVED, S.EXECUTING, S.SUCCEEDED)


class Revisions:
    """A records bucket's revisions: one counter for every key, as KV's are."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last



def code_of(state: IntentState) -> str:
    """A code a record in `state` carries (states.CODES; FAILED: a type's reason)."""
    codes = CODES[state]
    return "TARGET_GONE" if codes is None else sorted(codes)[0]

def walk(tenant: str, intent_id: str, steps, revisions: Revisions, *, t0: float = 1_000.0) -> list[IntentRecord]:
    """An intent's records as written: each step a state (a transition) or
    ("owner", name) (a takeover), each at the bucket's next revision."""
    record = IntentRecord.received(
        intent_id=intent_id, tenant=tenant, type="ledger", params={"target": "10.0.0.7"}, owner="p-a",
        now=t0, deadline=t0 + 30,
    ).at(revisions.next())  # fmt: skip
    records = [record]
    for n, step in enumerate(steps[1:], start=1):
        if isinstance(step, tuple):
            record = record.owned_by(step[1], now=t0 + n)
        else:
            record = record.moved(step, now=t0 + n, code=code_of(step), attempt=step in (S.EXECUTING, S.REVERTING))
        record = record.at(revisions.next())
        records.append(record)
    return records


def events(records: list[IntentRecord]) -> list[dict]:
    return [transition_event(r) for r in records]


def kernel_event(n: int) -> dict:
    return AuditEvent(kind="actor_crashed", code=ReasonCode.ACTOR_CRASHED, at=float(n), path=f"p/{n}").to_json()


def kv_of(*trails: list[IntentRecord]) -> list[KvEntry]:
    """The records bucket after these writes: each intent's last record."""
    return [KvEntry(t[-1].kv_key, t[-1].to_bytes(), t[-1].revision) for t in trails]


def kinds(problems) -> list[K]:
    return [p.kind for p in problems]


def two_tenants():
    revisions = Revisions()
    a1 = walk("acme", "i-1", SUCCESS, revisions)
    b1 = walk("bolt", "i-1", (S.RECEIVED, S.AWAITING_APPROVAL, S.DENIED), revisions)
    a2 = walk("acme", "i-2", (S.RECEIVED, S.APPROVED, ("owner", "p-b"), S.EXECUTING, S.EXECUTING, S.FAILED), revisions)
    acme = chained(chain_of("acme"), events(a1) + events(a2))
    bolt = chained(chain_of("bolt"), events(b1))
    main = chained("main", [kernel_event(n) for n in range(3)])
    stream = [acme[0], main[0], bolt[0], acme[1], bolt[1], *acme[2:6], main[1], bolt[2], *acme[6:], main[2]]
    return stream, (a1, b1, a2), acme


class TestLegalTrails:
    def test_interleaved_chains_and_intents_verify_and_rebuild_each_last_record(self):
        stream, trails, _ = two_tenants()
        reduction = reduce(stream)
        assert reduction.problems == ()
        assert reduction.counts.records == 16 and reduction.counts.chains == 3
        assert (reduction.counts.intents, reduction.counts.intent_records, reduction.counts.other_records) == (3, 13, 3)
        for trail in trails:
            rebuilt = reduction.intents[trail[-1].tenant, trail[-1].id]
            assert rebuilt.revision == trail[-1].revision and rebuilt.record == trail[-1].to_dict()
        assert dict(reduction.chains) == {"intents-acme": 10, "intents-bolt": 3, "main": 3}
        assert compare(reduction, kv_of(*trails)) == []

    def test_a_record_appended_again_later_is_a_harmless_duplicate(self):
        revisions = Revisions()
        trail = walk("acme", "i-1", SUCCESS, revisions)
        # The append of revision 2 repeated after revision 3's (past the stream's duplicate window).
        stream = chained(chain_of("acme"), events(trail[:3]) + [transition_event(trail[1])] + events(trail[3:]))
        reduction = reduce(stream)
        assert reduction.problems == () and reduction.counts.duplicates == 1
        assert compare(reduction, kv_of(trail)) == []

    def test_a_takeover_and_a_new_attempt_are_legal_steps(self):
        trail = walk("acme", "i-1", (S.RECEIVED, ("owner", "p-b"), S.APPROVED, S.EXECUTING, S.EXECUTING), Revisions())
        assert reduce(chained(chain_of("acme"), events(trail))).problems == ()
        assert trail[-1].attempts == 2 and trail[1].owner == "p-b"


class TestBatchRecords:
    """Appends queued together are one record, `{"kind": "batch", "events": [...]}`."""

    def test_a_batch_is_its_events_in_order(self):
        revisions = Revisions()
        one, two = walk("acme", "i-1", SUCCESS, revisions), walk("acme", "i-2", SUCCESS, revisions)
        batched = [events(one)[0], batch_event(events(one)[1:] + events(two)[:2]), batch_event(events(two)[2:])]
        reduction = reduce(chained(chain_of("acme"), batched))
        assert reduction.problems == ()
        assert (reduction.counts.records, reduction.counts.intent_records) == (3, 8)
        assert compare(reduction, kv_of(one, two)) == []

    def test_a_batch_out_of_order_inside_is_named_with_the_event(self):
        trail = walk("acme", "i-1", SUCCESS, Revisions())
        shuffled = events(trail)
        shuffled[1], shuffled[2] = shuffled[2], shuffled[1]
        problems = reduce(chained(chain_of("acme"), [batch_event(shuffled)])).problems
        assert [(p.kind, p.position, p.details.get("event")) for p in problems][:1] == [(K.TRANSITION_INVALID, 0, 1)]

    @pytest.mark.parametrize(
        "event",
        [
            {"kind": "batch", "events": []},
            {"kind": "batch", "events": "x"},
            {"kind": "batch", "events": [{"kind": "batch", "events": [{"kind": "x"}]}]},
            {"kind": "batch", "events": [{"kind": "x"}], "more": 1},
        ],
    )
    def test_a_batch_that_is_not_one_is_named(self, event):
        [problem] = reduce(chained("main", [event])).problems
        assert (problem.kind, problem.chain, problem.position) == (K.EVENT_INVALID, "main", 0)

    def test_a_bad_intent_event_in_a_batch_is_named_by_its_index(self):
        trail = walk("acme", "i-1", SUCCESS, Revisions())
        [problem] = reduce(chained(chain_of("acme"), [batch_event([*events(trail), {"kind": "intent"}])])).problems
        assert (problem.kind, problem.position, problem.details["event"]) == (K.EVENT_INVALID, 0, 4)
        assert "position 0 event 4" in problem.message


def one_intent(records: list[IntentRecord], tenant: str = "acme"):
    return reduce(chained(chain_of(tenant), events(records)))


class TestIntentTrails:
    def test_the_first_record_must_be_received(self):
        trail = walk("acme", "i-1", SUCCESS, Revisions())
        [problem] = one_intent(trail[1:]).problems
        assert (problem.kind, problem.intent, problem.revision) == (K.FIRST_NOT_RECEIVED, "i-1", 2)

    def test_a_state_the_table_does_not_allow_next_is_named_with_both_states(self):
        trail = walk("acme", "i-1", SUCCESS, Revisions())
        [problem] = one_intent([trail[0], trail[3]]).problems  # RECEIVED -> SUCCEEDED
        assert (problem.kind, problem.tenant, problem.intent) == (K.TRANSITION_INVALID, "acme", "i-1")
        assert problem.revision == 4
        assert (problem.details["before"], problem.details["after"]) == ("RECEIVED", "SUCCEEDED")
        assert problem.chain == "intents-acme" and problem.position == 1

    def test_a_takeover_that_changes_more_than_owner_and_time_is_refused(self):
        first = walk("acme", "i-1", (S.RECEIVED,), Revisions())[0]
        forged = attrs.evolve(first, owner="p-z", code="X", detail="why").at(5)
        coded, problem = one_intent([first, forged]).problems
        assert (coded.kind, coded.details["code"]) == (K.CODE_INVALID, "X")  # RECEIVED never carries one
        assert problem.kind is K.TAKEOVER_INVALID and problem.revision == 5
        assert problem.details["fields"] == {
            "code": {"before": "", "after": "X"},
            "detail": {"before": "", "after": "why"},
        }

    @pytest.mark.parametrize(
        ("state", "code"),
        [(S.KILLED, "APPROVAL_DENIED"), (S.DENIED, "KILL_SWITCH_ACTIVE"), (S.EXPIRED, ""), (S.SUCCEEDED, "BREAKER_OPEN"),
         (S.AWAITING_APPROVAL, "")],
    )  # fmt: skip
    def test_a_gates_refusal_with_another_gates_code_is_named(self, state, code):
        """Each state carries only its codes (states.CODES): a KILLED record
        says KILL_SWITCH_ACTIVE, a DENIED one APPROVAL_DENIED, and so on."""
        first = walk("acme", "i-1", (S.RECEIVED,), Revisions())[0]
        ended = attrs.evolve(first, state=state, code=code).at(2)
        problems = [p for p in one_intent([first, ended]).problems if p.kind is K.CODE_INVALID]
        assert [(p.revision, p.details["state"], p.details["code"]) for p in problems] == [(2, state.value, code)]

    def test_a_field_set_at_submission_never_changes(self):
        first, second = walk("acme", "i-1", (S.RECEIVED, S.APPROVED), Revisions())
        changed = attrs.evolve(second, params={"target": "0.0.0.0/0"}).at(second.revision)
        [problem] = one_intent([first, changed]).problems
        assert problem.kind is K.FIELD_CHANGED
        params = problem.details["fields"]["params"]
        assert params == {"before": {"target": "10.0.0.7"}, "after": {"target": "0.0.0.0/0"}}

    def test_one_revision_with_two_contents_is_a_conflict(self):
        first, second, third = walk("acme", "i-1", (S.RECEIVED, S.APPROVED, S.EXECUTING), Revisions())
        other = attrs.evolve(second, state=S.DENIED, code="APPROVAL_DENIED").at(second.revision)
        problems = one_intent([first, second, third, other]).problems
        assert [(p.kind, p.revision) for p in problems] == [(K.REVISION_CONFLICT, 2)]

    def test_a_lower_revision_never_seen_is_named_and_does_not_move_the_trail(self):
        first, second, third = walk("acme", "i-1", (S.RECEIVED, S.APPROVED, S.EXECUTING), Revisions())
        reduction = one_intent([first, second.at(5), third.at(9), attrs.evolve(third, attempts=7).at(4)])
        [problem] = reduction.problems
        assert (problem.kind, problem.revision, problem.details["last_revision"]) == (K.REVISION_REGRESSED, 4, 9)
        trail = reduction.intents["acme", "i-1"]
        assert (trail.revision, trail.record["attempts"]) == (9, 1)

    def test_revision_zero_or_a_missing_field_is_not_an_intent_event(self):
        first = walk("acme", "i-1", (S.RECEIVED,), Revisions())[0]
        assert kinds(one_intent([first.at(0)]).problems) == [K.EVENT_INVALID]

    def test_an_intent_on_another_tenants_chain_is_named(self):
        trail = walk("bolt", "i-1", (S.RECEIVED,), Revisions())
        [problem] = one_intent(trail, tenant="acme").problems
        assert (problem.kind, problem.tenant, problem.chain) == (K.TENANT_MISMATCH, "bolt", "intents-acme")

    def test_an_intent_event_that_is_not_one_is_named_where_it_is(self):
        good = transition_event(walk("acme", "i-1", (S.RECEIVED,), Revisions())[0])
        bad_record = {**good, "record": {**good["record"], "state": "LOST"}}
        extra = {**good, "note": 1}
        stream = chained(chain_of("acme"), [good, bad_record, extra, {"kind": "intent"}])
        problems = reduce(stream).problems
        assert [(p.kind, p.position) for p in problems] == [(K.EVENT_INVALID, n) for n in (1, 2, 3)]
        assert "unknown state" in problems[0].message


def stream_messages(records: list[Record]) -> list[StreamMessage]:
    return [StreamMessage(seq, r.to_bytes(), f"exoarmur.audit.{r.chain}") for seq, r in enumerate(records, start=1)]


class TestChains:
    def chain(self, n: int = 6) -> list[Record]:
        return chained("c", [kernel_event(i) for i in range(n)])

    def test_a_record_changed_in_place_is_named_by_chain_and_position(self):
        records = self.chain()
        records[3] = attrs.evolve(records[3], event={**records[3].event, "detail": "edited"})
        [problem] = reduce(records).problems
        assert (problem.kind, problem.chain, problem.position) == (K.RECORD_ALTERED, "c", 3)

    def test_a_record_changed_with_its_hash_recomputed_breaks_the_link_after_it(self):
        records = self.chain()
        event = {**records[3].event, "detail": "edited"}
        records[3] = chained("c", [event], position=3, prev=records[2].hash)[0]
        [problem] = reduce(records).problems
        assert (problem.kind, problem.position) == (K.CHAIN_BROKEN, 4)

    def test_dropped_records_are_named_as_a_span_of_positions(self):
        records = self.chain(8)
        problems = reduce(records[:2] + records[5:]).problems
        assert [(p.kind, p.position, p.details["last"]) for p in problems] == [(K.RECORDS_MISSING, 2, 4)]
        [first] = reduce(records[1:]).problems
        assert (first.kind, first.position) == (K.RECORDS_MISSING, 0)

    def test_two_swapped_records_name_those_two_and_nothing_between(self):
        records = self.chain(8)
        swapped = [*records[:2], records[6], *records[3:6], records[2], records[7]]
        problems = reduce(swapped).problems
        assert sorted((p.kind, p.position) for p in problems) == [(K.RECORD_OUT_OF_ORDER, n) for n in (2, 6)]

    def test_a_record_stored_twice_at_one_position_is_a_fork(self):
        records = self.chain()
        [problem] = reduce([*records, records[2]]).problems
        assert (problem.kind, problem.position) == (K.POSITION_REPEATED, 2)

    def test_a_chain_that_does_not_start_from_the_genesis_is_broken_at_zero(self):
        records = chained("c", [kernel_event(0), kernel_event(1)], prev="f" * 64)
        [problem] = reduce(records).problems
        assert (problem.kind, problem.position) == (K.CHAIN_BROKEN, 0)

    def test_a_message_that_is_not_a_record_or_on_another_chains_subject_is_named_by_sequence(self):
        messages = stream_messages(self.chain(3))
        messages[1] = StreamMessage(2, b"{not json", "exoarmur.audit.c")
        messages.append(StreamMessage(9, messages[2].data, "exoarmur.audit.other"))
        reducer = Reducer()
        for message in messages:
            reducer.add_message(message)
        problems = reducer.reduction().problems
        assert [(p.kind, p.seq) for p in problems] == [
            (K.RECORD_UNREADABLE, 2),
            (K.RECORD_MISPLACED, 9),
            (K.RECORDS_MISSING, None),  # position 1 was the unreadable message
            (K.POSITION_REPEATED, 9),  # the misplaced copy is position 2 again
        ]
        assert reducer.reduction().last_seq == 9


class TestAgainstKv:
    def setup_method(self):
        stream, self.trails, self.acme = two_tenants()
        self.reducer = Reducer(subject_prefix=None)
        for record in stream:
            self.reducer.add(record)
        self.kv = {entry.key: entry for entry in kv_of(*self.trails)}

    def appended(self, record: IntentRecord) -> Record:
        """The next record of acme's chain, for `record`."""
        return chained(chain_of("acme"), [transition_event(record)], position=10, prev=self.acme[-1].hash)[0]

    def differences(self, reduction=None):
        return compare(reduction or self.reducer.reduction(), self.kv.values())

    def test_equal_state_has_no_differences(self):
        assert self.differences() == []

    def test_an_intent_in_kv_and_not_in_the_audit_and_the_reverse(self):
        orphan = walk("acme", "i-9", (S.RECEIVED,), Revisions())[0].at(40)
        self.kv[orphan.kv_key] = KvEntry(orphan.kv_key, orphan.to_bytes(), 40)
        del self.kv["bolt.i-1"]
        problems = self.differences()
        assert [(p.kind, p.tenant, p.intent) for p in problems] == [
            (K.MISSING_FROM_AUDIT, "acme", "i-9"),
            (K.MISSING_FROM_KV, "bolt", "i-1"),
        ]

    def test_a_field_that_differs_is_named_with_both_values(self):
        a1 = self.trails[0][-1]
        edited = attrs.evolve(a1, state=S.FAILED, code="EXECUTION_FAILED")
        self.kv[a1.kv_key] = KvEntry(a1.kv_key, edited.to_bytes(), a1.revision)
        [problem] = self.differences()
        assert (problem.kind, problem.intent, problem.revision) == (K.RECORD_DIFFERS, "i-1", a1.revision)
        assert problem.details["fields"] == {
            "code": {"kv": "EXECUTION_FAILED", "audit": ""},
            "state": {"kv": "FAILED", "audit": "SUCCEEDED"},
        }
        assert "state: KV 'FAILED', audit 'SUCCEEDED'" in problem.message

    def test_kv_ahead_of_the_audit_means_the_audit_is_behind(self):
        a1 = self.trails[0][-1]
        reverting = a1.moved(S.REVERTING, now=2_000.0).at(50)
        self.kv[a1.kv_key] = KvEntry(a1.kv_key, reverting.to_bytes(), 50)
        [problem] = self.differences()
        assert (problem.kind, problem.revision, problem.details["audit_revision"]) == (K.AUDIT_BEHIND, 50, a1.revision)

    def test_an_audit_that_moved_on_after_kv_was_read_is_not_a_difference_but_a_kv_behind_it_is(self):
        a1 = self.trails[0][-1]
        self.reducer.mark()  # KV is read now...
        reverting = a1.moved(S.REVERTING, now=2_000.0).at(50)
        self.reducer.add(self.appended(reverting))  # ...and the audit moves on while it is read
        assert self.differences() == []
        # A KV found behind what the audit held before KV was read went back.
        previous = self.trails[0][-2]
        self.kv[a1.kv_key] = KvEntry(a1.kv_key, previous.to_bytes(), previous.revision)
        [problem] = self.differences()
        assert (problem.kind, problem.revision, problem.details["audit_revision"]) == (K.KV_BEHIND, 3, 4)

    def test_a_kv_revision_the_audit_skipped_is_named(self):
        a1 = self.trails[0][-1]
        self.reducer.mark()
        later = a1.moved(S.REVERTING, now=2_000.0).at(60)
        self.reducer.add(self.appended(later))
        skipped = a1.moved(S.REVERTING, now=1_999.0).at(55)
        self.kv[a1.kv_key] = KvEntry(a1.kv_key, skipped.to_bytes(), 55)
        [problem] = self.differences()
        assert (problem.kind, problem.revision) == (K.REVISION_NOT_AUDITED, 55)

    def test_a_kv_entry_that_is_not_an_intent_record_is_named_by_key(self):
        self.kv["acme.i-1"] = KvEntry("acme.i-1", b'{"v": 2}', 4)
        self.kv["acme.i-7"] = KvEntry("acme.i-7", self.trails[2][-1].to_bytes(), 9)  # i-2's record under i-7
        problems = self.differences()
        assert [(p.kind, p.details.get("key")) for p in problems] == [
            (K.KV_UNREADABLE, "acme.i-1"),
            (K.KV_UNREADABLE, "acme.i-7"),
            (K.MISSING_FROM_KV, None),  # acme/i-1: its KV entry is unreadable
        ]

    def test_every_problem_serialises_with_its_kind_and_location(self):
        del self.kv["bolt.i-1"]
        [problem] = self.differences()
        assert orjson.loads(orjson.dumps(problem.to_dict())) == {
            "kind": "missing_from_kv",
            "message": problem.message,
            "tenant": "bolt",
            "intent": "i-1",
            "revision": 7,
        }
