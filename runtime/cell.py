"""The runtime side of one actor: its mailbox, its instance, its lifecycle.

An `ActorCell` holds the state every part of the kernel shares (its fields are
documented once, on the `Cell` protocol in runtime/contracts.py) and the
operations its parent may call (the `Supervised` protocol). The rest lives in
parts, one idea each, written against those protocols:

    where a message waits     runtime/mailbox.py (the queue, urgent mail at its head, the control lane)
    whether it gets in        runtime/admission.py (capacity, overflow, codes)
    who runs the handlers     runtime/drain.py (the drain task), runtime/eager.py
                              (an ask handled in the asker's stack),
                              runtime/handling.py (one handler call)
    how each envelope ends    runtime/endings.py (exactly once, coded)
    the control lane          runtime/control.py, runtime/inbox.py
    instances and hooks       runtime/instances.py
    beside the drain          runtime/inflight.py (concurrent handlers),
                              runtime/batch.py (runs), runtime/instance_tasks.py
    the breaker gate          runtime/gate.py
    answers owed              runtime/owed.py
    the states                runtime/lifecycle.py (the transition table)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

import exoarmur.runtime.admission as admission
import exoarmur.runtime.control as control
import exoarmur.runtime.eager as eager
import exoarmur.runtime.endings as endings
import exoarmur.runtime.gate as gating
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.context import ActorContext
from exoarmur.runtime.contracts import ActorInfo
from exoarmur.runtime.control import STOP, dead_letter_signals
from exoarmur.runtime.drain import drain
from exoarmur.runtime.instance_tasks import InstanceTasks
from exoarmur.runtime.instances import fresh, new_actor
from exoarmur.runtime.inflight import InFlight
from exoarmur.runtime.lifecycle import RUNNING, STOPPED, STOPPING, SUSPENDED, CellState, check
from exoarmur.runtime.owed import OwedAnswers
from exoarmur.runtime.ref import ActorRef

if TYPE_CHECKING:
    from exoarmur.runtime.actor import Actor
    from exoarmur.runtime.contracts import Parent, System
    from exoarmur.runtime.deferred import Deferred
    from exoarmur.runtime.envelope import Envelope
    from exoarmur.runtime.errors import ExoarmurError
    from exoarmur.runtime.mailbox import Mailbox

__all__ = ["ActorCell"]


class ActorCell:
    __slots__ = (
        "path",
        "system",
        "actor_type",
        "kwargs",
        "tenant",
        "ref",
        "context",
        "parent",
        "start_soon",
        "dispatch",
        "throughput",
        "concurrent",
        "batched",
        "per_item",
        "urgent",
        "mailbox",
        "scheduled",
        "parked",
        "state",
        "restarts",
        "stop_deadline",
        "suspend_deadline",
        "suspended",
        "stopped",
        "actor",
        "instance_dead",
        "start_failed",
        "crashed_on",
        "failure_reported",
        "scope",
        "inflight",
        "gate",
        "owed",
        "tasks",
    )

    def __init__(
        self,
        *,
        path: str,
        system: System,
        actor_type: type[Actor],
        kwargs: Mapping[str, Any],
        tenant: str | None,
        mailbox: Mailbox,
        start_soon: Callable[..., None],
        parent: Parent,
    ) -> None:
        self.path = path
        self.system = system
        self.actor_type = actor_type
        self.kwargs = kwargs
        self.tenant = tenant
        self.ref = ActorRef(self)
        self.context = ActorContext(self)
        self.parent = parent
        self.start_soon = start_soon
        self.dispatch = actor_type._dispatch
        self.throughput = actor_type.throughput
        self.concurrent = actor_type._concurrent
        self.batched = actor_type._batched
        self.per_item = actor_type._per_item
        self.urgent = actor_type._urgent
        self.mailbox = mailbox
        self.scheduled = False
        self.parked: Any = None
        self.state = RUNNING
        self.restarts = 0
        self.stop_deadline = float("inf")
        self.suspend_deadline: float | None = None
        self.suspended: anyio.Event | None = None
        self.stopped: anyio.Event | None = None
        self.instance_dead = False
        self.start_failed = False
        self.crashed_on: Envelope | None = None
        self.failure_reported = False
        self.scope: anyio.CancelScope | None = None
        self.inflight = InFlight(actor_type.concurrency) if self.concurrent else None
        self.gate: gating.Gate | None = None
        self.owed: OwedAnswers | None = None
        self.tasks: InstanceTasks | None = None
        self.actor = new_actor(self)

    def __repr__(self) -> str:
        return f"<ActorCell {self.path} {self.state.value}>"

    # What a ref calls (its Target protocol), bound from the parts: the send
    # path pays no call of its own for them.
    offer = admission.offer
    offer_nowait = admission.offer_nowait
    offer_waiting = admission.offer_waiting
    reject = admission.reject
    handle_now = eager.handle_now
    ask_expired = endings.ask_expired

    # ---- the drain ------------------------------------------------------------

    def schedule(self) -> None:
        """Make sure a drain runs for what is queued: wake the parked one, or
        start one in the host. A suspended actor's mail waits for resume()."""
        if not self.scheduled and self.state is not SUSPENDED:
            self.scheduled = True
            parked, self.parked = self.parked, None
            if parked is None:
                self.start_soon(drain, self, name=self.path)
            elif not parked.done():
                parked.set_result(True)  # the parked drain goes on
            else:
                # Its task is being cancelled with its host (the system or a
                # supervisor going away): nothing more is drained here.
                self.scheduled = False

    def _unpark(self) -> None:
        """End a parked drain (it has nothing left to do)."""
        parked, self.parked = self.parked, None
        if parked is not None and not parked.done():
            parked.set_result(False)

    def move(self, to: CellState) -> None:
        check(self.path, self.state, to)
        self.state = to

    # ---- a crash --------------------------------------------------------------

    def down(self, error: ExoarmurError) -> None:
        """After a crash: whatever else the dead instance was running is
        cancelled, its owed answers end ACTOR_CRASHED, and its parent decides.
        A crash of an actor already stopping or suspended, or being suspended
        (a handler that began before its parent asked), ends the instance and
        nothing more: the stop or the wind-down that was asked goes on."""
        if self.inflight is not None:
            self.inflight.cancel_all()
        if self.scope is not None:
            self.scope.cancel()
        if self.tasks is not None:
            self.tasks.cancel_all()
        if self.owed:
            self.owed.abandon_at_crash(self)
        if self.state is not RUNNING or self.suspended is not None:
            return
        self.move(SUSPENDED)
        self.parent.child_crashed(self, error)

    callback_crashed = control.callback_crashed

    # ---- what a parent may do (the Supervised protocol) -------------------------

    def resume(self) -> None:
        self.move(RUNNING)
        self.restarts += 1
        self.schedule()

    async def restart(self) -> ExoarmurError | None:
        if self.state is not SUSPENDED:
            return None
        failure = await fresh(self)
        if failure is None and self.state is SUSPENDED:
            self.move(RUNNING)
            self.restarts += 1
            self.schedule()
        return failure

    async def suspend(self, *, deadline: float) -> None:
        """The handler running now is cut at `deadline`, `stopping` runs (bounded
        by it), the instance is dropped; the mailbox stays open and keeps its
        mail for the fresh instance `resume()` makes."""
        if self.state is not RUNNING:
            return
        self.suspend_deadline = deadline
        self._tighten(deadline)
        if self.suspended is None:
            self.suspended = anyio.Event()
        event = self.suspended
        self.mailbox.push_control(STOP)  # wakes an idle drain
        self.schedule()
        await event.wait()

    def request_stop(self, *, code: ReasonCode, deadline: float) -> None:
        """Close the mailbox to new sends at once (they get `code`); the drain
        handles what is queued until `deadline`, dead-letters the rest with
        `code`, then runs `stopping`. A handler running now is cut at `deadline`."""
        state = self.state
        if state is STOPPING or state is STOPPED:
            if state is STOPPING and deadline < self.stop_deadline:
                self.stop_deadline = deadline
                self._tighten(deadline)
            return
        mailbox = self.mailbox
        mailbox.closed = code
        mailbox.wake_all_waiters()
        self.move(STOPPING)
        self.stop_deadline = deadline
        self._tighten(deadline)
        hook = self.actor_type._has_stopping and not self.instance_dead
        if not self.scheduled and not mailbox.queue and not hook and not self.owed:
            self._unpark()
            self.finish()
            return
        mailbox.push_control(STOP)  # wakes an idle drain; a busy one sees the state
        self.schedule()

    def _tighten(self, deadline: float) -> None:
        """Nothing running now runs past `deadline` (a stop or a suspend)."""
        scope = self.scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        if self.inflight is not None:
            self.inflight.tighten(deadline)

    async def wait_stopped(self) -> None:
        if self.state is STOPPED:
            return
        if self.stopped is None:
            self.stopped = anyio.Event()
        await self.stopped.wait()

    def finish(self) -> None:
        # Whatever is still in the control lane ends here (a suspended actor
        # stopped before it handled its signals): every accepted envelope ends.
        dead_letter_signals(self, self.mailbox.closed or ReasonCode.SHUTTING_DOWN)
        if self.suspended is not None:
            self.suspended.set()  # a suspend() that a stop overtook ends too
            self.suspended = None
        self.move(STOPPED)
        self.system.unregister(self)
        if self.stopped is not None:
            self.stopped.set()
        self.parent.child_exited(self)

    def fail_fast(self, code: ReasonCode) -> None:
        gating.fail_fast(self, code)

    def admit(self, *, probes: int | None = None) -> None:
        gating.admit(self, probes=probes)

    redeliver = admission.redeliver

    def take_crashed_on(self) -> Envelope | None:
        env, self.crashed_on = self.crashed_on, None
        return env

    def info(self) -> ActorInfo:
        return ActorInfo(
            path=self.path,
            actor=self.actor_type.__qualname__,
            state=self.state,
            restarts=self.restarts,
            mailbox=self.mailbox.statistics(),
        )

    # ---- what an instance asks of its cell (through its context) ----------------

    def deferring(self, deferred: Deferred) -> None:
        """A handler deferred its answer: an ask's is owed until resolved (a
        stop waits for it until the stop deadline); a probe's is waited for."""
        if deferred.envelope.reply_to is not None:
            if self.owed is None:
                self.owed = OwedAnswers()
            self.owed.add(deferred)
        if self.gate is not None and self.gate.probing:
            self.gate.deferred = deferred

    def settled(self, deferred: Deferred) -> None:
        if self.owed is not None:
            self.owed.discard(deferred)

    def start_task(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self.tasks is None:
            self.tasks = InstanceTasks()
        self.tasks.start(self, fn, args)

    # ---- after the host is gone ------------------------------------------------

    def sweep(self, code: ReasonCode) -> None:
        """Dead-letter whatever is still queued, owed or signalled; STOPPED."""
        mailbox = self.mailbox
        while mailbox.queue:
            endings.dead_letter(self, mailbox.queue.popleft(), code)
        if self.owed:
            self.owed.abandon(self, code)
        dead_letter_signals(self, code)
        if mailbox.closed is None:
            mailbox.closed = code
        mailbox.wake_all_waiters()
        if self.state is not STOPPED:
            if self.state is not STOPPING:
                self.move(STOPPING)  # from RUNNING or SUSPENDED
            self.finish()
