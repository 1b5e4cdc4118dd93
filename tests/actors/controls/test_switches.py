"""Kill switches as stored and as asked for: any stored bytes are a switch
(unreadable ones active: fail closed), any request body is a change or one
coded refusal."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.actors.controls.switches import Switch, parse_change, switch_key
from exoarmur.actors.intents.notes import MAX_REASON
from exoarmur.actors.nats import KvEntry
from exoarmur.runtime import ExoarmurError, InvalidInput, ReasonCode

GOOD = {"v": 1, "active": True, "who": "ann@host", "reason": "drill", "at": 1796000000.5}


def entry(value) -> KvEntry:
    return KvEntry("kill.global", value if isinstance(value, bytes) else orjson.dumps(value), 7)


def test_keys_keep_the_global_switch_apart_from_a_tenant_named_global():
    assert switch_key(None) == "kill.global"
    assert switch_key("global") == "kill.tenant.global"
    assert switch_key("acme") == "kill.tenant.acme"


def test_a_switch_never_written_is_clear_and_a_stored_one_reads_back():
    assert Switch.from_entry(None, None) == Switch(tenant=None)
    assert not Switch.from_entry("acme", None).active
    switch = Switch.from_entry("acme", entry(GOOD))
    assert (switch.tenant, switch.active, switch.who, switch.reason, switch.at, switch.revision) == (
        "acme", True, "ann@host", "drill", 1796000000.5, 7
    )  # fmt: skip
    assert Switch.from_entry("acme", KvEntry("k", switch.to_bytes(), 7)) == switch
    assert "tenant acme's kill switch is active (set by ann@host: drill; revision 7)" == switch.says()


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[]",
        {**GOOD, "active": False, "extra": 1},
        {k: v for k, v in GOOD.items() if k != "who"},
        {**GOOD, "v": 2, "active": False},
        {**GOOD, "v": True, "active": False},
        {**GOOD, "active": "no"},
        {**GOOD, "active": False, "at": "yesterday"},
        {**GOOD, "active": False, "at": True},
        {**GOOD, "active": False, "who": 5},
    ],
)
def test_a_value_that_is_not_exactly_a_switch_counts_as_active(value):
    switch = Switch.from_entry(None, entry(value))
    assert switch.active and "unreadable" in switch.reason and switch.revision == 7


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.dictionaries(st.sampled_from(sorted(GOOD) + ["x"]), st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=5)).map(orjson.dumps))
def test_any_stored_bytes_are_a_switch_and_only_an_exact_clear_value_is_clear(data):
    switch = Switch.from_entry("acme", KvEntry("k", data, 3))
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = None
    exact_clear = (
        isinstance(value, dict) and set(value) == set(GOOD) and type(value["v"]) is int and value["v"] == 1
        and value["active"] is False
        and isinstance(value["who"], str) and isinstance(value["reason"], str)
        and type(value["at"]) in (int, float) and value["at"] == value["at"] and abs(value["at"]) != float("inf")
    )  # fmt: skip
    assert switch.active is not exact_clear


def test_a_change_names_its_switch_who_and_why():
    assert parse_change({}) == (None, "", "")
    assert parse_change({"tenant": "acme", "who": "ann@h", "reason": "r"}) == ("acme", "ann@h", "r")


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ([], "object"),
        ({"tenant": "a b"}, "tenant"),
        ({"tenant": 5}, "tenant"),
        ({"scope": "x"}, "unknown field"),
        ({"reason": "r" * (MAX_REASON + 1)}, "reason"),
        ({"who": ["me"]}, "who"),
    ],
)
def test_a_bad_change_is_one_coded_refusal(body, names):
    with pytest.raises(InvalidInput) as caught:
        parse_change(body)
    assert caught.value.code is ReasonCode.CONTROL_INVALID and names in caught.value.detail


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=70) | st.lists(st.integers(), max_size=2), max_size=4))
def test_any_body_is_a_change_or_control_invalid(body):
    try:
        tenant, who, reason = parse_change(body)
    except ExoarmurError as exc:
        assert exc.code is ReasonCode.CONTROL_INVALID
    else:
        assert tenant is None or tenant == body["tenant"]
        assert (who, reason) == (body.get("who", ""), body.get("reason", ""))


def test_a_shared_reading_leaves_an_apply_most_of_its_window():
    """A clear reading answers checks for SWITCHES_SHARED after its reads
    were sent, and an apply must start within KILL_CHECK_FRESH of them: an
    intent cleared by the oldest shared reading still has half its window
    (were it all spent, every apply would be checked again at once)."""
    from exoarmur.runtime.margins import KILL_CHECK_FRESH, SWITCHES_SHARED

    assert 0 <= SWITCHES_SHARED <= KILL_CHECK_FRESH / 2
