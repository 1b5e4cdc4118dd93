"""One handler call outside the drain's hot loop: for signals, probes, the
stop's drain and eager dispatch. (The drain's loop, runtime/drain.py, does
the same for a plain `def` handler inline: that loop is the tell path.)

A plain `def` handler cannot suspend, so its envelope's deadline was checked
when it was taken. An `async def` handler runs in a cancel scope at its
envelope's deadline, or the stop's if that is earlier. Each returns the
crash's error if the handler crashed (the caller then calls `cell.down`),
None otherwise: the envelope has ended (runtime/endings.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from exoarmur.runtime.batch import handle_run, mark_taken
from exoarmur.runtime.endings import answer, answered_with, crashed, settle
from exoarmur.runtime.errors import ExoarmurError

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell
    from exoarmur.runtime.envelope import Envelope

__all__ = ["handle_async", "handle_sync"]


def handle_sync(cell: Cell, fn: Callable[..., Any], env: Envelope) -> ExoarmurError | None:
    reply = env.reply_to
    if reply is not None:
        reply.started = True
    cell.context.envelope = env
    cell.mailbox.processed += 1
    try:
        result = fn(cell.actor, env.message)
    except Exception as exc:
        if isinstance(exc, ExoarmurError) and answered_with(cell, env, exc):
            return None
        return crashed(cell, env, exc)
    answer(cell, env, result)
    return None


async def handle_async(cell: Cell, fn: Callable[..., Any], env: Envelope) -> ExoarmurError | None:
    if type(env.message) in cell.batched:  # outside a run (a probe, a stop): a run of one
        mark_taken(cell, [env])
        return await handle_run(cell, fn, [env])
    reply = env.reply_to
    if reply is not None:
        reply.started = True
    cell.context.envelope = env
    cell.mailbox.processed += 1
    deadline = env.deadline if env.deadline < cell.stop_deadline else cell.stop_deadline
    result = None  # stays None if the scope cuts the handler
    try:
        with anyio.CancelScope(deadline=deadline) as scope:
            cell.scope = scope
            try:
                result = await fn(cell.actor, env.message)
            finally:
                cell.scope = None
    except Exception as exc:
        if isinstance(exc, ExoarmurError) and answered_with(cell, env, exc):
            return None
        return crashed(cell, env, exc)
    settle(cell, env, scope, result, instance_gone=cell.instance_dead)  # a concurrent handler may crash it
    return None
