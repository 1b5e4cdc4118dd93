"""Batch handlers (`@handles(M, batch=True)`): one call for a run of envelopes.

The drain takes the envelope at the head and every following one of the same
message type (up to `throughput`), dead-lettering any that expired, and calls
the handler once with their messages, in mailbox order.

- Alone, the call holds the mailbox, under one cancel scope at the earliest of
  their deadlines (or the stop deadline): for cheap, ordered work such as
  handing publishes to a client's buffer.
- With `concurrent=True` the run is one concurrent handler (runtime/inflight.py)
  under the latest of their deadlines: many I/O calls started in one go, one
  task and one scope for all. Each asker still waits no longer than its own
  deadline (its reply's own timer).

Its outcome: the value to each asker (with `per_item=True`, the value at its
index; an ExoarmurError there is that asker's coded answer; a Deferred from
`context.defer_each()` answers its asker on its own, as soon as it can), or a
coded error raised to each (audited once per asker), or a crash (ACTOR_CRASHED
to each, one crash for the parent), or a timeout (each asker gets the
message's timeout code; the stop's code if the stop cut it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import outcome

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.deferred import Deferred
from exoarmur.runtime.endings import answered_with, crashed, dead_letter, overran
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ActorCrashed, ExoarmurError
from exoarmur.runtime.messages import timeout_category

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell

__all__ = ["bad_results", "handle_run", "mark_taken", "run_raised", "settle_run", "take_run"]


def take_run(cell: Cell, first: Envelope) -> list[Envelope]:
    """`first` and the envelopes of its type right behind it, unexpired (at
    most `throughput`); each marked as taken."""
    mailbox = cell.mailbox
    queue = mailbox.queue
    kind = type(first.message)
    run = [first]
    now = cell.system.now()
    while queue and len(run) < cell.throughput and type(queue[0].message) is kind:
        env = queue.popleft()
        if mailbox.waiters:
            mailbox.hand_over_slot()
        if env.deadline <= now:
            mailbox.expired += 1
            dead_letter(cell, env, ReasonCode.DEADLINE_EXCEEDED)
            continue
        run.append(env)
    mark_taken(cell, run)
    return run


def mark_taken(cell: Cell, run: list[Envelope]) -> None:
    for env in run:
        if env.reply_to is not None:
            env.reply_to.started = True
    cell.mailbox.processed += len(run)


async def handle_run(cell: Cell, fn: Callable[..., Any], run: list[Envelope]) -> ExoarmurError | None:
    """Run the batch handler on `run` (taken), holding the mailbox, under the
    run's earliest deadline; the crash's error if it crashed."""
    earliest = min(run, key=_deadline)
    cell.context.envelope = earliest  # sends from the handler inherit the earliest deadline
    cell.context.run = run
    deadline = min(earliest.deadline, cell.stop_deadline)
    result = None
    try:
        with anyio.CancelScope(deadline=deadline) as scope:
            cell.scope = scope
            try:
                result = await fn(cell.actor, [env.message for env in run])
            finally:
                cell.scope = None
                cell.context.run = None
    except Exception as exc:
        return run_raised(cell, run, exc)
    bad = bad_results(cell, run, result)
    if bad is not None and not scope.cancel_called:
        return run_raised(cell, run, bad)
    settle_run(cell, run, scope, result, bound=earliest.deadline, instance_gone=cell.instance_dead)
    return None


def _deadline(env: Envelope) -> float:
    return env.deadline


def bad_results(cell: Cell, run: list[Envelope], result: Any) -> Exception | None:
    """A per-item handler that did not return one result per message: a bug
    in it, so a crash."""
    if type(run[0].message) not in cell.per_item:
        return None
    if isinstance(result, list | tuple) and len(result) == len(run):
        return None
    return TypeError(f"a per-item batch handler returned {type(result).__name__}, not {len(run)} results")


def run_raised(cell: Cell, run: list[Envelope], exc: Exception) -> ExoarmurError | None:
    """A coded error raised by the handler is every asker's answer; anything
    else (or ActorCrashed) is a crash: the error the parent hears of."""
    if isinstance(exc, ExoarmurError) and not isinstance(exc, ActorCrashed):
        answered_with(cell, run[0], exc)
        for env in run[1:]:
            _tell_each(cell, env, exc, kind="answered")
        return None
    error = crashed(cell, run[0], exc)  # the one crash the parent hears of
    for env in run[1:]:
        _tell_each(cell, env, error, kind="crashed")
    return error


def settle_run(
    cell: Cell, run: list[Envelope], scope: anyio.CancelScope, result: Any, *, bound: float, instance_gone: bool
) -> None:
    """After the handler's scope: each asker's answer, or why it was cut.
    The scope's deadline says whose deadline it was: the run's (`bound`) or
    the stop's."""
    if scope.cancel_called:
        if instance_gone:
            code = ReasonCode.ACTOR_CRASHED
        elif scope.deadline < bound:
            code = cell.mailbox.closed or ReasonCode.SHUTTING_DOWN
        else:
            code = timeout_category(type(run[0].message)).code
        for env in run:
            overran(cell, env, code)
        return
    results = result if type(run[0].message) in cell.per_item else (result,) * len(run)
    late = 0
    for env, value in zip(run, results, strict=True):
        if type(value) is Deferred:
            continue  # answered on its own (context.defer_each)
        reply = env.reply_to
        if isinstance(value, ExoarmurError):
            cell.system.audit_error(value, kind="answered", path=cell.path, envelope=env)
            if reply is not None and not reply.resolve(outcome.Error(value)):
                late += 1
        elif reply is not None and not reply.resolve(outcome.Value(value)):
            late += 1
    cell.system.late_replies += late


def _tell_each(cell: Cell, env: Envelope, error: ExoarmurError, *, kind: str) -> None:
    """The run's failure to one more asker, with its own audit event."""
    error = cell.system.failure(kind, error.code, path=cell.path, envelope=env, detail=error.detail)
    reply = env.reply_to
    if reply is not None and not reply.resolve(outcome.Error(error)):
        cell.system.late_replies += 1
