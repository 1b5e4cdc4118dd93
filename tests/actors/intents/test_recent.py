"""RecentKeys: the newest `limit` keys, the oldest let go first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoarmur.actors.intents.recent import RecentKeys


@given(st.lists(st.text(max_size=3), max_size=60), st.integers(min_value=1, max_value=10))
def test_it_never_holds_more_than_its_limit_and_always_the_last_added(keys, limit):
    recent = RecentKeys(limit)
    for key in keys:
        recent.add(key)
        assert key in recent and len(recent) <= limit


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=1, max_value=10))
def test_of_distinct_keys_it_holds_exactly_the_newest(count, limit):
    recent = RecentKeys(limit)
    keys = [f"acme.i-{n}" for n in range(count)]
    for key in keys:
        recent.add(key)
    assert [key for key in keys if key in recent] == keys[-limit:] if count else len(recent) == 0


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        RecentKeys(0)
