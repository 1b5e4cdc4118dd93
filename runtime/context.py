"""What an actor sees of the runtime: `self.context`.

An actor's view of itself (path, ref, system, the envelope being handled, its
deadline) and what it may ask of the runtime: report a failed dependency,
answer later (`defer`), start a task of its instance, give others a way to
signal it (`inbox`), stop itself, read the clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.deferred import CallbackCrash, Deferred
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.inbox import Inbox
from exoarmur.runtime.lifecycle import RUNNING

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell, System
    from exoarmur.runtime.ref import ActorRef

__all__ = ["ActorContext"]


class ActorContext:
    """What a running actor knows about itself. `envelope` is the one being
    handled (in a concurrent handler, its own: each runs with a context of
    its own)."""

    __slots__ = ("cell", "envelope", "run")

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.envelope: Envelope | None = None
        self.run: list[Envelope] | None = None  # a batch handler's envelopes

    @property
    def path(self) -> str:
        return self.cell.path

    @property
    def self_ref(self) -> ActorRef:
        return self.cell.ref

    @property
    def system(self) -> System:
        return self.cell.system

    @property
    def deadline(self) -> float | None:
        """The deadline of the envelope this task handles, absolute on the
        runtime clock (`now()`)."""
        env = self._here().envelope
        return None if env is None else env.deadline

    @property
    def running(self) -> bool:
        """This actor runs: no stop asked, not crashed nor suspended."""
        return self.cell.state is RUNNING

    def _here(self) -> ActorContext:
        here = CURRENT.get()
        return here if here is not None and here.cell is self.cell else self

    def snapshot(self) -> ActorContext:
        """A copy of this task's view (the envelope being handled now), for
        code that runs as this actor later (`ask_then` callbacks)."""
        here = self._here()
        copy = ActorContext(here.cell)
        copy.envelope = here.envelope
        return copy

    def now(self) -> float:
        return self.cell.system.now()

    def report_failure(self, code: ReasonCode, detail: str = "") -> None:
        """Tell the parent a dependency failed (say TIMEOUT_KV_GET) without
        crashing: it counts towards the breaker the supervisor keeps for this
        actor. Audited once, as kind "dependency_failed"."""
        cell = self.cell
        envelope = self._here().envelope  # a concurrent handler's own, if this is one
        cell.system.failure("dependency_failed", ReasonCode(code), path=cell.path, envelope=envelope, detail=detail)
        cell.failure_reported = True
        cell.parent.child_reported(cell, ReasonCode(code), detail)

    def defer(self) -> Deferred:
        """Answer the envelope being handled later: return the Deferred from
        the handler, and resolve it when the answer is known (often from an
        `ask_then` callback; see runtime/deferred.py). Its asker still waits
        no longer than its deadline."""
        env = self._here().envelope
        if env is None:
            raise RuntimeError("defer() is for a handler's envelope")
        deferred = Deferred(self.cell, env)
        self.cell.deferring(deferred)
        return deferred

    def defer_each(self) -> list[Deferred]:
        """In a batch handler: answer each message of the run on its own,
        later (one Deferred per message, in order; return them as the
        per-item results). An asker is answered as soon as its own answer is
        known, not when the whole run is."""
        run = self._here().run
        if run is None:
            raise RuntimeError("defer_each() is for a batch handler's run")
        deferreds = [Deferred(self.cell, env) for env in run]
        for deferred in deferreds:
            self.cell.deferring(deferred)
        return deferreds

    def inbox(self) -> Inbox:
        """This instance's inbox, for runtime signals sent to it from outside
        its handlers (a child's link, a timer it started): see runtime/inbox.py.
        Signals to it never reach a later instance."""
        return Inbox(self.cell, self.cell.actor)

    @contextmanager
    def on_behalf_of(self, envelope: Envelope) -> Iterator[None]:
        """Sends made inside carry `envelope`'s deadline, tenant and trace
        instead of those of the envelope being handled: for a gateway, which
        hands on work that began in another process (the remote envelope is
        the root of it, not the delivery that brought it)."""
        here = ActorContext(self.cell)
        here.envelope = envelope
        token = CURRENT.set(here)
        try:
            yield
        finally:
            CURRENT.reset(token)

    def call_as_self(self, fn: Callable[..., object], /, *args: object, envelope: Envelope | None = None) -> None:
        """Run the plain function `fn(context, *args)` as this actor from
        outside its handlers (a client library's callback, where no mailbox
        should stand in between): `context` is this actor's, handling
        `envelope` (none by default: sends made inside carry only their own
        options), so `ask_then` works and its callback runs as this actor; a
        deferred answer's envelope makes failures reported inside its. An exception
        crashes this instance through its control lane, as a raising
        `ask_then` callback does. `fn` must not block."""
        cell = self.cell
        here = ActorContext(cell)
        here.envelope = envelope
        token = CURRENT.set(here)
        try:
            fn(here, *args)
        except Exception as exc:
            cell.callback_crashed(CallbackCrash(cell.actor, envelope, exc))
        finally:
            CURRENT.reset(token)

    def start_task(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run `fn(*args)` in this actor's host for as long as this instance
        lives: it is cancelled when the instance crashes or is suspended, and
        after its `stopping` hook. For waits that belong to no envelope (a child
        process's exit, a subscription). An exception in it crashes the actor."""
        self.cell.start_task(fn, args)

    def stop(self) -> None:
        """Stop this actor normally (OTP's {stop, normal, State}): no more sends
        are accepted; what is queued is handled until the system's stop timeout,
        then dead-lettered; `stopping` runs; the parent learns of a normal exit."""
        cell = self.cell
        cell.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=cell.system.now() + cell.system.stop_timeout)
