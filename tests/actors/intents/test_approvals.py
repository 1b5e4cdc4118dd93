"""Approvals as stored and as asked for: any stored bytes are a decision
(unreadable ones a denial: fail closed), any request body is a decision or
one coded refusal; a type's predicate that raises asks for an approval."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.actors.intents import IntentRecord, TypeInfo
from exoarmur.actors.intents.approvals import Approval, Decision, parse_decision
from exoarmur.actors.intents.notes import MAX_REASON, MAX_WHO
from exoarmur.actors.nats import KvEntry
from exoarmur.runtime import ExoarmurError, InvalidInput, ReasonCode

GOOD = {"v": 1, "decision": "approved", "who": "ann@h", "reason": "ok", "at": 1796000000.0}


def stored(value) -> KvEntry:
    return KvEntry("acme.i-1", value if isinstance(value, bytes) else orjson.dumps(value), 4)


def test_a_decision_reads_back_as_written():
    approval = Approval(decision=Decision.DENIED, who="bob", reason="no", at=5.0)
    assert Approval.from_entry(KvEntry("k", approval.to_bytes(), 9)) == Approval(
        decision=Decision.DENIED, who="bob", reason="no", at=5.0, revision=9
    )
    assert Approval.from_entry(stored(GOOD)).says() == "approved by ann@h: ok"


@pytest.mark.parametrize(
    "value",
    [b"{", b"[]", {**GOOD, "decision": "maybe"}, {**GOOD, "v": 2}, {**GOOD, "extra": 1}, {**GOOD, "who": None},
     {**GOOD, "at": "soon"}, {k: v for k, v in GOOD.items() if k != "reason"}],
)  # fmt: skip
def test_a_value_that_is_not_exactly_a_decision_is_a_denial(value):
    approval = Approval.from_entry(stored(value))
    assert approval.decision is Decision.DENIED and "unreadable" in approval.reason and approval.revision == 4


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120) | st.dictionaries(st.sampled_from(sorted(GOOD) + ["x"]),
       st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=9)).map(orjson.dumps))  # fmt: skip
def test_any_stored_bytes_are_a_decision_and_only_an_exact_approval_approves(data):
    approval = Approval.from_entry(KvEntry("k", data, 1))
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = None
    exact = (
        isinstance(value, dict) and set(value) == set(GOOD) and type(value["v"]) is int and value["v"] == 1
        and value["decision"] == "approved" and isinstance(value["who"], str) and isinstance(value["reason"], str)
        and type(value["at"]) in (int, float)
    )  # fmt: skip
    assert (approval.decision is Decision.APPROVED) is exact


def test_a_request_names_the_intent_who_and_why():
    assert parse_decision({"id": "i-1"}) == ("i-1", "", "")
    assert parse_decision({"id": "i-1", "tenant": "acme", "who": "w", "reason": "r"}) == ("i-1", "w", "r")


@pytest.mark.parametrize(
    ("body", "names"),
    [({}, "id"), ({"id": "a b"}, "id"), ({"id": "i", "whom": "x"}, "unknown field"),
     ({"id": "i", "who": "w" * (MAX_WHO + 1)}, "who"), ({"id": "i", "reason": 3}, "reason"),
     ({"id": "i", "reason": "r" * (MAX_REASON + 1)}, "reason")],
)  # fmt: skip
def test_a_bad_request_is_one_coded_refusal(body, names):
    with pytest.raises(InvalidInput) as caught:
        parse_decision(body)
    assert caught.value.code is ReasonCode.INTENT_INVALID and names in caught.value.detail


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "who", "reason", "tenant", "x"]), st.none() | st.integers() | st.text(max_size=30)))
def test_any_request_body_is_a_decision_or_intent_invalid(body):
    try:
        parse_decision(body)
    except ExoarmurError as exc:
        assert exc.code is ReasonCode.INTENT_INVALID


def test_a_types_predicate_decides_and_one_that_raises_asks():
    record = IntentRecord(id="i", tenant="t", type="x", params={"big": True}, created=100.0, deadline=500.0)

    def broken(intent):
        raise KeyError("nope")

    assert TypeInfo(name="x", path="p", timeout=1.0).asks_approval(record) == (False, "")
    assert TypeInfo(name="x", path="p", timeout=1.0, needs_approval=lambda i: i.params["big"]).asks_approval(record) == (True, "")
    asks, problem = TypeInfo(name="x", path="p", timeout=1.0, needs_approval=broken).asks_approval(record)
    assert asks and "x.needs_approval raised KeyError" in problem
    # The approval deadline: from creation, never past the intent's own deadline.
    assert TypeInfo(name="x", path="p", timeout=1.0, approval_timeout=60.0).approval_deadline(record) == 160.0
    assert TypeInfo(name="x", path="p", timeout=1.0, approval_timeout=1e6).approval_deadline(record) == 500.0
