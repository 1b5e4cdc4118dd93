"""Concurrent handlers in flight: what lets one actor keep many I/O calls open.

A handler marked `@handles(M, concurrent=True)` (an `async def`) does not hold
the mailbox while it awaits: the drain starts it in a task of its own, in the
actor's host, and takes the next envelope. This is Akka's `pipeTo` and
`mapAsync(parallelism)` in one declaration; a NATS connection needs it to keep
64 requests open at once.

Invariants:
- At most `Actor.concurrency` run at once. When that many are in flight the
  drain takes nothing more until one ends, so the mailbox fills and its policy
  pushes back on senders (never an unbounded pile of tasks).
- Each runs in its own cancel scope at its envelope's deadline, or the stop
  deadline if that is earlier (`tighten`). A concurrent batch handler runs
  one job for a run of envelopes, at the latest of their deadlines.
- They belong to one actor instance: a crash (of any handler) or a suspend
  cancels them all, and their askers learn `ACTOR_CRASHED`.
- Worker tasks are reused: one that finished lingers a scheduler pass or two
  and takes the next job from `jobs`, so a steady stream of requests does not
  pay a task spawn each (anyio's spawn is the dearest step on this path).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import outcome

from exoarmur.runtime.batch import bad_results, run_raised, settle_run
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.context import ActorContext
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.endings import answered_with, cancelled, crashed, settle
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ActorCrashed, ExoarmurError
from exoarmur.runtime.instances import alive

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell

__all__ = ["InFlight", "start_concurrent"]

# Scheduler passes a worker waits for the next job before it ends.
WORKER_LINGER_PASSES = 2


class InFlight:
    """The cancel scopes of one cell's concurrent handlers now running."""

    __slots__ = ("limit", "_scopes", "_changed", "jobs", "idle")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._scopes: set[anyio.CancelScope] = set()
        self._changed: anyio.Event | None = None  # set when one ends
        # Started but not yet picked up by a lingering worker, and how many linger.
        self.jobs: deque[tuple[Any, ...]] = deque()
        self.idle = 0

    def __len__(self) -> int:
        return len(self._scopes)

    @property
    def full(self) -> bool:
        return len(self._scopes) >= self.limit

    def add(self, scope: anyio.CancelScope) -> None:
        self._scopes.add(scope)

    def discard(self, scope: anyio.CancelScope) -> None:
        self._scopes.discard(scope)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for_room(self) -> None:
        while self.full:
            await self._wait_change()

    async def wait_empty(self) -> None:
        while self._scopes:
            await self._wait_change()

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def tighten(self, deadline: float) -> None:
        """No handler in flight runs past `deadline` (a stop or a suspend)."""
        for scope in self._scopes:
            if deadline < scope.deadline:
                scope.deadline = deadline

    def cancel_all(self) -> None:
        for scope in self._scopes:
            scope.cancel()


def start_concurrent(cell: Cell, fn: Callable[..., Any], env: Envelope | list[Envelope]) -> None:
    """Start a concurrent handler in the host, for one envelope or a run of
    them (a batch handler's, already taken: runtime/batch.py); its scope
    counts at once."""
    if type(env) is list:
        deadline = max(each.deadline for each in env)
    else:
        reply = env.reply_to
        if reply is not None:
            reply.started = True
        cell.mailbox.processed += 1
        deadline = env.deadline
    if cell.stop_deadline < deadline:
        deadline = cell.stop_deadline
    scope = anyio.CancelScope(deadline=deadline)
    inflight = cell.inflight
    assert inflight is not None
    inflight.add(scope)
    job = (fn, env, cell.actor, scope)
    if inflight.idle:
        inflight.jobs.append(job)  # a lingering worker takes it
    else:
        cell.start_soon(_worker, cell, job, name=cell.path)


async def _worker(cell: Cell, job: tuple[Any, ...]) -> None:
    """Run `job`, then linger for the next one (WORKER_LINGER_PASSES passes)."""
    inflight = cell.inflight
    assert inflight is not None
    checkpoint = cell.system.backend.checkpoint
    try:
        while True:
            await _run(cell, *job)
            inflight.idle += 1
            try:
                for _ in range(WORKER_LINGER_PASSES):
                    if inflight.jobs:
                        break
                    await checkpoint()
                if not inflight.jobs:
                    return
                job = inflight.jobs.popleft()
            finally:
                inflight.idle -= 1
    except BaseException:
        # The host is going away: jobs no worker will take end now, coded.
        while inflight.jobs and not inflight.idle:
            _, env, _, scope = inflight.jobs.popleft()
            inflight.discard(scope)
            for each in env if type(env) is list else (env,):
                cancelled(cell, each)
        raise


async def _run(
    cell: Cell, fn: Callable[..., Any], env: Envelope | list[Envelope], actor: Any, scope: anyio.CancelScope
) -> None:
    if type(env) is list:
        await _run_batch(cell, fn, env, actor, scope)
        return
    inflight = cell.inflight
    assert inflight is not None
    context = ActorContext(cell)  # this task's view: its own envelope
    context.envelope = env
    CURRENT.set(context)
    result = None  # stays None if the scope cuts the handler
    try:
        with scope:
            try:
                result = await fn(actor, env.message)
            except Exception as exc:
                if not (isinstance(exc, ExoarmurError) and answered_with(cell, env, exc)):
                    _crashed(cell, env, exc, actor)
                return
    except BaseException:
        cancelled(cell, env)  # the host is going away
        raise
    finally:
        inflight.discard(scope)
    # A sibling's crash may have ended the instance meanwhile.
    settle(cell, env, scope, result, instance_gone=actor is not cell.actor or cell.instance_dead)


async def _run_batch(
    cell: Cell, fn: Callable[..., Any], run: list[Envelope], actor: Any, scope: anyio.CancelScope
) -> None:
    """A concurrent batch handler on its run (runtime/batch.py); sends
    from it inherit the run's latest deadline."""
    inflight = cell.inflight
    assert inflight is not None
    context = ActorContext(cell)
    context.envelope = max(run, key=_deadline)
    context.run = run
    CURRENT.set(context)
    result = failure = None
    try:
        with scope:
            try:
                result = await fn(actor, [env.message for env in run])
            except Exception as exc:
                failure = exc
            else:
                failure = bad_results(cell, run, result)
    except BaseException:
        for env in run:
            cancelled(cell, env)  # the host is going away
        raise
    finally:
        inflight.discard(scope)
    if failure is not None and not scope.cancel_called:
        if isinstance(failure, ExoarmurError) and not isinstance(failure, ActorCrashed):
            run_raised(cell, run, failure)
        elif alive(cell, actor):
            error = run_raised(cell, run, failure)
            assert error is not None  # not a coded answer: a crash
            cell.down(error)
        else:
            for env in run:
                _crashed(cell, env, failure, actor)
        return
    gone = actor is not cell.actor or cell.instance_dead
    bound = context.envelope.deadline
    # Timers made in the handler keep its context until they are due
    # (asyncio keeps a cancelled TimerHandle's): it keeps no envelope.
    context.envelope = context.run = None
    settle_run(cell, run, scope, result, bound=bound, instance_gone=gone)


def _deadline(env: Envelope) -> float:
    return env.deadline


def _crashed(cell: Cell, env: Envelope, exc: Exception, actor: Any) -> None:
    if alive(cell, actor):
        cell.down(crashed(cell, env, exc))
        return
    # The instance is gone already (crashed, suspended or stopping): this
    # asker learns of the crash; the parent has heard of it once.
    reply = env.reply_to
    if reply is None or not reply.done:
        error = cell.system.failure(
            "crashed", ReasonCode.ACTOR_CRASHED, path=cell.path, envelope=env, detail=f"{type(exc).__name__}: {exc}"
        )
        if reply is not None:
            reply.resolve(outcome.Error(error))
