"""The transition table: every edge it has is allowed, every other refused."""

from __future__ import annotations

import itertools

import pytest

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.intent import IntentActor
from exoarmur.actors.intents.states import BEFORE_EFFECT, IN_EFFECT, TERMINAL, TRANSITIONS, IntentState, allowed
from exoarmur.runtime import Conflict, ReasonCode

S = IntentState
EDGES = {
    (S.RECEIVED, S.AWAITING_APPROVAL), (S.RECEIVED, S.APPROVED), (S.RECEIVED, S.DENIED),
    (S.RECEIVED, S.EXPIRED), (S.RECEIVED, S.KILLED), (S.RECEIVED, S.FAILED),
    (S.AWAITING_APPROVAL, S.APPROVED), (S.AWAITING_APPROVAL, S.DENIED),
    (S.AWAITING_APPROVAL, S.EXPIRED), (S.AWAITING_APPROVAL, S.KILLED), (S.AWAITING_APPROVAL, S.FAILED),
    (S.APPROVED, S.EXECUTING), (S.APPROVED, S.DENIED), (S.APPROVED, S.EXPIRED),
    (S.APPROVED, S.KILLED), (S.APPROVED, S.FAILED),
    (S.EXECUTING, S.EXECUTING), (S.EXECUTING, S.SUCCEEDED), (S.EXECUTING, S.FAILED), (S.EXECUTING, S.KILLED),
    (S.SUCCEEDED, S.REVERTING),
    (S.REVERTING, S.REVERTING), (S.REVERTING, S.REVERTED), (S.REVERTING, S.FAILED),
}  # fmt: skip


def test_the_table_has_exactly_the_documented_edges():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == EDGES
    assert set(TRANSITIONS) == set(IntentState)


@pytest.mark.parametrize(("before", "after"), list(itertools.product(IntentState, IntentState)))
def test_every_pair_is_allowed_exactly_when_it_is_an_edge(before, after):
    record = IntentRecord(id="i", tenant="t", type="noop", state=before, updated=5.0)
    assert allowed(before, after) == ((before, after) in EDGES)
    if (before, after) in EDGES:
        moved = record.moved(after, now=7.0, code="X", detail="d")
        assert (moved.state, moved.code, moved.detail, moved.updated) == (after, "X", "d", 7.0)
    else:
        with pytest.raises(Conflict) as caught:
            record.moved(after, now=7.0)
        assert caught.value.code is ReasonCode.INTENT_STATE_INVALID


def test_only_received_starts_a_record():
    assert [s for s in IntentState if allowed(None, s)] == [S.RECEIVED]


def test_the_groups_partition_the_states():
    assert BEFORE_EFFECT | IN_EFFECT | TERMINAL == set(IntentState)
    assert not (BEFORE_EFFECT & IN_EFFECT or BEFORE_EFFECT & TERMINAL or IN_EFFECT & TERMINAL)
    # Only SUCCEEDED leaves the terminal group (a revert).
    assert {s for s in TERMINAL if TRANSITIONS[s]} == {S.SUCCEEDED}


def test_an_attempt_counts_and_time_never_goes_back():
    record = IntentRecord(id="i", tenant="t", type="noop", state=S.APPROVED, updated=10.0)
    moved = record.moved(S.EXECUTING, now=3.0, attempt=True)
    assert moved.attempts == 1 and moved.updated == 10.0
    assert moved.moved(S.EXECUTING, now=11.0, attempt=True).attempts == 2


def test_the_intent_actor_has_one_step_for_every_state_that_is_not_terminal():
    assert set(IntentActor.STEPS) == set(IntentState) - TERMINAL
