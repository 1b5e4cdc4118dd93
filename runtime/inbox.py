"""An instance's inbox: how code outside an actor's handlers (a child's link to
its supervisor, a timer the instance started) sends it runtime signals.

    inbox = self.context.inbox()      # in a handler or hook: this instance's
    inbox.signal(RestartDue(ticket))  # later, from elsewhere

A signal goes through the control lane, ahead of the mail (runtime/control.py).
It is addressed to the instance that made the inbox: if that instance has
crashed, been wound down or stopped by the time the signal would be handled,
the signal is dead-lettered (ACTOR_STOPPED), never handled by the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exoarmur.runtime.control import signal
from exoarmur.runtime.eager import signal_now

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell

__all__ = ["Inbox"]


class Inbox:
    __slots__ = ("_cell", "_instance")

    def __init__(self, cell: Cell, instance: Any) -> None:
        self._cell = cell
        self._instance = instance

    def signal(self, message: Any) -> None:
        """Queue `message` ahead of the mail; its handler runs in the actor's drain."""
        signal(self._cell, message, instance=self._instance)

    def signal_now(self, message: Any) -> None:
        """Handle `message` at once, in this stack, when the actor is idle and
        its handler a plain `def` (what a supervisor's one_for_one decision
        costs a crash: no scheduler pass of the supervisor's own); else queue
        it as `signal` does. An exception in the handler crashes the instance
        through its control lane."""
        signal_now(self._cell, message, instance=self._instance)
