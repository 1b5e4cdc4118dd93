"""Requests to the intent service, read strictly: any subject and any bytes
are a request or one coded refusal, never an exception of another kind."""

from __future__ import annotations

import json
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.actors.intents.requests import MAX_REQUEST, MAX_WAIT, new_record, parse_request, wait_of
from exoarmur.actors.intents.states import IntentState
from exoarmur.runtime import ExoarmurError, ReasonCode

TYPES = {"ledger": object(), "noop": object()}
REFUSALS = {ReasonCode.INTENT_INVALID, ReasonCode.TENANT_MISMATCH, ReasonCode.EXECUTION_TYPE_UNKNOWN}


def submit(body, tenant="acme"):
    return new_record(tenant, body, types=TYPES, owner="p-1", now=1000.0, default_timeout=30.0)


def test_a_good_submission_becomes_a_received_record():
    tenant, op, body = parse_request("exoarmur.intents.acme.submit", b'{"id":"i-1","type":"ledger","params":{"a":1}}')
    record = submit(body, tenant)
    assert (tenant, op) == ("acme", "submit")
    assert (record.state, record.id, record.tenant, record.deadline, dict(record.params)) == (
        IntentState.RECEIVED, "i-1", "acme", 1030.0, {"a": 1}
    )


@pytest.mark.parametrize(
    ("subject", "data", "code", "names"),
    [
        ("exoarmur.intents.acme.delete", b"{}", ReasonCode.INTENT_INVALID, "subject"),
        ("exoarmur.intents.a*b.get", b"{}", ReasonCode.INTENT_INVALID, "tenant"),
        ("exoarmur.intents.acme.get", b"\xff", ReasonCode.INTENT_INVALID, "not JSON"),
        ("exoarmur.intents.acme.get", b'"x"', ReasonCode.INTENT_INVALID, "object"),
        ("exoarmur.intents.acme.get", b'{"tenant":"evil"}', ReasonCode.TENANT_MISMATCH, "evil"),
        ("exoarmur.intents.acme.get", b" " * (MAX_REQUEST + 1), ReasonCode.INTENT_INVALID, "at most"),
    ],
)
def test_bad_requests_are_refused_with_a_code_naming_the_problem(subject, data, code, names):
    with pytest.raises(ExoarmurError) as caught:
        parse_request(subject, data)
    assert caught.value.code is code and names in caught.value.detail


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"id": "x", "type": "nope"}, ReasonCode.EXECUTION_TYPE_UNKNOWN, "nope"),
        ({"id": "x", "type": "ledger", "timeout": 0}, ReasonCode.INTENT_INVALID, "timeout"),
        ({"id": "x", "type": "ledger", "timeout": 1e12}, ReasonCode.INTENT_INVALID, "timeout"),
        ({"id": "x", "type": "ledger", "timeout": True}, ReasonCode.INTENT_INVALID, "timeout"),
        ({"type": "ledger"}, ReasonCode.INTENT_INVALID, "id"),
        ({"id": "x"}, ReasonCode.INTENT_INVALID, "type"),
        ({"id": "x", "type": "ledger", "more": 1}, ReasonCode.INTENT_INVALID, "more"),
        ({"id": "x", "type": "ledger", "wait": 0}, ReasonCode.INTENT_INVALID, "wait"),
        ({"id": "x", "type": "ledger", "wait": 301}, ReasonCode.INTENT_INVALID, "wait"),
        ({"id": "x", "type": "ledger", "wait": "5"}, ReasonCode.INTENT_INVALID, "wait"),
        ({"id": "x", "type": "ledger", "wait": float("nan")}, ReasonCode.INTENT_INVALID, "wait"),
    ],
)
def test_bad_submissions_are_refused_with_a_code_naming_the_field(body, code, names):
    with pytest.raises(ExoarmurError) as caught:
        submit(body)
        wait_of(body)
    assert caught.value.code is code and names in caught.value.detail


@settings(max_examples=300)
@given(
    st.sampled_from(["submit", "get", "list", "revert", "x", ""]),
    st.text(max_size=12),
    st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), st.dictionaries(
        st.sampled_from(["id", "type", "params", "timeout", "tenant", "state", "limit", "wait", "zz"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
        | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    )),
)  # fmt: skip
def test_any_request_is_read_or_refused_with_one_of_its_codes(op, tenant, data):
    try:
        tenant, op, body = parse_request(f"exoarmur.intents.{tenant}.{op}", data)
        if op == "submit":
            submit(body, tenant)
        if op in ("submit", "get"):
            wait = wait_of(body)
            assert wait is None or 0 < wait <= MAX_WAIT
    except ExoarmurError as exc:
        assert exc.code in REFUSALS and exc.detail
