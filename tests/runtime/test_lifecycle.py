"""The actor lifecycle table (runtime/lifecycle.py): every pair of states is
either a transition in the table or refused, and each transition in the
table is one the kernel makes (the tests named beside it)."""

from __future__ import annotations

import itertools

import pytest

from exoarmur.runtime import ReasonCode
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


class Holding:
    """A parent that records each crash and leaves the decision to the test."""

    def __init__(self) -> None:
        self.crashes = 0
        self.exits = 0

    def child_crashed(self, child, error) -> None:
        self.crashes += 1

    def child_exited(self, child) -> None:
        self.exits += 1

    def child_reported(self, child, code, detail) -> None:
        pass

    def child_probed(self, child, ok) -> None:
        pass


@pytest.mark.anyio
async def test_the_kernel_makes_each_transition_of_the_table():
    """Driven through the Supervised handle: RUNNING -> SUSPENDED (a crash) ->
    RUNNING (resume) -> SUSPENDED (a wind-down) -> STOPPING -> STOPPED (a stop
    of a suspended actor), and RUNNING -> STOPPING -> STOPPED; each step's
    state is what the table allows next, and nothing else is reachable."""
    from exoarmur.runtime import ActorSystem, ExoarmurError
    from tests.runtime.support import Add, Counter, Crash, wait_until

    parent = Holding()
    seen = []
    async with ActorSystem() as system:
        host = await system.open_host("h")
        child = await system.spawn_child(Counter, name="c", parent=parent, host=host)
        seen.append(child.state)
        with pytest.raises(ExoarmurError):
            await child.ref.ask(Crash())
        await wait_until(lambda: parent.crashes == 1)
        seen.append(child.state)
        child.resume()
        seen.append(child.state)
        assert await child.ref.ask(Add(1)) == 1
        await child.suspend(deadline=system.now() + 1.0)
        seen.append(child.state)
        child.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=system.now() + 1.0)
        seen.append(child.state)
        await child.wait_stopped()
        seen.append(child.state)
        other = await system.spawn_child(Counter, name="d", parent=parent, host=host)
        other.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=system.now() + 1.0)
        await other.wait_stopped()
        assert other.state is CellState.STOPPED and parent.exits == 2
    assert seen == [
        CellState.RUNNING,
        CellState.SUSPENDED,
        CellState.RUNNING,
        CellState.SUSPENDED,
        CellState.STOPPING,
        CellState.STOPPED,
    ]
    assert all(later in TRANSITIONS[earlier] for earlier, later in zip(seen, seen[1:]))
