"""ActorRef: how anything talks to an actor.

    await ref.tell(Add(1))                 # backpressure per the mailbox policy
    ref.tell_nowait(Add(1))                # never waits: full -> OVERLOAD_MAILBOX_FULL
    total = await ref.ask(Fetch(), timeout=2.0)
    ref.ask_then(Fetch(), on_reply)        # in a handler: on_reply(outcome) later

Every send builds one envelope. Its deadline is, in order: `deadline=` if
given, else now + `timeout=`, else now + the policy's default for the message's
timeout category; and never later than the deadline of the handler that is
sending (deadlines only shrink as work fans out). Tenant and trace id are
inherited from that handler's envelope when not given.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import outcome

from exoarmur.runtime.backend import Reply
from exoarmur.runtime.context import CURRENT
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.deferred import OwnerCallback
from exoarmur.runtime.envelope import Envelope

if TYPE_CHECKING:
    from exoarmur.runtime.cell import ActorCell
    from exoarmur.runtime.system import ActorSystem

_INF = float("inf")
# The one positional construction of an Envelope (in `outgoing_envelope`, the
# hot path): NamedTuple's own __new__ parses arguments in Python, 3x the cost.
_new = tuple.__new__


class ActorRef:
    __slots__ = ("_cell", "path")

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell
        self.path = cell.path

    def __repr__(self) -> str:
        return f"<ActorRef {self.path}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return hash(self.path)

    def _envelope(
        self,
        message: Any,
        timeout: float | None,
        deadline: float | None,
        tenant: str | None,
        idempotency_key: str | None,
        trace_id: str | None,
        reply: Reply | None,
    ) -> Envelope:
        cell = self._cell
        system = cell.system
        if type(message) not in cell.dispatch:
            self._unhandled(type(message))
        now = system.now()
        env = outgoing_envelope(system, now, message, timeout, deadline, tenant, idempotency_key, trace_id, reply)
        bound = cell.tenant
        if bound is not None and env.tenant != bound:
            if env.tenant is not None:
                cell._reject(env, ReasonCode.TENANT_MISMATCH)
            env = env._replace(tenant=bound)
        if not now < env.deadline < _INF:  # passed, or inf/nan: there is no "wait forever"
            cell._reject(env, ReasonCode.DEADLINE_EXCEEDED if env.deadline <= now else ReasonCode.ENVELOPE_INVALID)
        return env

    def _unhandled(self, message_type: type) -> None:
        cell = self._cell
        cell.mailbox.rejected += 1
        raise cell.system.failure(
            "rejected",
            ReasonCode.ENVELOPE_INVALID,
            path=cell.path,
            detail=f"{cell.actor_type.__qualname__} has no handler for {message_type.__qualname__}",
        )

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
        env = self._envelope(message, timeout, deadline, tenant, idempotency_key, trace_id, None)
        cell = self._cell
        # Inline copy of ActorCell.offer's fast path (room, open): the tell target
        # is decided by these lines. Everything else goes through offer().
        mailbox = cell.mailbox
        queue = mailbox.queue
        if mailbox.closed is None and len(queue) < mailbox.capacity and not mailbox.waiters:
            queue.append(env)
            mailbox.accepted += 1
            if not cell.scheduled:
                cell._schedule()
        elif not cell.offer(env):
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
        """As `tell`, for plain-`def` handlers and other sync code: never waits."""
        env = self._envelope(message, timeout, deadline, tenant, idempotency_key, trace_id, None)
        self._cell.offer_nowait(env)

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
        """The handler's return value, or the coded error: ACTOR_CRASHED as soon as
        the handler raises; DEADLINE_EXCEEDED if the deadline passes before a
        handler takes it; the message's category code if it passes after.
        An idle target whose handler is a plain `def` handles it at once, in
        this task (`ActorCell.handle_now`); the ask still yields once."""
        cell = self._cell
        reply = cell.system.backend.new_reply()
        env = self._envelope(message, timeout, deadline, tenant, idempotency_key, trace_id, reply)
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
        env = self._envelope(message, timeout, deadline, tenant, idempotency_key, trace_id, reply)
        if not (eager and cell.handle_now(env)):
            cell.offer_nowait(env)
        reply.arm(env.deadline, partial(cell.ask_expired, env))

    def exported(self, message_type: type) -> bool:
        """The target's class exports `message_type` for remote use
        (`@handles(..., remote=True)`): a gateway may deliver it from the wire."""
        return message_type in self._cell.actor_type._exported

    def statistics(self):
        return self._cell.mailbox.statistics()


def outgoing_envelope(
    system: ActorSystem,
    now: float,
    message: Any,
    timeout: float | None,
    deadline: float | None,
    tenant: str | None,
    idempotency_key: str | None,
    trace_id: str | None,
    reply: Reply | None,
) -> Envelope:
    """The envelope of a send made now, local or remote: its deadline is
    `deadline`, else now + `timeout`, else now + the policy's default for the
    message, and never later than the deadline of the handler sending it
    (deadlines only shrink as work fans out); tenant and trace id are that
    handler's unless given; the sender is its path. Validity (a deadline
    already passed, or not finite) is the caller's to refuse.

    Hot path: every tell and ask runs this once; keep it flat."""
    if deadline is None:
        if timeout is None:
            # The cached default first (timeouts are > 0): a call saved per send.
            timeout = system._timeout_of_type.get(type(message)) or system.default_seconds(type(message))
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
    return _new(Envelope, (message, deadline, tenant, sender, None, trace_id, idempotency_key, 1, reply))


def carried_over(
    deadline: float, tenant: str | None, trace_id: str | None
) -> tuple[float, str | None, str | None, str | None]:
    """What a send from inside a handler carries over from the envelope being
    handled: the earlier of the two deadlines, its tenant and trace unless
    given; and the sender's path. (deadline, tenant, trace_id, sender)."""
    context = CURRENT.get()
    if context is None:
        return deadline, tenant, trace_id, None
    parent = context.envelope
    if parent is not None:
        deadline = min(deadline, parent.deadline)
        tenant = parent.tenant if tenant is None else tenant
        trace_id = parent.trace_id if trace_id is None else trace_id
    return deadline, tenant, trace_id, context.cell.path
