"""Approvals on a real nats-server: an intent whose type asks for one waits
in AWAITING_APPROVAL until it is approved (then runs, once), denied (DENIED)
or its approval deadline passes (EXPIRED); a decision is taken once; the
process's watch wakes the intent at once; a kill switch still comes first."""

from __future__ import annotations

import time

import anyio
import pytest

from exoarmur.actors.intents import IntentState, TypeInfo
from exoarmur.runtime.margins import APPROVAL_POLL
from tests.integration.intents_support import intents_on

pytestmark = pytest.mark.anyio
S = IntentState


def asks_when_big(intent) -> bool:
    if intent.params.get("boom"):
        raise RuntimeError("the predicate broke")
    return bool(intent.params.get("big"))


GATED = TypeInfo(name="gated", path="fx", timeout=2.0, needs_approval=lambda intent: True, approval_timeout=60.0)
BRIEF = TypeInfo(name="brief", path="fx", timeout=2.0, needs_approval=lambda intent: True, approval_timeout=0.5)
PICKY = TypeInfo(name="picky", path="fx", timeout=2.0, needs_approval=asks_when_big)
TYPES = {info.name: info for info in (GATED, BRIEF, PICKY)}


async def waiting(it, tenant: str, intent_id: str, kind: str = "gated", **params) -> None:
    """Submitted and seen in AWAITING_APPROVAL."""
    assert (await it.request(tenant, "submit", {"id": intent_id, "type": kind, "params": params}))["ok"]
    deadline = time.monotonic() + 10
    while (record := await it.store.load(tenant, intent_id)).state is not S.AWAITING_APPROVAL:
        assert time.monotonic() < deadline, record
        await anyio.sleep(0.02)
    assert (record.code, record.detail.startswith("waits for an approval until ")) == ("APPROVAL_REQUIRED", True)


async def test_an_approved_intent_runs_once_woken_at_once_with_who_approved_it_in_its_trail(tmp_path):
    async with intents_on(tmp_path, gates=True, types=TYPES) as it:
        await waiting(it, "acme", "a-1")
        assert it.effects == {}
        started = time.monotonic()
        reply = await it.request("acme", "approve", {"id": "a-1", "who": "ann@h", "reason": "checked"})
        assert reply["ok"] and reply["code"] == "" and reply["approval"]["decision"] == "approved"
        record = await it.settled("acme", "a-1")
        assert time.monotonic() - started < APPROVAL_POLL / 2  # told by the watch, not found by the poll
        assert record.state is S.SUCCEEDED and it.effects == {("acme/a-1", "apply"): 1}
        trail = [e["record"] for e in await it.events("acme")]
        assert [r["state"] for r in trail] == ["RECEIVED", "AWAITING_APPROVAL", "APPROVED", "EXECUTING", "SUCCEEDED"]
        assert trail[2]["detail"] == "approved by ann@h: checked"


async def test_a_denied_intent_ends_denied_and_is_never_applied(tmp_path):
    async with intents_on(tmp_path, gates=True, types=TYPES) as it:
        await waiting(it, "acme", "d-1")
        assert (await it.request("acme", "deny", {"id": "d-1", "who": "bob@h", "reason": "no"}))["ok"]
        record = await it.settled("acme", "d-1")
        assert (record.state, record.code, record.detail) == (S.DENIED, "APPROVAL_DENIED", "denied by bob@h: no")
        assert it.effects == {}


async def test_a_decision_is_taken_once(tmp_path):
    """Approving twice changes nothing (DUPLICATE_SUPPRESSED); approving what
    was denied, or denying what was approved, is INTENT_STATE_INVALID."""
    async with intents_on(tmp_path, gates=True, types=TYPES) as it:
        await waiting(it, "acme", "o-1")
        first = await it.request("acme", "approve", {"id": "o-1", "who": "ann"})
        again = await it.request("acme", "approve", {"id": "o-1", "who": "eve", "reason": "me too"})
        assert (again["ok"], again["code"]) == (True, "DUPLICATE_SUPPRESSED")
        assert again["approval"] == first["approval"]  # eve's never stored
        other = await it.request("acme", "deny", {"id": "o-1"})
        assert (other["ok"], other["code"]) == (False, "INTENT_STATE_INVALID") and "already approved by ann" in other["detail"]
        assert (await it.settled("acme", "o-1")).state is S.SUCCEEDED
        late = await it.request("acme", "approve", {"id": "o-1"})
        assert late["code"] == "DUPLICATE_SUPPRESSED"
        await waiting(it, "acme", "o-2")
        assert (await it.request("acme", "deny", {"id": "o-2"}))["ok"]
        approve = await it.request("acme", "approve", {"id": "o-2"})
        assert approve["code"] == "INTENT_STATE_INVALID" and (await it.settled("acme", "o-2")).state is S.DENIED
        assert it.effects == {("acme/o-1", "apply"): 1}


async def test_nobody_deciding_in_time_ends_it_expired(tmp_path):
    async with intents_on(tmp_path, gates=True, types=TYPES) as it:
        await it.request("acme", "submit", {"id": "e-1", "type": "brief"})
        record = await it.settled("acme", "e-1")
        assert (record.state, record.code) == (S.EXPIRED, "APPROVAL_EXPIRED")
        late = await it.request("acme", "approve", {"id": "e-1"})
        assert (late["code"], "no longer waits" in late["detail"]) == ("INTENT_STATE_INVALID", True)
        assert it.effects == {}


async def test_a_predicate_decides_per_intent_and_one_that_raises_asks(tmp_path):
    async with intents_on(tmp_path, gates=True, types=TYPES) as it:
        await it.request("acme", "submit", {"id": "small", "type": "picky", "params": {"big": False}})
        assert (await it.settled("acme", "small")).state is S.SUCCEEDED
        await waiting(it, "acme", "big", "picky", big=True)
        await waiting(it, "acme", "broken", "picky", boom=True)  # fail closed: a person decides
        small = await it.request("acme", "approve", {"id": "small"})
        assert (small["code"], "does not wait" in small["detail"]) == ("INTENT_STATE_INVALID", True)
        missing = await it.request("acme", "approve", {"id": "nope"})
        assert missing["code"] == "INTENT_NOT_FOUND"
        bad = await it.request("acme", "approve", {"id": "big", "whom": "x"})
        assert bad["code"] == "INTENT_INVALID"


async def test_a_kill_switch_set_while_an_intent_waits_kills_it_at_once(tmp_path):
    """The switch comes first in the gates' order, and the watch wakes the
    waiting intent: KILLED well before its next look."""
    async with intents_on(tmp_path, gates=True, types=TYPES) as it:
        await waiting(it, "acme", "w-1")
        started = time.monotonic()
        await it.control("killswitch.set", {"tenant": "acme", "reason": "stop"})
        record = await it.settled("acme", "w-1")
        assert (record.state, record.code) == (S.KILLED, "KILL_SWITCH_ACTIVE")
        assert time.monotonic() - started < APPROVAL_POLL / 2
        approve = await it.request("acme", "approve", {"id": "w-1"})
        assert approve["code"] == "INTENT_STATE_INVALID" and it.effects == {}
