"""The bookkeeping of requests that wait for their intent's end: each is
answered once, by the end, by a poll or when its wait is over."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.waiters import Waiters
from exoarmur.runtime import ExoarmurError, ReasonCode


def record(intent_id: str, revision: int = 1) -> IntentRecord:
    return IntentRecord.received(
        intent_id=intent_id, tenant="acme", type="noop", params={}, owner="p-1", now=0.0, deadline=60.0
    ).at(revision)


def test_an_end_answers_every_waiter_of_its_intent_once():
    waiters = Waiters(limit=10)
    a = waiters.add("r1", "acme.i-1", since=0, until=5)
    b = waiters.add("r2", "acme.i-1", since=0, until=9)
    other = waiters.add("r3", "acme.i-2", since=0, until=5)
    assert waiters.settled(record("i-1")) == [a, b]
    assert waiters.settled(record("i-1")) == []
    assert len(waiters) == 1 and waiters.over(100) == [other] and len(waiters) == 0


def test_an_end_older_than_what_a_waiter_saw_does_not_answer_it():
    """SUCCEEDED at revision 4 told late, to a get that read REVERTING at 5."""
    waiters = Waiters(limit=10)
    saw_reverting = waiters.add("r1", "acme.i-1", since=0, until=5)
    saw_reverting.after = 5
    early = waiters.add("r2", "acme.i-1", since=0, until=5)
    assert waiters.settled(record("i-1", revision=4)) == [early]
    assert waiters.settled(record("i-1", revision=6)) == [saw_reverting]
    assert len(waiters) == 0


def test_a_waiter_is_removed_once_and_says_so():
    waiters = Waiters(limit=10)
    waiter = waiters.add("r1", "acme.i-1", since=0, until=5)
    assert waiters.settled(record("i-1")) == [waiter]
    assert waiters.remove(waiter) is False  # answered already: its caller must not answer again


def test_the_heap_stays_near_the_live_count_however_many_were_removed():
    waiters = Waiters(limit=10**6)
    keep = waiters.add("r", "acme.keep", since=0, until=1)  # ends first: the top stays live
    for n in range(10_000):
        assert waiters.remove(waiters.add(f"r{n}", f"acme.i-{n}", since=0, until=100))
    assert len(waiters._by_end) <= 2 * len(waiters) + 64 and waiters.next_end() == 1
    assert waiters.over(2) == [keep]


def test_a_wait_is_over_at_its_end_not_before():
    waiters = Waiters(limit=10)
    late = waiters.add("r1", "acme.i-1", since=0, until=5)
    soon = waiters.add("r2", "acme.i-2", since=0, until=2)
    assert waiters.next_end() == 2
    assert waiters.over(1.9) == []
    assert waiters.over(2) == [soon]
    assert waiters.next_end() == 5
    waiters.remove(late)
    assert waiters.next_end() is None and waiters.over(10) == []


def test_polls_read_only_the_waiters_that_waited_long_enough():
    waiters = Waiters(limit=10)
    waiters.add("r1", "acme.old", since=0, until=50)
    waiters.add("r2", "acme.new", since=3, until=50)
    assert waiters.older_than(1) == ["acme.old"]


def test_a_request_that_would_wait_past_the_limit_is_refused_before_it_waits():
    waiters = Waiters(limit=1)
    waiters.check_room()
    waiters.add("r1", "acme.i-1", since=0, until=5)
    with pytest.raises(ExoarmurError) as caught:
        waiters.check_room()
    assert caught.value.code is ReasonCode.OVERLOAD_SHED
    waiters.settled(record("i-1"))
    waiters.check_room()


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["add", "end", "over", "remove"]), st.integers(0, 5), st.integers(0, 20))))
def test_every_waiter_is_answered_exactly_once_whatever_the_order(steps):
    waiters = Waiters(limit=1000)
    added, answered, removed = [], [], []
    for step, (op, n, t) in enumerate(steps):
        if op == "add":
            added.append(waiters.add(f"r{step}", f"acme.i-{n}", since=t, until=t + n))
        elif op == "end":
            answered += waiters.settled(record(f"i-{n}"))
        elif op == "over":
            answered += waiters.over(t)
        elif added:
            waiter = added[n % len(added)]
            if waiter not in answered and waiter not in removed:
                removed.append(waiter)
            waiters.remove(waiter)
    answered += waiters.over(10**6)
    assert len(waiters) == 0 and waiters.next_end() is None
    assert sorted(map(id, answered + removed)) == sorted(map(id, added))
    assert len({id(w) for w in answered}) == len(answered)
