"""What an actor sees of the runtime, and who decides after it crashes.

- `ActorContext`: an actor's view of itself (path, ref, system, the envelope
  being handled, its deadline) and what it may ask of the runtime:
  report a failed dependency, answer later (`defer`), start a task of its
  instance, stop itself, read the clock.
- `CURRENT`: the context of the handler running in this task; a send made from
  inside a handler inherits its deadline, tenant and trace id through it.
- `Parent`: the protocol a supervisor (or the actor system) implements to hear
  of a child's crash, exit, reported failure or probe outcome.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.envelope import Envelope

if TYPE_CHECKING:
    from exoarmur.runtime.cell import ActorCell
    from exoarmur.runtime.deferred import Deferred
    from exoarmur.runtime.errors import ExoarmurError
    from exoarmur.runtime.ref import ActorRef
    from exoarmur.runtime.system import ActorSystem


class Parent(Protocol):
    """Who decides what happens to an actor after it crashes: its supervisor,
    or the actor system (which resumes at once, as Akka's default does)."""

    def child_crashed(self, cell: ActorCell, error: ExoarmurError) -> None:
        """`cell` crashed (already audited) and is SUSPENDED: its mailbox keeps
        accepting within its policy, nothing is handled. Call `cell.resume()`
        now or later (after a backoff), or `cell.request_stop(...)`."""

    def child_exited(self, cell: ActorCell) -> None:
        """`cell` has STOPPED (its own `context.stop()`, or any stop request)."""

    def child_reported(self, cell: ActorCell, code: ReasonCode, detail: str) -> None:
        """`cell` reports a failed dependency (`context.report_failure`) and runs on."""

    def child_probed(self, cell: ActorCell, ok: bool | None) -> None:
        """A probe admitted by `cell.ungate(probes=...)` ended: handled well
        (True), failed (False: a dependency failure reported while handling it),
        or never handled (None: it expired). A crash is reported as a crash."""


class ActorContext:
    """What a running actor knows about itself. `envelope` is the one being handled."""

    __slots__ = ("cell", "envelope", "run")

    def __init__(self, cell: ActorCell) -> None:
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
    def system(self) -> ActorSystem:
        return self.cell.system

    @property
    def deadline(self) -> float | None:
        """The deadline of the envelope this task handles (in a concurrent
        handler, its own; see runtime/inflight.py)."""
        env = self._here().envelope
        return None if env is None else env.deadline

    def _here(self) -> ActorContext:
        here = CURRENT.get()
        return here if here is not None and here.cell is self.cell else self

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
        from exoarmur.runtime.deferred import Deferred

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
        from exoarmur.runtime.deferred import Deferred

        run = self._here().run
        if run is None:
            raise RuntimeError("defer_each() is for a batch handler's run")
        deferreds = [Deferred(self.cell, env) for env in run]
        for deferred in deferreds:
            self.cell.deferring(deferred)
        return deferreds

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
        from exoarmur.runtime.deferred import CallbackCrash

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
        self.cell.start_task(fn, *args)

    def stop(self) -> None:
        """Stop this actor normally (OTP's {stop, normal, State}): no more sends
        are accepted; what is queued is handled until the system's stop timeout,
        then dead-lettered; `stopping` runs; the parent learns of a normal exit."""
        cell = self.cell
        cell.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=cell.system.now() + cell.system.stop_timeout)


# The context of the actor whose handler is running in this task (each drain task
# sets it once). A send made from inside a handler inherits its deadline and trace.
CURRENT: ContextVar[ActorContext | None] = ContextVar("exoarmur_current_actor", default=None)
