"""The replay reducer on random audit streams: legal walks through the
transition table always verify, and any single tampering with the stored
records (a field changed, a record dropped, two swapped, a revision changed)
is found and named."""

from __future__ import annotations

from collections import defaultdict

import attrs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exoarmur.actors.intents.kills import failing_closed
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.reducer import reduce
from exoarmur.actors.intents.replay_chains import chained
from exoarmur.actors.intents.replay_compare import compare
from exoarmur.actors.intents.replay_problems import ProblemKind as K
from exoarmur.actors.intents.states import TRANSITIONS, IntentState
from exoarmur.actors.intents.trail import KIND, chain_of, transition_event
from exoarmur.actors.nats import KvEntry, Record, batch_event
from tests.actors.intents.test_reducer import code_of, kernel_event

S = IntentState
TAKEOVER = "takeover"
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@attrs.frozen
class Append:
    """One audit append as stored: its chain and event; for an intent's,
    its (tenant, id) and revision, and whether it repeats an earlier one."""

    chain: str
    event: dict
    intent: tuple[str, str] | None = None
    revision: int = 0
    repeat: bool = False


@attrs.frozen
class Audit:
    appends: list[Append]
    last: dict[tuple[str, str], IntentRecord]  # what KV holds: each intent's last write

    def kv(self) -> list[KvEntry]:
        return [KvEntry(r.kv_key, r.to_bytes(), r.revision) for r in self.last.values()]


def stored(appends: list[Append]) -> list[Record]:
    """The stream: every chain hash-linked, in append order."""
    by_chain: dict[str, list[dict]] = defaultdict(list)
    for append in appends:
        by_chain[append.chain].append(append.event)
    records = {chain: iter(chained(chain, events)) for chain, events in by_chain.items()}
    return [next(records[append.chain]) for append in appends]


@st.composite
def audits(draw) -> Audit:
    """Intents of a few tenants walked through the table (takeovers among
    the steps), their writes interleaved, each followed by its audit append;
    some appends repeated later; the kernel's own events on chain "main"."""
    tenants = draw(st.lists(st.sampled_from(["acme", "bolt", "core"]), min_size=1, max_size=3, unique=True))
    plans = []
    for n in range(draw(st.integers(1, 5))):
        steps, state = [], S.RECEIVED
        for _ in range(draw(st.integers(0, 6))):
            choice = draw(st.sampled_from([TAKEOVER, *sorted(TRANSITIONS[state])]))
            steps.append(choice)
            state = state if choice == TAKEOVER else choice
        plans.append((draw(st.sampled_from(tenants)), f"i-{n}", steps))
    order = draw(st.permutations([i for i, (_, _, steps) in enumerate(plans) for _ in range(len(steps) + 1)]))
    current: dict[int, IntentRecord] = {}
    done = defaultdict(int)
    appends: list[Append] = []
    for revision, i in enumerate(order, start=1):
        tenant, intent_id, steps = plans[i]
        now = 1_000.0 + revision
        if i not in current:
            record = IntentRecord.received(intent_id=intent_id, tenant=tenant, type="ledger", params={"n": i},
                                           owner="p-a", now=now, deadline=now + 30)  # fmt: skip
        else:
            step = steps[done[i]]
            done[i] += 1
            before = current[i]
            if step == TAKEOVER:
                record = before.owned_by(f"p-{revision}", now=now)
            else:
                detail = failing_closed("TIMEOUT_KV_GET", "no answer") if step is S.KILLED else ""  # a kill names its cause
                record = before.moved(step, now=now, code=code_of(step), detail=detail, attempt=step in (S.EXECUTING, S.REVERTING))
        current[i] = record = record.at(revision)
        appends.append(Append(chain_of(tenant), transition_event(record), (tenant, intent_id), revision))
        if draw(st.integers(0, 5)) == 0:
            appends.append(Append("main", kernel_event(revision)))
    for _ in range(draw(st.integers(0, 2))):  # an append repeated later, past the duplicate window
        intents = [a for a in appends if a.intent is not None and not a.repeat]
        original = draw(st.sampled_from(intents))
        at = draw(st.integers(appends.index(original) + 1, len(appends)))
        appends.insert(at, attrs.evolve(original, repeat=True))
    last = {(r.tenant, r.id): r for r in current.values()}
    return Audit(appends, last)


def located(problems, kind, chain, positions) -> bool:
    return any(p.kind is kind and p.chain == chain and p.position in positions for p in problems)


@PROPERTIES
@given(audit=audits())
def test_legal_walks_always_verify_and_rebuild_kv(audit):
    reduction = reduce(stored(audit.appends))
    assert reduction.problems == ()
    assert reduction.counts.duplicates == sum(a.repeat for a in audit.appends)
    assert compare(reduction, audit.kv()) == []


def stored_in_batches(appends: list[Append], joins: list[bool]) -> list[Record]:
    """The stream when appends are queued together: an append joins its
    chain's last record (a batch) where `joins` says, else starts one."""
    runs: list[tuple[str, list[dict]]] = []
    last: dict[str, list[dict]] = {}
    for append, join in zip(appends, joins, strict=True):
        if join and append.chain in last:
            last[append.chain].append(append.event)
            continue
        last[append.chain] = [append.event]
        runs.append((append.chain, last[append.chain]))
    as_appended = [Append(chain, events[0] if len(events) == 1 else batch_event(events)) for chain, events in runs]
    return stored(as_appended)


@PROPERTIES
@given(audit=audits(), data=st.data())
def test_batched_appends_verify_and_rebuild_kv_as_appended_one_by_one(audit, data):
    joins = data.draw(st.lists(st.booleans(), min_size=len(audit.appends), max_size=len(audit.appends)))
    records = stored_in_batches(audit.appends, joins)
    reduction, alone = reduce(records), reduce(stored(audit.appends))
    assert reduction.problems == ()
    assert attrs.evolve(reduction.counts, records=alone.counts.records) == alone.counts
    assert compare(reduction, audit.kv()) == []


@PROPERTIES
@given(audit=audits(), data=st.data())
def test_a_changed_field_or_revision_is_named_by_chain_and_position(audit, data):
    records = stored(audit.appends)
    index = data.draw(st.integers(0, len(records) - 1))
    record = records[index]
    event = dict(record.event)
    if event.get("kind") == KIND:
        change = data.draw(st.sampled_from(["owner", "state", "revision"]))
        if change == "revision":
            event["revision"] += data.draw(st.sampled_from([-1, 1]))
        else:
            event["record"] = {**event["record"], change: "FAILED" if change == "state" else "mallory"}
    else:
        event["detail"] = "edited"
    assume(event != record.event)
    records[index] = attrs.evolve(record, event=event)  # its stored hash kept
    assert located(reduce(records).problems, K.RECORD_ALTERED, record.chain, {record.position})


@PROPERTIES
@given(audit=audits(), data=st.data())
def test_a_dropped_record_is_named_or_shows_as_an_audit_behind_kv(audit, data):
    records = stored(audit.appends)
    index = data.draw(st.integers(0, len(records) - 1))
    dropped, append = records.pop(index), audit.appends[index]
    reduction = reduce(records)
    if any(r.chain == dropped.chain and r.position > dropped.position for r in records):
        assert located(reduction.problems, K.RECORDS_MISSING, dropped.chain, {dropped.position})
        return
    # The chain's last record: the chain alone cannot tell. An intent's last
    # write shows against KV; a repeat or a kernel event leaves nothing behind.
    assume(append.intent is not None and not append.repeat)
    found = compare(reduction, audit.kv())
    kinds = {K.AUDIT_BEHIND, K.MISSING_FROM_AUDIT}
    assert any(p.kind in kinds and (p.tenant, p.intent) == append.intent for p in found)


@PROPERTIES
@given(audit=audits(), data=st.data())
def test_two_swapped_records_of_a_chain_are_named(audit, data):
    records = stored(audit.appends)
    chain = data.draw(st.sampled_from(sorted({r.chain for r in records})))
    indices = [i for i, r in enumerate(records) if r.chain == chain]
    assume(len(indices) >= 2)
    i, j = sorted(data.draw(st.lists(st.sampled_from(indices), min_size=2, max_size=2, unique=True)))
    positions = {records[i].position, records[j].position}
    records[i], records[j] = records[j], records[i]
    assert located(reduce(records).problems, K.RECORD_OUT_OF_ORDER, chain, positions)


@PROPERTIES
@given(audit=audits(), data=st.data())
def test_a_revision_written_back_by_a_buggy_writer_is_named_with_the_intent(audit, data):
    """The chain re-hashed, as a writer would: the fault is in the intent's trail."""
    seen: set[tuple[str, str]] = set()
    later = []  # the appends of an intent's second write on (repeats left out)
    for index, append in enumerate(audit.appends):
        if append.intent is not None and not append.repeat:
            if append.intent in seen:
                later.append(index)
            seen.add(append.intent)
    assume(later)
    index = data.draw(st.sampled_from(later))
    append = audit.appends[index]
    before = max(a.revision for a in audit.appends[:index] if a.intent == append.intent)
    moved = data.draw(st.integers(1, before))
    appends = list(audit.appends)
    appends[index] = attrs.evolve(append, event={**append.event, "revision": moved})
    problems = reduce(stored(appends)).problems
    named = {K.REVISION_CONFLICT, K.REVISION_REGRESSED}
    assert any(p.kind in named and (p.tenant, p.intent) == append.intent and p.revision == moved for p in problems)
