"""The actor lifecycle table (runtime/lifecycle.py): every pair of states is
either a transition in the table or refused, and each transition in the
table is one the kernel makes (the tests named beside it)."""

from __future__ import annotations

import itertools

import pytest

from exoarmur.runtime.lifecycle import TRANSITIONS, CellState, check

ALLOWED = {
    # (from, to): where the kernel makes it, and a test that sees it happen
    (CellState.RUNNING, CellState.SUSPENDED): "a crash (test_parent: test_crash_suspends_the_actor...)",
    (CellState.RUNNING, CellState.STOPPING): "a stop (test_actor: test_started_runs_before_first_message...)",
    (CellState.SUSPENDED, CellState.RUNNING): "resume (test_parent: test_resume_makes_a_fresh_instance...)",
    (CellState.SUSPENDED, CellState.STOPPING): "a stop while down (test_parent: test_stopping_a_suspended_actor...)",
    (CellState.STOPPING, CellState.STOPPED): "the stop's end (test_parent: test_shutdown_with_a_suspended_actor...)",
}


def test_the_table_is_exactly_the_allowed_transitions():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == set(ALLOWED)
    assert set(TRANSITIONS) == set(CellState)


@pytest.mark.parametrize("pair", list(itertools.product(CellState, CellState)), ids=lambda p: f"{p[0].name}->{p[1].name}")
def test_every_pair_is_allowed_or_refused(pair):
    source, target = pair
    if pair in ALLOWED:
        check("a", source, target)
    else:
        with pytest.raises(RuntimeError, match="illegal transition"):
            check("a", source, target)


def test_stopped_is_final():
    assert TRANSITIONS[CellState.STOPPED] == frozenset()
