"""ActorRef: how anything talks to an actor.

    await ref.tell(Add(1))                 # backpressure per the mailbox policy
    ref.tell_nowait(Add(1))                # never waits: full -> OVERLOAD_MAILBOX_FULL
    total = await ref.ask(Fetch(), timeout=2.0)
    ref.ask_then(Fetch(), on_reply)        # in a handler: on_reply(outcome) later

Every send builds one envelope (`outgoing_envelope`, shared with remote refs).
Its deadline is, in order: `deadline=` if given (an absolute time on the
runtime clock, `system.now()`), else now + `timeout=` seconds, else now + the
timeout policy's default for the message's category; and never later than
the deadline of the handler that is sending (deadlines only shrink as work
fans out). Tenant and trace id are inherited from that handler's envelope
when not given. A send whose deadline has passed is refused with
DEADLINE_EXCEEDED; an infinite or NaN one with ENVELOPE_INVALID.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import outcome

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.deferred import CallbackCrash
from exoarmur.runtime.envelope import Envelope

if TYPE_CHECKING:
    from exoarmur.runtime.backend import Reply
    from exoarmur.runtime.kernel import Kernel
    from exoarmur.runtime.mailbox import Mailbox, MailboxStatistics

__all__ = ["ActorRef", "deadline_refusal", "outgoing_envelope"]

_INF = float("inf")
# The one positional construction of an Envelope (in `outgoing_envelope`, the
# send path): NamedTuple's own __new__ parses its arguments in Python, 3x the cost.
_new = tuple.__new__


class Probes(Protocol):
    left: int  # probes that may still enter a gated mailbox


class Target(Protocol):
    """What a ref uses of the actor it names (runtime/cell.py's ActorCell)."""

    path: str
    system: Kernel
    actor_type: type
    tenant: str | None
    dispatch: dict[type, Any]
    mailbox: Mailbox
    gate: Probes | None  # the breaker's probes (runtime/gate.py's Gate)

    def offer(self, env: Envelope) -> bool: ...

    def offer_nowait(self, env: Envelope) -> None: ...

    async def offer_waiting(self, env: Envelope) -> None: ...

    def handle_now(self, env: Envelope) -> bool: ...

    def ask_expired(self, env: Envelope, reply: Reply) -> BaseException: ...

    def reject(self, env: Envelope, code: ReasonCode) -> NoReturn: ...


class ActorRef:
    """The address of one actor in this process: what you send to. Refs are
    cheap, compare equal when they name the same actor, and stay valid after
    the actor stops (sends then fail with ACTOR_STOPPED). Get one from
    `ActorSystem.spawn`, `ActorSystem.lookup` or `context.self_ref`."""

    __slots__ = ("_cell", "path")

    def __init__(self, cell: Target) -> None:
        self._cell = cell
        self.path = cell.path

    def __repr__(self) -> str:
        return f"<ActorRef {self.path}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return hash(self.path)

    async def tell(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Enqueue `message`. With room this returns without yielding; without
        room: `reject` raises Overloaded, `wait` waits until the deadline (then
        DeadlineExceeded), `shed_oldest` dead-letters the oldest envelope."""
        cell = self._cell
        env = outgoing_envelope(cell.system, cell, message, timeout, deadline, tenant, idempotency_key, trace_id, None)
        if not cell.offer(env):
            await cell.offer_waiting(env)

    def tell_nowait(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        """As `tell`, for plain-`def` handlers and other sync code: never waits
        (a `wait`-policy mailbox without room refuses with OVERLOAD_MAILBOX_FULL)."""
        cell = self._cell
        cell.offer_nowait(
            outgoing_envelope(cell.system, cell, message, timeout, deadline, tenant, idempotency_key, trace_id, None)
        )

    async def ask(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> Any:
        """The handler's return value, or the coded error: ACTOR_CRASHED as soon
        as the handler raises; DEADLINE_EXCEEDED if the deadline passes before a
        handler takes it; the message's category code if it passes after.
        `deadline` is absolute, on the runtime clock (`system.now()`); `timeout`
        is seconds from now. An idle target whose handler is a plain `def`
        handles it at once, in this task (runtime/eager.py); the ask still
        yields once."""
        cell = self._cell
        reply = cell.system.backend.new_reply()
        env = outgoing_envelope(cell.system, cell, message, timeout, deadline, tenant, idempotency_key, trace_id, reply)
        if cell.handle_now(env):
            if reply.done:
                await cell.system.backend.checkpoint()  # a loop of asks still lets others run
        elif not cell.offer(env):
            await cell.offer_waiting(env)
        return await reply.wait(env.deadline, partial(cell.ask_expired, env))

    def ask_then(
        self,
        message: Any,
        on_reply: Callable[[outcome.Outcome], None],
        *,
        eager: bool = False,
        timeout: float | None = None,
        deadline: float | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Ask without waiting, from inside a handler: `on_reply(outcome)` is
        called once with what `ask` would return or raise (`outcome.Value` or
        `outcome.Error`), at the latest at the deadline (runtime/deferred.py).
        Never waits for room: a full mailbox raises OVERLOAD_MAILBOX_FULL here,
        as every refusal does, and then `on_reply` is never called.
        `eager=True`: an idle target whose handler is a plain `def` handles it
        now, in this stack (as `ask` does), so `on_reply` may run before this
        returns; for callers with nothing left to do after the call."""
        owner = CURRENT.get()
        if owner is None:
            raise RuntimeError("ask_then is for handlers (its callback runs as the asking actor); use ask")
        cell = self._cell
        reply = cell.system.backend.new_callback_reply(OwnerCallback(owner, on_reply))
        env = outgoing_envelope(cell.system, cell, message, timeout, deadline, tenant, idempotency_key, trace_id, reply)
        if not (eager and cell.handle_now(env)):
            cell.offer_nowait(env)
        reply.arm(env.deadline, partial(cell.ask_expired, env))

    def accepts(self, message_type: type) -> bool:
        """The target has a handler for `message_type` (a send of anything
        else is refused with ENVELOPE_INVALID)."""
        return message_type in self._cell.dispatch

    def exported(self, message_type: type) -> bool:
        """The target's class exports `message_type` for remote use
        (`@handles(..., remote=True)`): a gateway may deliver it from the wire."""
        return message_type in self._cell.actor_type._exported

    def statistics(self) -> MailboxStatistics:
        """The target's mailbox: depth, capacity and its counters."""
        return self._cell.mailbox.statistics()

    def refusing(self) -> ReasonCode | None:
        """The code every send is refused with now (its supervisor's breaker
        open: BREAKER_OPEN; the actor stopped or stopping), or None: sends are
        admitted, room permitting (HALF_OPEN: while a probe may still enter).
        A look, for a caller that would rather wait than be refused (a gate);
        the send itself still decides."""
        cell = self._cell
        closed = cell.mailbox.closed
        if closed is ReasonCode.BREAKER_OPEN and cell.gate is not None and cell.gate.left:
            return None
        return closed


def outgoing_envelope(
    system: Kernel,
    target: Target | None,
    message: Any,
    timeout: float | None,
    deadline: float | None,
    tenant: str | None,
    idempotency_key: str | None,
    trace_id: str | None,
    reply: Reply | None,
) -> Envelope:
    """The envelope of a send made now: its deadline is `deadline`, else now +
    `timeout`, else now + the policy's default for the message, and never
    later than the deadline of the handler sending it; tenant and trace id
    are that handler's unless given; the sender is its path.

    `target` is the local actor it goes to: it is refused here, audited, if
    the target has no handler for it, if it carries another tenant than the
    one the target is bound to (none: it gets that one), or if its deadline
    has passed (DEADLINE_EXCEEDED) or is not finite (ENVELOPE_INVALID).
    For a remote send (`target` None) those checks are the caller's and the
    receiver's.

    The send path: every tell and ask runs this once; keep it flat."""
    if target is not None and type(message) not in target.dispatch:
        _unhandled(target, type(message))
    now = system.now()
    if deadline is None:
        if timeout is None:
            timeout = system.default_timeouts.get(type(message)) or system.default_seconds(type(message))
        deadline = now + timeout
    sender = None
    context = CURRENT.get()
    if context is not None:
        sender = context.cell.path
        parent = context.envelope
        if parent is not None:
            if parent.deadline < deadline:
                deadline = parent.deadline
            if trace_id is None:
                trace_id = parent.trace_id
            if tenant is None:
                tenant = parent.tenant
    if target is None:
        return _new(Envelope, (message, deadline, tenant, sender, None, trace_id, idempotency_key, 1, reply))
    bound = target.tenant
    if bound is not None and tenant != bound:
        if tenant is not None:
            target.reject(
                _new(Envelope, (message, deadline, tenant, sender, None, trace_id, idempotency_key, 1, None)),
                ReasonCode.TENANT_MISMATCH,
            )
        tenant = bound
    env = _new(Envelope, (message, deadline, tenant, sender, None, trace_id, idempotency_key, 1, reply))
    if not now < deadline < _INF:
        target.reject(env, deadline_refusal(deadline, now))  # type: ignore[arg-type]
    return env


def deadline_refusal(deadline: float, now: float) -> ReasonCode | None:
    """The code a send with this deadline is refused with, or None if it is
    still ahead: DEADLINE_EXCEEDED once it has passed, ENVELOPE_INVALID if it
    is infinite or NaN (there is no "wait forever")."""
    if now < deadline < _INF:
        return None
    return ReasonCode.DEADLINE_EXCEEDED if deadline <= now else ReasonCode.ENVELOPE_INVALID


def _unhandled(target: Target, message_type: type) -> NoReturn:
    target.mailbox.rejected += 1
    raise target.system.failure(
        "rejected",
        ReasonCode.ENVELOPE_INVALID,
        path=target.path,
        detail=f"{target.actor_type.__qualname__} has no handler for {message_type.__qualname__}",
    )


class OwnerCallback:
    """`callback` as `ask_then` runs it: with the asking actor's context (as it
    was when it asked: the same envelope, so the same deadline and trace)
    current, and its exception turned into that instance's crash. (An object,
    not a closure: one allocation per ask_then instead of seven.)"""

    __slots__ = ("_actor", "_snapshot", "_callback")

    def __init__(self, owner: Any, callback: Callable[[outcome.Outcome], None]) -> None:
        self._actor = owner.cell.actor  # the instance that asked
        self._snapshot = owner.snapshot()
        self._callback = callback

    def __call__(self, result: outcome.Outcome) -> None:
        token = CURRENT.set(self._snapshot)
        try:
            self._callback(result)
        except Exception as exc:
            snapshot = self._snapshot
            snapshot.cell.callback_crashed(CallbackCrash(self._actor, snapshot.envelope, exc))
        finally:
            CURRENT.reset(token)
