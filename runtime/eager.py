"""Eager dispatch: an envelope handled at once, in the sender's stack, when the
drain would take it next anyway and the handler cannot suspend.

`handle_now` (an `ask`): the target is idle (running, nothing queued, in hand
or under way), its mailbox open, and its handler for the message a plain
`def`. It then gives exactly what the drain would have given (answer, coded
answer, crash), without the scheduler pass and the drain task; tells always
queue. `signal_now` does the same for a runtime signal (a supervisor's
decision after its child's crash).

Invariants: while a handler runs here, `scheduled` is set, so sends made
meanwhile to the same actor only queue (a drain is scheduled for them after);
at most EAGER_DEPTH eager calls nest in one stack (an eager handler asking
eagerly), past it the ask queues as usual.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.control import callback_crashed, signal
from exoarmur.runtime.deferred import CallbackCrash
from exoarmur.runtime.endings import ask_expired, cancelled
from exoarmur.runtime.handling import handle_sync
from exoarmur.runtime.lifecycle import RUNNING, STOPPING

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell
    from exoarmur.runtime.envelope import Envelope

__all__ = ["EAGER_DEPTH", "handle_now", "idle", "signal_now"]

EAGER_DEPTH = 8


def idle(cell: Cell) -> bool:
    """Running, with nothing queued, in hand or under way: no drain, no
    concurrent handler or job. What the drain would do next is whatever
    comes now."""
    mailbox = cell.mailbox
    inflight = cell.inflight
    return (
        not cell.scheduled
        and cell.state is RUNNING
        and not cell.instance_dead
        and not mailbox.control
        and not mailbox.queue
        and (inflight is None or not (len(inflight) or inflight.jobs))
    )


def handle_now(cell: Cell, env: Envelope) -> bool:
    """Handle the ask `env` at once if the drain would take it next and its
    handler is a plain `def`; False (nothing done: offer it) otherwise."""
    message_type = type(env.message)
    fn, is_async = cell.dispatch[message_type]
    system = cell.system
    if (
        is_async
        or cell.mailbox.closed is not None
        or message_type in cell.batched
        or system.eager_depth >= EAGER_DEPTH
        or not idle(cell)
    ):
        return False
    reply = env.reply_to
    # The asker's place among the timers is taken first, as it would be for
    # queued mail: asks the handler makes at the same deadline expire after
    # it (the same faults give the same codes). Its timer is set only if no
    # answer came now.
    place = reply.reserve() if reply is not None else 0
    cell.mailbox.accepted += 1
    cell.scheduled = True  # taken as a drain is: sends meanwhile only queue
    system.eager_depth += 1
    token = CURRENT.set(cell.context)
    try:
        crash = handle_sync(cell, fn, env)
        if crash is not None:
            cell.down(crash)
    except BaseException:
        cancelled(cell, env)  # as the drain answers (KeyboardInterrupt...)
        raise
    finally:
        CURRENT.reset(token)
        cell.context.envelope = None
        system.eager_depth -= 1
        if reply is not None and not reply.done:
            reply.arm(env.deadline, partial(ask_expired, cell, env), place)
        _ran_now(cell)
    return True


def signal_now(cell: Cell, message: Any, *, instance: Any) -> None:
    """A signal handled at once, in the caller's stack, when the actor is
    idle and its handler for it a plain `def`: it runs as this actor, in its
    own context, and an exception crashes the instance through its control
    lane. Otherwise (or if it is for an instance that is not the one
    running) it is queued as `signal` queues it."""
    fn, is_async = cell.dispatch[type(message)]
    if is_async or not idle(cell) or instance is not cell.actor:
        signal(cell, message, instance=instance)
        return
    cell.mailbox.accepted += 1
    cell.mailbox.processed += 1
    cell.scheduled = True  # as handle_now: what comes meanwhile queues
    token = CURRENT.set(cell.context)
    try:
        fn(cell.actor, message)
    except Exception as exc:
        callback_crashed(cell, CallbackCrash(cell.actor, None, exc))
    finally:
        CURRENT.reset(token)
        _ran_now(cell)


def _ran_now(cell: Cell) -> None:
    """After a handler ran in a caller's stack: a drain for what came in the
    meantime (a suspended actor's waits for resume())."""
    cell.scheduled = False
    mailbox = cell.mailbox
    if mailbox.queue or mailbox.control or cell.instance_dead or cell.state is STOPPING:
        cell.schedule()
