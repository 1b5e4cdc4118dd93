"""How an accepted envelope ends: exactly once, with exactly one audit event
for a failure its caller can see.

- handled: the handler's value goes to its asker (`answer`), or the coded
  error the handler raised is its answer (`answered_with`: the actor lives on);
- its handler crashed (`crashed`): ACTOR_CRASHED to its asker;
- its handler was cut at a deadline (`overran`): the message's timeout code,
  or the stop's code if the stop's deadline cut it (`settle` decides);
- never handled (`dead_letter`): recorded with a code, its asker told;
- its asker's own deadline passed first (`ask_expired`): decided by whether a
  handler had taken it, not by which timer ran first;
- cancelled with its host while in hand (`cancelled`): SHUTTING_DOWN.

A reply slot is resolved at most once (runtime/backend.py): whichever ending
resolves it first is the one its asker sees; a later one only counts as a late
reply, and audits nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import outcome

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.deferred import Deferred
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ActorCrashed, ExoarmurError
from exoarmur.runtime.messages import timeout_category

if TYPE_CHECKING:
    from exoarmur.runtime.backend import Reply
    from exoarmur.runtime.contracts import Cell

__all__ = [
    "answer",
    "answered_with",
    "ask_expired",
    "cancelled",
    "crashed",
    "dead_letter",
    "overran",
    "settle",
]


def answer(cell: Cell, env: Envelope, result: Any) -> None:
    """A handler's value to its asker (a Deferred is answered later, on its own)."""
    reply = env.reply_to
    if reply is not None and type(result) is not Deferred and not reply.resolve(outcome.Value(result)):
        cell.system.late_replies += 1


def dead_letter(cell: Cell, env: Envelope, code: ReasonCode, detail: str = "") -> None:
    """Record `env` as never handled. Its asker, if still waiting, gets the
    coded error, and that is the one audit event; otherwise the dead letter is."""
    system = cell.system
    system.record_dead_letter(cell.path, env, code)
    reply: Reply | None = env.reply_to
    if reply is None or not reply.done:
        error = system.failure("dead_letter", code, path=cell.path, envelope=env, detail=detail)
        if reply is not None:
            reply.resolve(outcome.Error(error))


def ask_expired(cell: Cell, env: Envelope, reply: Reply) -> BaseException:
    """The asker's deadline passed first. Taken by a handler: the message's
    category code; else DEADLINE_EXCEEDED."""
    code = timeout_category(type(env.message)).code if reply.started else ReasonCode.DEADLINE_EXCEEDED
    return cell.system.failure("deadline", code, path=cell.path, envelope=env)


def overran(cell: Cell, env: Envelope, code: ReasonCode) -> None:
    """`env`'s handler was cut (or its answer abandoned) with `code`."""
    reply: Reply | None = env.reply_to
    if reply is None or not reply.done:
        error = cell.system.failure("deadline", code, path=cell.path, envelope=env)
        if reply is not None:
            reply.resolve(outcome.Error(error))


def answered_with(cell: Cell, env: Envelope, error: ExoarmurError) -> bool:
    """A coded error raised by a handler is its answer, not a crash (as a
    gen_server replies {error, Reason} and lives on): the asker gets it, it
    is audited once. ActorCrashed is the exception: raising it is crashing.
    True if it was an answer."""
    if isinstance(error, ActorCrashed):
        return False
    cell.system.audit_error(error, kind="answered", path=cell.path, envelope=env)
    reply: Reply | None = env.reply_to
    if reply is not None and not reply.resolve(outcome.Error(error)):
        cell.system.late_replies += 1
    return True


def crashed(cell: Cell, env: Envelope, exc: Exception) -> ExoarmurError:
    """`env`'s handler raised `exc`: the instance is dead, the crash audited,
    the asker told ACTOR_CRASHED (ESCALATED for a supervisor giving up). The
    error its parent will hear of."""
    cell.instance_dead = True
    cell.crashed_on = env
    if isinstance(exc, ActorCrashed) and exc.code is ReasonCode.ESCALATED:
        # A supervisor giving up: the chain of failures is in the detail.
        code, detail = ReasonCode.ESCALATED, exc.detail
    else:
        code, detail = ReasonCode.ACTOR_CRASHED, f"{type(exc).__name__}: {exc}"
    error = cell.system.failure("crashed", code, path=cell.path, envelope=env, detail=detail)
    error.__cause__ = exc
    reply: Reply | None = env.reply_to
    if reply is not None:
        reply.resolve(outcome.Error(error))
    return error


def cancelled(cell: Cell, env: Envelope) -> None:
    """The task handling `env` is being cancelled (its host is going away):
    an asker still waiting gets SHUTTING_DOWN."""
    reply = env.reply_to
    if reply is not None and not reply.done:
        error = cell.system.failure(
            "dead_letter", ReasonCode.SHUTTING_DOWN, path=cell.path, envelope=env, detail="cancelled while handling"
        )
        reply.resolve(outcome.Error(error))


def settle(cell: Cell, env: Envelope, scope: anyio.CancelScope, result: Any, *, instance_gone: bool) -> None:
    """After an async handler's scope: its value to the asker, or why it was
    cut. Out of time, a value returned after that is void; the scope's
    deadline says whose deadline it was: the envelope's or the stop's."""
    if scope.cancel_called:
        if instance_gone:
            overran(cell, env, ReasonCode.ACTOR_CRASHED)
        elif scope.deadline < env.deadline:
            overran(cell, env, cell.mailbox.closed or ReasonCode.SHUTTING_DOWN)
        else:
            overran(cell, env, timeout_category(type(env.message)).code)
        return
    answer(cell, env, result)
