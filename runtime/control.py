"""The control lane: what an actor handles before its mail, whatever its
mailbox's capacity (runtime/mailbox.py keeps it apart and small).

It holds three kinds of entries:
- STOP: a marker that wakes an idle drain for a stop or a suspend (the
  cell's state says which);
- a `Signal`: a message from the runtime itself (a child's crash or exit for
  its supervisor, a timer's wake-up), handled through the actor's handlers.
  Each is addressed to one instance (runtime/inbox.py) and never reaches the
  next: if that instance has ended by the time the signal would be handled,
  it is dead-lettered with ACTOR_STOPPED (as an OTP process's exit signals
  die with it);
- a `CallbackCrash`: an `ask_then` callback of this instance raised, so the
  instance crashes here, in its own drain, not in the stack that resolved
  the reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import outcome

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.deferred import CallbackCrash
from exoarmur.runtime.endings import crashed, dead_letter
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.handling import handle_async, handle_sync
from exoarmur.runtime.instances import alive
from exoarmur.runtime.lifecycle import RUNNING, STOPPED

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell
    from exoarmur.runtime.errors import ExoarmurError

__all__ = ["STOP", "Signal", "callback_crashed", "dead_letter_signals", "signal", "take_control"]

STOP = "stop"


class Signal:
    """A control-lane entry: a signal's envelope, for one instance."""

    __slots__ = ("envelope", "instance")

    def __init__(self, envelope: Envelope, instance: Any | None) -> None:
        self.envelope = envelope
        self.instance = instance


def signal(cell: Cell, message: Any, *, instance: Any) -> None:
    """Deliver a runtime signal for `instance` ahead of the mail, whatever the
    mailbox's capacity. A signal to a stopped actor is dead-lettered."""
    if type(message) not in cell.dispatch:
        raise TypeError(f"{cell.actor_type.__qualname__} has no handler for signal {message!r}")
    env = Envelope(message=message, deadline=cell.system.now() + cell.system.default_seconds(type(message)))
    cell.mailbox.accepted += 1  # counted like any envelope: it ends exactly once
    if cell.state is STOPPED:
        dead_letter(cell, env, ReasonCode.ACTOR_STOPPED)
        return
    cell.mailbox.push_control(Signal(env, instance))
    cell.schedule()


def ended(cell: Cell, entry: Signal) -> bool:
    """The instance `entry` was for has ended (crashed, wound down, replaced):
    it is dead-lettered, and True. A stopping instance has not ended yet: it
    handles what reaches it until its stop is done."""
    if entry.instance is cell.actor and not cell.instance_dead:
        return False
    dead_letter(cell, entry.envelope, ReasonCode.ACTOR_STOPPED, "a signal to an instance that has ended")
    return True


async def take_control(cell: Cell) -> None:
    """Handle the control lane: STOP markers (the state already says
    STOPPING or the suspend is set), callback crashes, and signals, which
    go through the handlers before any mail."""
    control = cell.mailbox.control
    while control:
        entry = control.popleft()
        if entry is STOP:
            continue
        if type(entry) is CallbackCrash:
            if alive(cell, entry.actor):
                cell.down(_callback_crash_error(cell, entry))
                return
            _callback_crashed_after_end(cell, entry)  # its instance crashed already
            continue
        if ended(cell, entry):
            continue
        env = entry.envelope
        fn, is_async = cell.dispatch[type(env.message)]
        crash = await handle_async(cell, fn, env) if is_async else handle_sync(cell, fn, env)
        if crash is not None:
            if cell.state is RUNNING:
                cell.down(crash)
            return


def dead_letter_signals(cell: Cell, code: ReasonCode) -> None:
    control = cell.mailbox.control
    while control:
        entry = control.popleft()
        if type(entry) is Signal:
            dead_letter(cell, entry.envelope, code)


def callback_crashed(cell: Cell, crash: CallbackCrash) -> None:
    """An `ask_then` callback of this actor raised (or a `call_as_self`
    function, or a signal handled at once): the instance that asked crashes
    when its drain next looks at the control lane, not in the stack of
    whoever resolved the reply. Already ended: only audited."""
    if not alive(cell, crash.actor):
        _callback_crashed_after_end(cell, crash)
        return
    cell.mailbox.push_control(crash)
    cell.schedule()


def _callback_crashed_after_end(cell: Cell, crash: CallbackCrash) -> None:
    """Audited, and the asker of the envelope it was for is answered with
    the crash (the callback did not answer it); nothing else crashes."""
    error = cell.system.failure(
        "crashed",
        ReasonCode.ACTOR_CRASHED,
        path=cell.path,
        envelope=crash.envelope,
        detail=f"ask_then callback after its instance ended: {crash.exc!r}",
    )
    reply = crash.envelope.reply_to if crash.envelope is not None else None
    if reply is not None:
        reply.resolve(outcome.Error(error))


def _callback_crash_error(cell: Cell, crash: CallbackCrash) -> ExoarmurError:
    if crash.envelope is not None:
        return crashed(cell, crash.envelope, crash.exc)
    cell.instance_dead = True
    error = cell.system.failure(
        "crashed", ReasonCode.ACTOR_CRASHED, path=cell.path, detail=f"ask_then callback: {crash.exc!r}"
    )
    error.__cause__ = crash.exc
    return error

