"""Intents end to end on a real nats-server: submitted over NATS, driven
from KV by their actors, reconciled after a crash, taken over from a dead
owner, fenced from a former one, audited once per revision."""

from __future__ import annotations

import time

import pytest

import anyio
import orjson

from exoarmur.actors.intents import Activate, IntentRecord, IntentState, IntentStore, Reconciled, TypeInfo, intent_key
from exoarmur.actors.nats import Put, Request
from exoarmur.runtime.margins import INDEX_ORPHAN_AGE
from exoarmur.actors.intents.trail import transition_event
from exoarmur.runtime import Actor, Conflict, ReasonCode, error_for
from tests.integration.intents_support import OWNER, intents_on
from tests.integration.support import eventually

pytestmark = pytest.mark.anyio
S = IntentState


async def test_a_submitted_intent_succeeds_once_audited_per_revision_and_settles(tmp_path):
    async with intents_on(tmp_path) as it:
        reply = await it.request("acme", "submit", {"id": "i-1", "type": "fx", "params": {"user": "bob"}})
        assert reply["ok"] and reply["code"] == "" and reply["intent"]["state"] == "RECEIVED"
        record = await it.settled("acme", "i-1")
        assert record.state is S.SUCCEEDED and record.attempts == 1 and record.owner == OWNER
        assert it.effects == {("acme/i-1", "apply"): 1}
        trail = await it.events("acme")
        states = [e["record"]["state"] for e in trail]
        assert states == ["RECEIVED", "APPROVED", "EXECUTING", "SUCCEEDED"]
        assert trail[-1] == transition_event(record)
        assert await it.unsettled() == []
        # Settled, it leaves nothing in the index (no delete marker for every scan to read).
        info = await it.system.lookup("nats").ask(Request("$JS.API.STREAM.INFO.KV_exoarmur_intents_open", b""))
        assert orjson.loads(info.data)["state"]["messages"] == 0
        got = await it.request("acme", "get", {"id": "i-1"})
        assert got["intent"]["state"] == "SUCCEEDED" and got["intent"]["revision"] == record.revision


async def test_a_second_submission_of_an_id_is_suppressed_and_never_executes_twice(tmp_path):
    async with intents_on(tmp_path) as it:
        first = await it.request("acme", "submit", {"id": "dup", "type": "fx"})
        again = [await it.request("acme", "submit", {"id": "dup", "type": "fx"}) for _ in range(3)]
        await it.settled("acme", "dup")
        late = await it.request("acme", "submit", {"id": "dup", "type": "fx"})
        assert first["code"] == ""
        assert {r["code"] for r in [*again, late]} == {"DUPLICATE_SUPPRESSED"}
        assert late["intent"]["state"] == "SUCCEEDED"
        assert "another" not in late["detail"]  # a retry, the same payload
        other = await it.request("acme", "submit", {"id": "dup", "type": "fx", "params": {"user": "eve"}})
        assert other["code"] == "DUPLICATE_SUPPRESSED" and other["intent"]["params"] == {}
        assert "another params" in other["detail"]  # said, not silent
        assert it.effects == {("acme/dup", "apply"): 1}


@pytest.mark.parametrize(
    ("subject_tenant", "body", "code"),
    [
        ("acme", b"not json", "INTENT_INVALID"),
        ("acme", b"[1]", "INTENT_INVALID"),
        ("acme", {"id": "a.b", "type": "fx"}, "INTENT_INVALID"),
        ("acme", {"id": "x", "type": "nope"}, "EXECUTION_TYPE_UNKNOWN"),
        ("acme", {"id": "x", "type": "fx", "tenant": "other"}, "TENANT_MISMATCH"),
        ("acme", {"id": "x", "type": "fx", "timeout": -1}, "INTENT_INVALID"),
        ("acme", {"id": "x", "type": "fx", "params": {"a": [1]}}, "INTENT_INVALID"),
        ("acme", {"id": "x", "type": "fx", "bogus": 1}, "INTENT_INVALID"),
    ],
)
async def test_bad_submissions_get_a_coded_reply_and_the_service_keeps_serving(tmp_path, subject_tenant, body, code):
    async with intents_on(tmp_path) as it:
        reply = await it.request(subject_tenant, "submit", body)
        assert reply == {"ok": False, "code": code, "detail": reply["detail"]} and reply["detail"]
        assert (await it.request("acme", "get", {"id": "missing"}))["code"] == "INTENT_NOT_FOUND"
        ok = await it.request("acme", "submit", {"id": "after", "type": "fx"})
        assert ok["ok"] and (await it.settled("acme", "after")).state is S.SUCCEEDED


async def test_an_intent_past_its_deadline_before_executing_expires(tmp_path):
    async with intents_on(tmp_path) as it:
        await it.store.mark_open(OWNER, "acme", "late")
        now = time.time()
        record = IntentRecord.received(
            intent_id="late", tenant="acme", type="fx", params={}, owner=OWNER, now=now - 10, deadline=now - 1
        )
        await it.store.create(record)
        await it.system.lookup("router").ask(Activate("acme", "late"))
        done = await it.settled("acme", "late")
        assert (done.state, done.code) == (S.EXPIRED, "DEADLINE_EXCEEDED") and not it.effects


async def executing(it, intent_id: str, *, owner: str = OWNER) -> IntentRecord:
    """A record left in EXECUTING by a process that died right after writing it."""
    now = time.time()
    record = IntentRecord.received(
        intent_id=intent_id, tenant="acme", type="fx", params={}, owner=owner, now=now, deadline=now + 30
    )
    created, _ = await it.store.create(record)
    approved = await it.store.write(created, created.moved(S.APPROVED, now=now))
    executing = await it.store.write(approved, approved.moved(S.EXECUTING, now=now, attempt=True))
    # Indexed last, so the resumer's scan cannot find it half written.
    await it.store.mark_open(owner, "acme", intent_id)
    return executing


@pytest.mark.parametrize(
    ("answer", "state", "code", "applies"),
    [
        (Reconciled.APPLIED, S.SUCCEEDED, "", 0),
        (None, S.SUCCEEDED, "", 1),  # NOT_APPLIED: applied once, then APPLIED
        (Reconciled.UNKNOWN, S.FAILED, "RECONCILE_UNKNOWN", 0),
    ],
)
async def test_an_intent_found_executing_is_reconciled_never_reapplied_blindly(tmp_path, answer, state, code, applies):
    """The resumer finds the process's own unsettled intent at its first scan."""
    async with intents_on(tmp_path) as it:
        if answer is not None:
            it.answers["acme/x"] = answer
        await executing(it, "x")
        done = await it.settled("acme", "x")
        assert (done.state, done.code) == (state, code)
        assert it.effects[("acme/x", "apply")] == applies
        assert [e["record"]["state"] for e in await it.events("acme")][-1] == state.value


async def test_a_dead_owners_intent_is_taken_over_after_its_lease_lapses(tmp_path):
    async with intents_on(tmp_path) as it:
        # What a killed process leaves: its lease, never renewed again.
        await it.system.lookup("leases").ask(Put("p-dead", orjson.dumps({"owner": "p-dead", "ttl": 1.0})))
        found = await executing(it, "orphan", owner="p-dead")
        done = await it.settled("acme", "orphan", timeout=15.0)
        assert done.state is S.SUCCEEDED and done.owner == OWNER
        assert it.effects[("acme/orphan", "apply")] == 1
        states = [(e["record"]["state"], e["record"]["owner"]) for e in await it.events("acme")]
        # The dead owner's last revision is audited before the takeover's.
        assert states[:2] == [("EXECUTING", "p-dead"), ("EXECUTING", OWNER)]
        # The former owner is fenced: its write on the revision it knew is refused.
        with pytest.raises(Conflict) as caught:
            await it.store.write(found, found.moved(S.FAILED, now=time.time()))
        assert caught.value.code is ReasonCode.LEASE_LOST
        assert intent_key("acme", "orphan") not in [f"{t}.{i}" for _, t, i in await it.unsettled()]


async def test_a_takeover_writes_its_index_entry_before_the_record(tmp_path, monkeypatch):
    """As a submission's entry precedes its record: a takeover whose entry
    cannot be written (a crash there) leaves the record the dead owner's,
    still indexed under it, never a record of ours that no entry names."""
    async with intents_on(tmp_path) as it:
        await it.system.lookup("leases").ask(Put("p-dead", orjson.dumps({"owner": "p-dead", "ttl": 1.0})))
        failed = anyio.Event()
        original = IntentStore.mark_open

        async def unreachable(self, owner, tenant, intent_id):
            failed.set()
            raise error_for(ReasonCode.TIMEOUT_KV_PUT, "the index is unreachable")

        await executing(it, "orphan", owner="p-dead")  # its lease lapses only after 1 s and a grace
        monkeypatch.setattr(IntentStore, "mark_open", unreachable)
        with anyio.fail_after(15):
            await failed.wait()
        stored = await it.store.load("acme", "orphan")
        assert stored.owner == "p-dead" and stored.state is S.EXECUTING
        monkeypatch.setattr(IntentStore, "mark_open", original)
        done = await it.settled("acme", "orphan", timeout=15.0)
        assert done.owner == OWNER and it.effects[("acme/orphan", "apply")] == 1


async def test_a_succeeded_intent_reverts_once(tmp_path):
    async with intents_on(tmp_path) as it:
        await it.request("acme", "submit", {"id": "r", "type": "fx"})
        await it.settled("acme", "r")
        reply = await it.request("acme", "revert", {"id": "r"})
        assert reply["ok"] and reply["intent"]["state"] == "REVERTING"
        done = await it.settled("acme", "r")
        assert done.state is S.REVERTED
        assert it.effects == {("acme/r", "apply"): 1, ("acme/r", "revert"): 1}
        again = await it.request("acme", "revert", {"id": "r"})
        assert (again["code"], again["intent"]["state"]) == ("DUPLICATE_SUPPRESSED", "REVERTED")
        assert it.effects[("acme/r", "revert")] == 1
        await it.request("acme", "submit", {"id": "not-yet", "type": "fx", "timeout": 0.001})
        expired = await it.settled("acme", "not-yet")
        refused = await it.request("acme", "revert", {"id": "not-yet"})
        assert expired.state is S.EXPIRED and refused["code"] == "INTENT_STATE_INVALID"


async def test_a_settled_intent_is_read_again_only_if_a_revert_may_follow(tmp_path):
    """Its record costs the create and three compare-and-sets; once out of
    the index, a type that reverts reads it again (a revert written
    meanwhile is found), one that cannot does not."""
    once = TypeInfo(name="once", path="fx", timeout=2.0)  # the same effector, no revert
    async with intents_on(tmp_path, types={"once": once}) as it:
        records = it.system.lookup("records")
        for type_, operations in (("once", 4), ("fx", 5)):
            before = records.statistics().processed
            reply = await it.request("acme", "submit", {"id": type_, "type": type_, "wait": 5})
            assert reply["intent"]["state"] == "SUCCEEDED"
            await eventually(lambda: records.statistics().processed - before >= operations)
            await anyio.sleep(0.3)  # the actor has stopped: no read comes later
            assert records.statistics().processed - before == operations, type_


async def test_a_revert_whose_index_write_fails_writes_nothing_the_resumer_could_miss(tmp_path, monkeypatch):
    """REVERTING is written only once the intent is in the open index: a
    process that dies between the two (here: the index write fails) leaves
    SUCCEEDED, never a REVERTING intent no resumer would find."""
    async with intents_on(tmp_path) as it:
        await it.request("acme", "submit", {"id": "r", "type": "fx"})
        await it.settled("acme", "r")
        original = IntentStore.mark_open

        async def failing(self, owner, tenant, intent_id):
            raise error_for(ReasonCode.TIMEOUT_KV_PUT, "the index is unreachable")

        monkeypatch.setattr(IntentStore, "mark_open", failing)
        reply = await it.request("acme", "revert", {"id": "r"})
        assert reply["code"] == "TIMEOUT_KV_PUT"
        assert (await it.store.load("acme", "r")).state is S.SUCCEEDED
        monkeypatch.setattr(IntentStore, "mark_open", original)
        assert (await it.request("acme", "revert", {"id": "r"}))["intent"]["state"] == "REVERTING"
        assert (await it.settled("acme", "r")).state is S.REVERTED


async def test_any_process_asked_reverts_a_terminal_intent_taking_it_over(tmp_path):
    """A SUCCEEDED intent of another process (alive or not: a terminal intent
    has no driver) is reverted by whichever process is asked; the write that
    moves it to REVERTING under the new owner is the fence. (The other's
    index entry goes once its lease lapses: a shorter one, for speed.)"""
    async with intents_on(tmp_path, lease_ttl=5.0) as it:
        record = await executing(it, "theirs", owner="p-other")
        await it.store.write(record, record.moved(S.SUCCEEDED, now=time.time()))
        it.effects[("acme/theirs", "apply")] += 1  # its apply, made by the other process
        reply = await it.request("acme", "revert", {"id": "theirs"})
        assert reply["ok"] and reply["intent"]["owner"] == OWNER
        done = await it.settled("acme", "theirs")
        assert (done.state, done.owner) == (S.REVERTED, OWNER)
        assert it.effects[("acme/theirs", "revert")] == 1


async def test_an_index_entry_without_its_record_is_dropped_only_once_old(tmp_path):
    """A young one may be a submission whose create has not landed yet."""
    async with intents_on(tmp_path) as it:
        await it.store.mark_open(OWNER, "acme", "young")
        await it.store.open.ask(Put(f"{OWNER}.acme.old", orjson.dumps({"at": time.time() - INDEX_ORPHAN_AGE - 1})))
        router = it.system.lookup("router")
        for intent_id in ("young", "old"):
            await router.ask(Activate("acme", intent_id))
        await eventually_async(lambda: it.unsettled(), lambda entries: ("acme", "old") not in {(t, i) for _, t, i in entries})
        assert (OWNER, "acme", "young") in await it.unsettled()


async def test_an_actor_started_before_its_record_is_created_waits_for_it(tmp_path):
    """The resumer can find a submission's index entry between its put and
    its record's create, and start the intent's actor before the service
    does. That actor waits for the record (its entry is young) and drives
    it; the service's own Activate finds it running."""
    async with intents_on(tmp_path) as it:
        await it.store.mark_open(OWNER, "acme", "early")
        router = it.system.lookup("router")
        records = it.system.lookup("records")
        looked = records.statistics().processed
        await router.ask(Activate("acme", "early"))  # as the resumer would (it may have, too): no record yet
        await eventually(lambda: records.statistics().processed >= looked + 2)  # found none, looked again
        assert it.system.find("tenants/acme/intent.early") is not None  # waiting, not stopped
        now = time.time()
        record = IntentRecord.received(intent_id="early", tenant="acme", type="fx", params={}, owner=OWNER,
                                       now=now, deadline=now + 60)  # fmt: skip
        created, _ = await it.store.create(record)
        assert await router.ask(Activate("acme", "early", record=created)) is False  # the service's: runs already
        done = await it.settled("acme", "early")
        assert done.state is S.SUCCEEDED and it.effects[("acme/early", "apply")] == 1


async def test_an_actor_started_for_an_intent_settled_meanwhile_appends_nothing(tmp_path):
    """The resumer walks a snapshot of the index, so it can start an actor
    for an intent that settled since. Out of the index, the intent's end is
    audited: the actor stops without appending it again (an append the
    chain's memo of recent ids would only absorb while it remembers it).
    A SUCCEEDED intent of a type that reverts ("fx") is read again first, as
    `_settled` does (a revert may have been written meanwhile): still
    SUCCEEDED, nothing is appended either."""
    once = TypeInfo(name="once", path="fx", timeout=2.0)  # the same effector, no revert
    async with intents_on(tmp_path, types={"once": once}) as it:
        for kind in ("once", "fx"):
            reply = await it.request("acme", "submit", {"id": kind, "type": kind, "wait": 5})
            assert reply["intent"]["state"] == "SUCCEEDED"
            await it.settled("acme", kind)
            await eventually(lambda: it.system.find(f"tenants/acme/intent.{kind}") is None)
            audit = it.system.lookup("tenants/acme/audit")
            before = audit.statistics().processed
            await it.system.lookup("router").ask(Activate("acme", kind))  # as a stale scan would
            await eventually(lambda: it.system.find(f"tenants/acme/intent.{kind}") is None)
            assert audit.statistics().processed == before, kind
        assert [e["record"]["state"] for e in await it.events("acme")] == ["RECEIVED", "APPROVED", "EXECUTING", "SUCCEEDED"] * 2


async def test_the_resumer_leaves_an_entry_whose_actor_runs_alone(tmp_path):
    """An entry whose actor runs as the index is read is not activated (the
    resumer scans every 0.5 s here): by the time the walk reaches it, it may
    have settled, and a fresh actor would only read that back."""
    async with intents_on(tmp_path) as it:
        await it.store.mark_open(OWNER, "acme", "running")
        router = it.system.lookup("router")
        await router.ask(Activate("acme", "running"))  # waits for a record that is not created here
        before, scans = router.statistics().processed, it.system.lookup("open").statistics().processed
        # Two scans read the index meanwhile (each a listing of the open bucket).
        await eventually(lambda: it.system.lookup("open").statistics().processed >= scans + 2)
        assert it.system.find("tenants/acme/intent.running") is not None
        assert router.statistics().processed == before


async def eventually_async(read, holds, *, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not holds(await read()):
            await anyio.sleep(0.05)


@pytest.mark.parametrize("body", [{"state": ["X"]}, {"state": {"a": 1}}, {"state": "NOPE"}, {"limit": 0}, {"limit": "9"}])
async def test_a_bad_list_request_is_refused_with_a_code_and_the_service_goes_on(tmp_path, body):
    async with intents_on(tmp_path) as it:
        reply = await it.request("acme", "list", body)
        assert (reply["ok"], reply["code"]) == (False, "INTENT_INVALID")
        for n in range(3):
            assert (await it.request("acme", "submit", {"id": f"l-{n}", "type": "fx"}))["ok"]
        listed = await it.request("acme", "list", {"limit": 2})
        assert [i["id"] for i in listed["intents"]] == ["l-0", "l-1"] and listed["truncated"] is True


class SlowToStop(Actor):
    """Spawned last, stopped first: its stop holds the process in its stop for a while."""

    async def stopping(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(1.0)


async def test_a_submission_while_the_process_stops_is_answered_shutting_down_and_nothing_is_created(tmp_path):
    """While the stop drains what runs, the service still answers, but takes
    nothing new: SHUTTING_DOWN (submit is idempotent: send it again later),
    and no record is made."""
    async with intents_on(tmp_path) as it:
        await it.system.spawn(SlowToStop, name="slow")
        async with anyio.create_task_group() as group:
            group.start_soon(it.system.shutdown)
            with anyio.fail_after(5):
                while not it.system.stopping:
                    await anyio.sleep(0.01)
            reply = await it.request("acme", "submit", {"id": "late", "type": "fx"})
            assert (reply["ok"], reply["code"]) == (False, "SHUTTING_DOWN"), reply
            assert await it.store.load("acme", "late") is None
