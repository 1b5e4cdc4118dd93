"""Answers that come later: `context.defer()` and `ActorRef.ask_then`.

    @handles(Get)
    def get(self, m: Get) -> Deferred:          # a plain def: no task, no scope
        later = self.context.defer()              # the asker's reply, kept
        self.store.ask_then(Read(m.key), later.resolve)
        return later                              # "I will answer": OTP's noreply

What it saves: a handler that only waits on another actor need not hold a task
and a cancel scope while it waits (a concurrent handler costs both per
envelope). This is gen_server's `{noreply, State}` with `gen_server:reply/2`
later, and Akka's `forward`/`pipeTo`.

Invariants:
- A Deferred answers its asker at most once (the reply slot decides), and the
  asker still waits no longer than its own deadline: its timer is its own.
- An answer still owed when its actor stops gets until the stop deadline, as
  a running handler does; then its asker gets the stop's code.
- `ask_then`'s callback is called exactly once: with the handler's value, or
  the coded error (the target's answer, crash, overload, or, at the deadline,
  the timeout code a local ask would get). It runs at once in whichever task
  resolves the reply (a handler's, a timer's), with the asking actor's context
  current: it must not block. If it raises, the instance that asked crashes,
  through its control lane (handled before its next mail), unless that
  instance has already ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import outcome

from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ExoarmurError

if TYPE_CHECKING:
    from exoarmur.runtime.kernel import Kernel

__all__ = ["CallbackCrash", "Deferred"]


class Owner(Protocol):
    """What a deferred answer uses of the actor that owes it (its ActorCell)."""

    path: str
    system: Kernel

    def settled(self, deferred: Deferred) -> None: ...


class Deferred:
    """The asker of one envelope, to be answered later. Return it from the
    handler (that is what tells the runtime not to answer now)."""

    __slots__ = ("envelope", "settled", "_cell", "on_settled")

    def __init__(self, cell: Owner, envelope: Envelope) -> None:
        self.envelope = envelope
        self.settled = False  # resolve() was called
        self._cell = cell
        self.on_settled: Callable[[], None] | None = None  # a breaker probe waits on it

    def resolve(self, result: outcome.Outcome) -> bool:
        """Answer with an outcome as it is (a value, or a coded error already
        audited where it arose). False if the asker was answered already (or
        gave up); a tell has no asker."""
        self.settled = True
        self._cell.settled(self)
        reply = self.envelope.reply_to
        answered = reply is not None and reply.resolve(result)
        if reply is not None and not answered:
            self._cell.system.late_replies += 1
        if self.on_settled is not None:
            self.on_settled()
        return answered

    def reply(self, value: Any) -> bool:
        return self.resolve(outcome.Value(value))

    def fail(self, error: ExoarmurError) -> bool:
        """Answer with a coded error of this actor's own (audited once, here,
        as one raised by a handler is)."""
        cell = self._cell
        cell.system.audit_error(error, kind="answered", path=cell.path, envelope=self.envelope)
        return self.resolve(outcome.Error(error))


class CallbackCrash:
    """Control-lane entry: an `ask_then` callback (or a function run as the
    actor) of the instance `actor` raised `exc`, for `envelope` if any."""

    __slots__ = ("actor", "envelope", "exc")

    def __init__(self, actor: Any, envelope: Envelope | None, exc: Exception) -> None:
        self.actor = actor
        self.envelope = envelope
        self.exc = exc
