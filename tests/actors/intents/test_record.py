"""The intent record: strict encoding both ways, checked fields."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoarmur.actors.intents.record import IntentRecord, check_id, check_params, check_tenant
from exoarmur.actors.intents.states import IntentState
from exoarmur.runtime import InvalidInput, ReasonCode


def received(**change):
    fields = dict(intent_id="i-1", tenant="acme", type="ledger", params={"user": "bob", "n": 3}, owner="p-1",
                  now=100.0, deadline=130.0)  # fmt: skip
    fields.update(change)
    return IntentRecord.received(**fields)


def test_a_record_round_trips_with_its_revision_apart():
    record = received().moved(IntentState.APPROVED, now=101.0).at(7)
    data = record.to_bytes()
    assert orjson.loads(data)["v"] == 1 and "revision" not in orjson.loads(data)
    back = IntentRecord.from_bytes(data, revision=7)
    assert back == record and back.revision == 7
    assert record.key == "acme/i-1" and record.kv_key == "acme.i-1"


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: d.pop("state"), "exactly the fields"),
        (lambda d: d.update(extra=1), "exactly the fields"),
        (lambda d: d.update(v=2), "unknown record format"),
        (lambda d: d.update(state="DONE"), "unknown state"),
        (lambda d: d.update(attempts=-1), "attempts"),
        (lambda d: d.update(attempts=True), "attempts"),
        (lambda d: d.update(id="a.b"), "id must be"),
        (lambda d: d.update(tenant=""), "tenant must be"),
        (lambda d: d.update(created="now"), "created must be"),
        (lambda d: d.update(params={"x": [1]}), "param x"),
    ],
)
def test_a_record_that_is_not_exactly_the_shape_is_refused(mutate, problem):
    data = received().to_dict()
    mutate(data)
    with pytest.raises(InvalidInput) as caught:
        IntentRecord.from_dict(data)
    assert caught.value.code is ReasonCode.INTENT_INVALID and problem in caught.value.detail


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "x" * 129, "ü", None, 3, "a*", "a>", "i-1\n"])
def test_ids_are_tokens_of_a_fixed_charset(bad):
    with pytest.raises(InvalidInput):
        check_id(bad)


@pytest.mark.parametrize("bad", ["", "a.b", "x" * 65, None, "*"])
def test_tenants_are_tokens_of_a_fixed_charset(bad):
    with pytest.raises(InvalidInput):
        check_tenant(bad)


@pytest.mark.parametrize(
    "bad",
    [[], {"": 1}, {"1a": 1}, {"a": None}, {"a": [1]}, {"a": {}}, {"a": math.inf}, {"a": "x" * 1025},
     {f"k{i}": 1 for i in range(33)}, {"a": 2**63}],
)  # fmt: skip
def test_params_are_few_small_scalars(bad):
    with pytest.raises(InvalidInput):
        check_params(bad)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_record_or_a_coded_refusal(data):
    try:
        IntentRecord.from_bytes(data)
    except InvalidInput as exc:
        assert exc.code is ReasonCode.INTENT_INVALID


@given(
    st.dictionaries(
        st.sampled_from(sorted(IntentRecord(id="i", tenant="t", type="t").to_dict())),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers()),
    )
)
def test_any_field_values_are_a_record_or_a_coded_refusal(change):
    data = received().to_dict()
    data.update(change)
    try:
        IntentRecord.from_dict(data)
    except InvalidInput as exc:
        assert exc.code is ReasonCode.INTENT_INVALID
