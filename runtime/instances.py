"""An actor's instances: a cell keeps its mailbox across restarts, and makes a
fresh instance of its class each time its parent resumes it.

- `new_instance`: the class called with the spawn's kwargs (its `started`
  hook not run yet); a failure in __init__ is audited, keeping a coded
  error's code.
- `run_started`: the `started` hook, under the DEFAULT deadline; a coded
  error keeps its code, anything else is ACTOR_CRASHED, running out of time
  is DEADLINE_EXCEEDED.
- `fresh`: both; `start_failed` says the last fresh instance failed to start
  (not in a handler): the system as parent stops such an actor.
- `run_stopping`: the `stopping` hook, by a deadline; a crash in it is
  audited and ends nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.errors import ActorCrashed, ExoarmurError
from exoarmur.runtime.lifecycle import RUNNING
from exoarmur.runtime.timeouts import TimeoutCategory

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell

__all__ = ["alive", "fresh", "new_actor", "new_instance", "replaced_at_once", "run_started", "run_stopping"]


def new_actor(cell: Cell) -> Any:
    actor = cell.actor_type(**cell.kwargs)
    actor.context = cell.context
    return actor


def alive(cell: Cell, actor: Any) -> bool:
    """`actor` is the instance running now (no crash, suspend or stop since)."""
    return actor is cell.actor and not cell.instance_dead and cell.state is RUNNING


def new_instance(cell: Cell) -> ExoarmurError | None:
    """A new instance in place of the dead one, its `started` hook not run
    yet; the (audited) error if its __init__ failed."""
    try:
        cell.actor = new_actor(cell)
    except ExoarmurError as exc:
        cell.instance_dead = cell.start_failed = True
        cell.system.audit_error(exc, kind="crashed", path=cell.path, envelope=None)
        return exc  # a coded failure keeps its code, as in `started`
    except Exception as exc:
        cell.instance_dead = cell.start_failed = True
        return cell.system.failure("crashed", ReasonCode.ACTOR_CRASHED, path=cell.path, detail=f"restart: {exc!r}")
    cell.instance_dead = cell.start_failed = False
    return None


async def fresh(cell: Cell) -> ExoarmurError | None:
    """A new instance with its `started` hook run; the (audited) error if
    building it or its hook failed."""
    failure = new_instance(cell)
    if failure is not None or not cell.actor_type._has_started:
        return failure
    try:
        await run_started(cell)
    except ExoarmurError as exc:
        cell.instance_dead = cell.start_failed = True
        return exc  # run_started emitted its audit event
    return None


async def run_started(cell: Cell) -> None:
    """Run the `started` hook under the DEFAULT deadline."""
    if not cell.actor_type._has_started:
        return
    system = cell.system
    # The hook runs as this actor (its sends are its own, with their own
    # deadlines), not as whoever spawned it: OTP's init runs in the new process.
    token = CURRENT.set(cell.context)
    with anyio.CancelScope(deadline=system.now() + system.timeouts[TimeoutCategory.DEFAULT]) as scope:
        try:
            await cell.actor.started()
        except ExoarmurError as exc:
            if isinstance(exc, ActorCrashed):
                raise system.failure("crashed", exc.code, path=cell.path, detail=f"started: {exc.detail}") from exc
            # A coded failure keeps its code (TIMEOUT_NATS_CONNECT says more
            # than ACTOR_CRASHED); audited once, here.
            system.audit_error(exc, kind="crashed", path=cell.path, envelope=None)
            raise
        except Exception as exc:
            raise system.failure(
                "crashed", ReasonCode.ACTOR_CRASHED, path=cell.path, detail=f"started: {exc!r}"
            ) from exc
        finally:
            CURRENT.reset(token)
    if scope.cancelled_caught:
        raise system.failure("deadline", ReasonCode.DEADLINE_EXCEEDED, path=cell.path, detail="started hook")


async def run_stopping(cell: Cell, *, deadline: float) -> None:
    """The instance's `stopping` hook by `deadline`, unless it has none or
    the instance is dead; a crash in it is audited, nothing more."""
    if not cell.actor_type._has_stopping or cell.instance_dead:
        return
    with anyio.CancelScope(deadline=deadline):
        try:
            await cell.actor.stopping()
        except Exception as exc:
            cell.system.failure("crashed", ReasonCode.ACTOR_CRASHED, path=cell.path, detail=f"stopping: {exc!r}")


def replaced_at_once(cell: Cell) -> bool:
    """After a crash in the drain's turn: True if its parent resumed it at
    once (in this stack) and the fresh instance was made here, so the turn
    goes on with it. False when something must come first (a control
    signal, a wind-down, probes, a `started` hook to await, a full
    in-flight table): nothing is done here, the loop top sees to it. False
    too when __init__ failed: a crash of its own, decided by the parent
    again."""
    if (
        cell.state is not RUNNING
        or cell.mailbox.control
        or cell.suspend_deadline is not None
        or (cell.gate is not None and cell.gate.pending)
        or cell.actor_type._has_started
        or (cell.inflight is not None and cell.inflight.full)
    ):
        return False
    failure = new_instance(cell)
    if failure is not None:
        cell.down(failure)
        return False
    return True
