"""The runtime side of one actor: its mailbox, its drain, its stop.

Where a message waits: in `Mailbox.queue` until a drain takes it, or, for a
`wait`-policy sender with no room, in `Mailbox.wait_for_room`.

Who runs it: an idle actor holds no task (on asyncio, none once it has been
idle for PARK_SECONDS to twice that, runtime/backend.py). The send that makes the mailbox
non-empty schedules `_drain` in the cell's host task group (the system's, or its
supervisor's). The drain handles up to `throughput` envelopes per turn without
yielding, yields once between turns, lingers two scheduler passes when the mailbox
empties (so a ping-pong asker finds it still running), then returns. On asyncio
it lingers one pass and then stays parked a moment (`backend.park`): the next
send wakes it, which costs less than anyio's spawn. One exception: an ask of an
idle actor whose handler is a plain `def` is handled at once in the asker's
stack (`handle_now`, eager dispatch), the answer the drain would have given,
without the pass; tells always queue.

Where timeouts come from: the envelope's deadline. It is checked when the
envelope is taken (a plain `def` handler cannot suspend, so that is enough) and
an `async def` handler runs in a cancel scope at that deadline (or the stop
deadline, whichever is first).

Beside the drain: concurrent handlers (runtime/inflight.py), batch handlers
(runtime/batch.py) and the tasks of an instance (runtime/instance_tasks.py),
all mixed into ActorCell.

States (a transition table; anything else is a bug):
    RUNNING   -> SUSPENDED   a handler crashed; the parent is told (`Parent`)
    SUSPENDED -> RUNNING     the parent resumed it: a fresh instance, same mailbox
    RUNNING | SUSPENDED -> STOPPING -> STOPPED
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import outcome

from exoarmur.runtime.actor import Actor, Handler
from exoarmur.runtime.backend import Reply
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.context import CURRENT, ActorContext, Parent
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ActorCrashed, ExoarmurError
from exoarmur.runtime.batch import BatchHandlers
from exoarmur.runtime.deferred import CallbackCrash, Deferred
from exoarmur.runtime.inflight import ConcurrentHandlers, InFlight
from exoarmur.runtime.instance_tasks import InstanceTasks
from exoarmur.runtime.mailbox import Mailbox, Overflow
from exoarmur.runtime.messages import timeout_category
from exoarmur.runtime.timeouts import TimeoutCategory

if TYPE_CHECKING:
    from exoarmur.runtime.system import ActorSystem


class CellState(enum.Enum):
    RUNNING = "running"
    SUSPENDED = "suspended"  # crashed; its parent has not resumed it yet
    STOPPING = "stopping"
    STOPPED = "stopped"

    # Members are singletons compared by identity: object's hash (a C slot)
    # says the same as Enum's (a Python call, twice per state change).
    __hash__ = object.__hash__


TRANSITIONS: Mapping[CellState, frozenset[CellState]] = {
    CellState.RUNNING: frozenset({CellState.SUSPENDED, CellState.STOPPING}),
    CellState.SUSPENDED: frozenset({CellState.RUNNING, CellState.STOPPING}),
    CellState.STOPPING: frozenset({CellState.STOPPED}),
    CellState.STOPPED: frozenset(),
}

# The states as module names. On Python 3.11 reading a member off an enum class
# goes through EnumType.__getattr__'s hook: 0.1 µs, five times a global read,
# and the drain and the crash path read states often.
RUNNING, SUSPENDED, STOPPING, STOPPED = CellState.RUNNING, CellState.SUSPENDED, CellState.STOPPING, CellState.STOPPED


# Control signals. Supervision adds its own; the lane holds a handful at most.
STOP = "stop"


LINGER_PASSES = 2
# Where an idle drain then parks (asyncio), one pass is enough: a later send wakes it.
LINGER_PASSES_BEFORE_PARKING = 1

# How many eager dispatches may nest in one stack (runtime `handle_now`).
EAGER_DEPTH = 8

# Envelope field positions, for the hot loop (tuple indexing skips the
# NamedTuple property call).
MESSAGE = Envelope._fields.index("message")
DEADLINE = Envelope._fields.index("deadline")
REPLY_TO = Envelope._fields.index("reply_to")


class ActorCell(ConcurrentHandlers, BatchHandlers, InstanceTasks):
    __slots__ = (
        "path",
        "system",
        "actor_type",
        "kwargs",
        "tenant",
        "actor",
        "dispatch",
        "mailbox",
        "throughput",
        "context",
        "ref",
        "start_soon",
        "scheduled",
        "state",
        "restarts",
        "parent",
        "start_failed",
        "failure_reported",
        "crashed_on",
        "_probes_left",
        "_probes_pending",
        "_probing",
        "_probe_deferred",
        "_instance_dead",
        "_suspend_deadline",
        "_suspended",
        "_stop_deadline",
        "_scope",
        "_stopped",
        "concurrent",
        "inflight",
        "batched",
        "per_item",
        "_tasks",
        "_parked",
        "_owed",
        "_owed_settled",
    )

    def __init__(
        self,
        *,
        path: str,
        system: ActorSystem,
        actor_type: type[Actor],
        kwargs: Mapping[str, Any],
        tenant: str | None,
        mailbox: Mailbox,
        start_soon: Callable[..., None],
        parent: Parent,
    ) -> None:
        from exoarmur.runtime.ref import ActorRef

        self.path = path
        self.system = system
        self.actor_type = actor_type
        self.kwargs = kwargs
        self.tenant = tenant
        self.dispatch: dict[type, Handler] = actor_type._dispatch
        self.mailbox = mailbox
        self.throughput = actor_type.throughput
        self.context = ActorContext(self)
        self.ref = ActorRef(self)
        self.start_soon = start_soon
        self.scheduled = False
        self.state = RUNNING
        self.restarts = 0
        self.parent = parent
        # The last fresh instance failed in __init__ or `started` (not in a handler).
        self.start_failed = False
        # Set by context.report_failure(); read and cleared around each probe.
        self.failure_reported = False
        # The envelope the last crash interrupted (kept while SUSPENDED, so a
        # parent with a retry policy may hand it to the fresh instance).
        self.crashed_on: Envelope | None = None
        # Breaker gate: probes that may still enter a gated mailbox, and those
        # admitted but not yet handled (the drain reports their outcome).
        self._probes_left = 0
        self._probes_pending = 0
        # A probe's handler is running; the Deferred it returned, if it did.
        self._probing = False
        self._probe_deferred: Deferred | None = None
        # The instance crashed: nothing may be handled until a fresh one is made.
        self._instance_dead = False
        # Set by suspend(): the drain winds the instance down by then.
        self._suspend_deadline: float | None = None
        self._suspended: anyio.Event | None = None
        self._stop_deadline = float("inf")
        self._scope: anyio.CancelScope | None = None  # of the async handler running now
        self._stopped: anyio.Event | None = None
        # Message types whose handlers run concurrently, and those running.
        self.concurrent = actor_type._concurrent
        self.inflight = InFlight(actor_type.concurrency) if self.concurrent else None
        self.batched = actor_type._batched  # message types handled in runs (runtime/batch.py)
        self.per_item = actor_type._per_item  # ... whose handlers answer each message of a run
        # Tasks the instance started with context.start_task(): they end with it.
        self._tasks: set[anyio.CancelScope] | None = None  # made by the first one (idle actors stay small)
        self._parked: Any = None  # the future an idle drain waits on (backend.park)
        # Deferred answers not yet given (context.defer), and a stop waiting for them.
        self._owed: set[Deferred] | None = None
        self._owed_settled: anyio.Event | None = None
        self.actor = self._new_actor()

    # ---- lifecycle -------------------------------------------------------

    def _new_actor(self) -> Actor:
        actor = self.actor_type(**self.kwargs)
        actor.context = self.context
        return actor

    def _move(self, to: CellState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.path}: illegal transition {self.state} -> {to}")
        self.state = to

    async def run_started(self) -> None:
        """Run the `started` hook under the DEFAULT deadline. A coded error it
        raises keeps its code; any other exception is ACTOR_CRASHED."""
        if not self.actor_type._has_started:
            return
        seconds = self.system.timeouts.seconds[TimeoutCategory.DEFAULT]
        with anyio.CancelScope(deadline=self.system.now() + seconds) as scope:
            try:
                await self.actor.started()
            except ExoarmurError as exc:
                if isinstance(exc, ActorCrashed):
                    raise self.system.failure(
                        "crashed", exc.code, path=self.path, detail=f"started: {exc.detail}"
                    ) from exc
                # A coded failure keeps its code (TIMEOUT_NATS_CONNECT says more
                # than ACTOR_CRASHED); audited once, here.
                self.system.audit_error(exc, kind="crashed", path=self.path, envelope=None)
                raise
            except Exception as exc:
                raise self.system.failure(
                    "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, detail=f"started: {exc!r}"
                ) from exc
        if scope.cancelled_caught:
            raise self.system.failure(
                "deadline", ReasonCode.DEADLINE_EXCEEDED, path=self.path, detail="started hook"
            )

    def _down(self, error: ExoarmurError) -> None:
        """After a crash: suspend and let the parent decide. Whatever else the
        dead instance was running (concurrent handlers) is cancelled. A crash
        of an actor already stopping or suspended, or being suspended (a
        handler that began before its parent asked) ends the instance and
        nothing more: the stop or the wind-down that was asked goes on (a
        stop handles nothing further, `_drain_stopping`), and no parent
        decides again."""
        if self.inflight is not None:
            self.inflight.cancel_all()
        if self._scope is not None:
            self._scope.cancel()
        if self._tasks:
            self._cancel_tasks()
        if self._owed:
            self._abandon_owed_at_crash()
        if self.state is not RUNNING or self._suspended is not None:
            return
        self._move(SUSPENDED)
        self.parent.child_crashed(self, error)

    def resume(self) -> None:
        """SUSPENDED -> RUNNING: a fresh instance (made by the drain, which runs its
        `started` hook) handles the mailbox the crashed one left."""
        self._move(RUNNING)
        self.restarts += 1
        self._schedule()

    async def restart(self) -> ExoarmurError | None:
        """SUSPENDED -> RUNNING, in the caller's task: build the fresh instance and
        run its `started` hook now (as spawn does), so a supervisor restarts its
        children one after another, in start order. The audited error (the actor
        stays SUSPENDED) if the fresh instance could not start."""
        if self.state is not SUSPENDED:
            return None
        failure = await self._fresh_instance()
        if failure is None and self.state is SUSPENDED:
            self._move(RUNNING)
            self.restarts += 1
            self._schedule()
        return failure

    async def suspend(self, *, deadline: float) -> None:
        """RUNNING -> SUSPENDED without a crash (a supervisor restarting healthy
        siblings): the handler running now is cut at `deadline`, `stopping` runs
        (bounded by it), the instance is dropped; the mailbox stays open and
        keeps its mail for the fresh instance `resume()` makes."""
        if self.state is not RUNNING:
            return
        self._suspend_deadline = deadline
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        if self.inflight is not None:
            self.inflight.tighten(deadline)
        if self._suspended is None:
            self._suspended = anyio.Event()
        event = self._suspended
        self.mailbox.push_control(STOP)  # wakes an idle drain
        self._schedule()
        await event.wait()

    def redeliver(self, env: Envelope) -> bool:
        """Put `env` at the head of the mailbox (a retry of the envelope a crash
        interrupted): handled first by the fresh instance. False, and nothing
        queued, if the mailbox is closed or full (the capacity is never exceeded)."""
        mailbox = self.mailbox
        if mailbox.closed is not None or len(mailbox.queue) >= mailbox.capacity:
            return False
        mailbox.queue.appendleft(env)
        mailbox.accepted += 1
        self._schedule()
        return True

    def gate(self, code: ReasonCode) -> None:
        """Fail fast: every send is refused with `code` (BREAKER_OPEN), and what
        is queued is dead-lettered with it (askers told), until `ungate`."""
        mailbox = self.mailbox
        if mailbox.closed is not None and mailbox.closed is not code:
            return  # stopping: the stop's code stands
        mailbox.closed = code
        self._probes_left = 0
        mailbox.wake_all_waiters()
        queue = mailbox.queue
        while queue:
            self.dead_letter(queue.popleft(), code)
        self._probes_pending = 0  # every queued probe went with the queue

    def ungate(self, *, probes: int | None = None) -> None:
        """Lift the gate; with `probes`, only that many envelopes are let in (the
        HALF_OPEN probes), each reported to the parent as it ends."""
        mailbox = self.mailbox
        if mailbox.closed is None or self.state is STOPPING or self.state is STOPPED:
            return
        if probes is None:
            mailbox.closed = None
            self._probes_left = 0
        else:
            self._probes_left = probes

    async def _drain_probes(self) -> None:
        """Handle admitted probes one by one and report each outcome."""
        queue = self.mailbox.queue
        now = self.system.now
        while self._probes_pending and queue and self.state is RUNNING:
            env = queue.popleft()
            self._probes_pending -= 1
            if env.deadline <= now():
                self.mailbox.expired += 1
                self.dead_letter(env, ReasonCode.DEADLINE_EXCEEDED)
                self.parent.child_probed(self, None)
                continue
            self.failure_reported = False
            fn, is_async = self.dispatch[type(env.message)]
            self._probing, self._probe_deferred = True, None
            try:
                crash = await self._handle_async(fn, env) if is_async else self._handle_sync(fn, env)
            finally:
                self._probing = False
            if crash is None and self._probe_deferred is not None:
                await self._probe_settled(env)
            if crash is not None:
                self._down(crash)  # the parent counts the crash
                return
            self.parent.child_probed(self, not self.failure_reported)

    async def _probe_settled(self, env: Envelope) -> None:
        """A probe answered later is judged when its answer comes (or its
        deadline passes), so the dependency failures it reports count."""
        deferred, self._probe_deferred = self._probe_deferred, None
        assert deferred is not None
        if deferred.settled:
            return
        settled = anyio.Event()
        deferred.on_settled = settled.set
        with anyio.move_on_after(max(env.deadline - self.system.now(), 0.0)):
            await settled.wait()

    async def _wind_down(self) -> None:
        """The drain's half of suspend()."""
        deadline = self._suspend_deadline
        self._suspend_deadline = None
        if self.inflight is not None:
            await self.inflight.wait_empty()  # each is cut at `deadline` at the latest
        if self.actor_type._has_stopping and not self._instance_dead:
            with anyio.CancelScope(deadline=deadline):
                try:
                    await self.actor.stopping()
                except Exception as exc:
                    self.system.failure(
                        "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, detail=f"stopping: {exc!r}"
                    )
        self._cancel_tasks()
        self._instance_dead = True
        self._move(SUSPENDED)
        event, self._suspended = self._suspended, None
        if event is not None:
            event.set()

    async def _fresh_instance(self) -> ExoarmurError | None:
        """A new instance with its `started` hook run; the (audited) error if
        building it or its hook failed, with `start_failed` set (a failure to
        start, not a crash in a handler: the system's parent stops such an actor)."""
        failure = self._new_instance()
        if failure is not None or not self.actor_type._has_started:
            return failure
        try:
            await self.run_started()
        except ExoarmurError as exc:
            self._instance_dead = self.start_failed = True
            return exc  # run_started emitted its audit event
        return None

    def _new_instance(self) -> ExoarmurError | None:
        """A new instance in place of the dead one, its `started` hook not run
        yet; the (audited) error if its __init__ failed."""
        try:
            self.actor = self._new_actor()
        except ExoarmurError as exc:
            self._instance_dead = self.start_failed = True
            self.system.audit_error(exc, kind="crashed", path=self.path, envelope=None)
            return exc  # a coded failure keeps its code, as in `started`
        except Exception as exc:
            self._instance_dead = self.start_failed = True
            return self.system.failure(
                "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, detail=f"restart: {exc!r}"
            )
        self._instance_dead = self.start_failed = False
        return None

    def _replaced_at_once(self) -> bool:
        """After a crash in the drain's turn: True if its parent resumed it at
        once (in this stack) and the fresh instance was made here, so the turn
        goes on with it. False when something must come first (a control
        signal, a wind-down, probes, a `started` hook to await, a full
        in-flight table): nothing is done here, the loop top sees to it. False
        too when __init__ failed: a crash of its own, decided by the parent
        again."""
        if (
            self.state is not RUNNING
            or self.mailbox.control
            or self._suspend_deadline is not None
            or self._probes_pending
            or self.actor_type._has_started
            or (self.inflight is not None and self.inflight.full)
        ):
            return False
        failure = self._new_instance()
        if failure is not None:
            self._down(failure)
            return False
        return True

    def request_stop(self, *, code: ReasonCode, deadline: float) -> None:
        """Close the mailbox to new sends at once (they get `code`); the drain
        handles what is queued until `deadline`, dead-letters the rest with
        `code`, then runs `stopping`. A handler running now is cut at `deadline`."""
        state = self.state
        if state is STOPPING or state is STOPPED:
            if state is STOPPING and deadline < self._stop_deadline:
                self._tighten_stop_deadline(deadline)
            return
        mailbox = self.mailbox
        mailbox.closed = code
        mailbox.wake_all_waiters()
        self._move(STOPPING)
        self._tighten_stop_deadline(deadline)
        hook = self.actor_type._has_stopping and not self._instance_dead
        if not self.scheduled and not mailbox.queue and not hook and not self._owed:
            self._unpark()
            self._finish()
            return
        mailbox.push_control(STOP)  # wakes an idle drain; a busy one sees the state
        self._schedule()

    def _tighten_stop_deadline(self, deadline: float) -> None:
        self._stop_deadline = deadline
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        if self.inflight is not None:
            self.inflight.tighten(deadline)

    async def wait_stopped(self) -> None:
        if self.state is STOPPED:
            return
        if self._stopped is None:
            self._stopped = anyio.Event()
        await self._stopped.wait()

    def _finish(self) -> None:
        if self._suspended is not None:
            self._suspended.set()  # a suspend() that a stop overtook ends too
            self._suspended = None
        self._move(STOPPED)
        self.system._unregister(self)
        if self._stopped is not None:
            self._stopped.set()
        self.parent.child_exited(self)

    # ---- sending (called by ActorRef) -------------------------------------

    def _schedule(self) -> None:
        # A suspended actor's mail waits for resume(); it is not handled.
        if not self.scheduled and self.state is not SUSPENDED:
            self.scheduled = True
            parked, self._parked = self._parked, None
            if parked is None:
                self.start_soon(self._drain, name=self.path)
            elif not parked.done():
                parked.set_result(True)  # the parked drain goes on
            else:
                # Its task is being cancelled with its host (the system or a
                # supervisor going away): nothing more is drained here.
                self.scheduled = False

    def _unpark(self) -> None:
        """End a parked drain (it has nothing left to do)."""
        parked, self._parked = self._parked, None
        if parked is not None and not parked.done():
            parked.set_result(False)

    def offer(self, env: Envelope) -> bool:
        """Fast path. True: accepted. False: policy `wait` and no room (await
        `offer_waiting`). Raises the coded error for reject/closed."""
        mailbox = self.mailbox
        if mailbox.closed is None:
            queue = mailbox.queue
            if len(queue) < mailbox.capacity and not mailbox.waiters:
                queue.append(env)
                mailbox.accepted += 1
                if not self.scheduled:
                    self._schedule()
                return True
            overflow = mailbox.overflow
            if overflow is Overflow.WAIT:
                return False
            if overflow is Overflow.SHED_OLDEST:
                oldest = queue.popleft()
                mailbox.shed += 1
                self.dead_letter(oldest, ReasonCode.OVERLOAD_SHED)
                queue.append(env)
                mailbox.accepted += 1
                return True
            return self._reject(env, ReasonCode.OVERLOAD_MAILBOX_FULL)
        if self._probes_left and len(mailbox.queue) < mailbox.capacity:
            # Gated (HALF_OPEN): a probe is let through.
            self._probes_left -= 1
            self._probes_pending += 1
            mailbox.queue.append(env)
            mailbox.accepted += 1
            self._schedule()
            return True
        return self._reject(env, mailbox.closed)

    def offer_nowait(self, env: Envelope) -> None:
        """As `offer`, but a `wait`-policy mailbox without room rejects at once."""
        if not self.offer(env):
            self._reject(env, ReasonCode.OVERLOAD_MAILBOX_FULL)

    async def offer_waiting(self, env: Envelope) -> None:
        if await self.mailbox.wait_for_room(env):
            self._schedule()
            return
        self._reject(env, self.mailbox.closed or ReasonCode.DEADLINE_EXCEEDED)

    def handle_now(self, env: Envelope) -> bool:
        """Eager dispatch (`ask`): handle `env` at once, in the caller's
        stack, if this actor is idle, its mailbox open, and its handler for
        the message a plain `def` (which cannot suspend): the drain would take
        it next anyway; this saves the scheduler pass and the drain. Exactly
        what the drain does with it (answer, coded answer, crash); sends made
        meanwhile to this actor queue, and a drain is scheduled for them
        after. At most EAGER_DEPTH calls nest (an eager handler asking
        eagerly); past it, and otherwise, False: nothing was done, offer it."""
        message_type = type(env[MESSAGE])
        fn, is_async = self.dispatch[message_type]
        system = self.system
        if (
            is_async
            or self.mailbox.closed is not None
            or message_type in self.batched
            or system.eager_depth >= EAGER_DEPTH
            or not self._idle()
        ):
            return False
        reply = env[REPLY_TO]
        # The asker's place among the timers is taken first, as it would be for
        # queued mail: asks the handler makes at the same deadline expire
        # after it (rule R7). Its timer is set only if no answer came now.
        place = reply.reserve() if reply is not None else 0
        self.mailbox.accepted += 1
        self.scheduled = True  # taken as a drain is: sends meanwhile only queue
        system.eager_depth += 1
        token = CURRENT.set(self.context)
        try:
            crash = self._handle_sync(fn, env)
            if crash is not None:
                self._down(crash)
        except BaseException:
            self._cancelled_while_handling(env)  # as the drain answers (KeyboardInterrupt...)
            raise
        finally:
            CURRENT.reset(token)
            self.context.envelope = None
            system.eager_depth -= 1
            if reply is not None and not reply.done:
                reply.arm(env[DEADLINE], partial(self.ask_expired, env), place)
            self._ran_now()
        return True

    def _ran_now(self) -> None:
        """After a handler ran in a caller's stack (`handle_now`,
        `signal_now`), with `scheduled` set meanwhile so nothing nested in:
        a drain for what came in the meantime (a suspended actor's waits for
        resume())."""
        self.scheduled = False
        mailbox = self.mailbox
        if mailbox.queue or mailbox.control or self._instance_dead or self.state is STOPPING:
            self._schedule()

    def _reject(self, env: Envelope, code: ReasonCode) -> bool:
        self.mailbox.rejected += 1
        raise self.system.failure("rejected", code, path=self.path, envelope=env)

    # ---- endings of an accepted envelope ----------------------------------

    def dead_letter(self, env: Envelope, code: ReasonCode, detail: str = "") -> None:
        """Record `env` as never handled. Its asker, if still waiting, gets the
        coded error, and that is the one audit event; otherwise the dead letter is."""
        system = self.system
        system._record_dead_letter(self, env, code)
        reply: Reply | None = env.reply_to
        if reply is None or not reply.done:
            error = system.failure("dead_letter", code, path=self.path, envelope=env, detail=detail)
            if reply is not None:
                reply.resolve(outcome.Error(error))

    def ask_expired(self, env: Envelope, reply: Reply) -> BaseException:
        """The asker's deadline passed first. Started -> category code, else
        DEADLINE_EXCEEDED: decided by state, not by which timer ran first."""
        code = (
            timeout_category(type(env.message)).code if reply.started else ReasonCode.DEADLINE_EXCEEDED
        )
        return self.system.failure("deadline", code, path=self.path, envelope=env)

    def _overran(self, env: Envelope, code: ReasonCode) -> None:
        reply: Reply | None = env.reply_to
        if reply is None or not reply.done:
            error = self.system.failure("deadline", code, path=self.path, envelope=env)
            if reply is not None:
                reply.resolve(outcome.Error(error))

    def _answered_with(self, env: Envelope, error: ExoarmurError) -> bool:
        """A coded error raised by a handler is its answer, not a crash (as a
        gen_server replies {error, Reason} and lives on): the asker gets it, it
        is audited once. ActorCrashed is the exception: raising it is crashing.
        True if it was an answer."""
        if isinstance(error, ActorCrashed):
            return False
        self.system.audit_error(error, kind="answered", path=self.path, envelope=env)
        reply: Reply | None = env.reply_to
        if reply is not None and not reply.resolve(outcome.Error(error)):
            self.system._late_replies += 1
        return True

    def _crashed(self, env: Envelope, exc: Exception) -> ExoarmurError:
        self._instance_dead = True
        self.crashed_on = env
        if isinstance(exc, ActorCrashed) and exc.code is ReasonCode.ESCALATED:
            # A supervisor giving up: the chain of failures is in the detail.
            code, detail = ReasonCode.ESCALATED, exc.detail
        else:
            code, detail = ReasonCode.ACTOR_CRASHED, f"{type(exc).__name__}: {exc}"
        error = self.system.failure("crashed", code, path=self.path, envelope=env, detail=detail)
        error.__cause__ = exc
        reply: Reply | None = env.reply_to
        if reply is not None:
            reply.resolve(outcome.Error(error))
        return error

    # ---- the drain --------------------------------------------------------

    async def _drain(self) -> None:
        CURRENT.set(self.context)
        mailbox = self.mailbox
        queue = mailbox.queue
        now = self.system.now
        checkpoint = self.system.backend.checkpoint
        park = self.system.backend.park
        linger_passes = LINGER_PASSES if park is None else LINGER_PASSES_BEFORE_PARKING
        context = self.context
        dispatch = self.dispatch
        concurrent = self.concurrent
        batched = self.batched
        inflight = self.inflight
        popleft = queue.popleft
        current: Envelope | None = None
        budget = 0
        carry = False  # a crash ended the last inner loop: its turn's budget goes on
        try:
            while True:
                if mailbox.control:
                    await self._take_control()
                state = self.state
                if state is STOPPING:
                    await self._drain_stopping()
                    return
                if state is RUNNING and self._suspend_deadline is not None:
                    await self._wind_down()
                    state = self.state
                if state is SUSPENDED:
                    # Linger (and park) as an idle drain does: a parent that
                    # resumes soon reuses this task instead of a new one.
                    for _ in range(linger_passes):
                        await checkpoint()
                        if self.state is not SUSPENDED:
                            break
                    else:
                        self.scheduled = False  # resume() schedules (or wakes) a drain
                        if park is None or not await park(self):
                            return
                    continue
                if self._probes_pending and not self._instance_dead:
                    await self._drain_probes()
                    continue
                if self._instance_dead:
                    failure = await self._fresh_instance()
                    if failure is not None:
                        self._down(failure)  # the parent decides again
                        continue
                if inflight is not None and inflight.full:
                    await inflight.wait_for_room()  # the mail waits in the mailbox meanwhile
                    continue
                if carry:
                    carry = False
                else:
                    budget = self.throughput
                actor = self.actor
                while queue and budget:
                    budget -= 1
                    env = current = popleft()
                    if mailbox.waiters:
                        mailbox.hand_over_slot()
                    if env[DEADLINE] <= now():
                        mailbox.expired += 1
                        self.dead_letter(env, ReasonCode.DEADLINE_EXCEEDED)
                        continue
                    message = env[MESSAGE]
                    fn, is_async = dispatch[type(message)]
                    if is_async:
                        if type(message) in concurrent:
                            self._start_concurrent(fn, self._take_run(env) if type(message) in batched else env)
                            if inflight.full:  # type: ignore[union-attr]
                                break
                            continue
                        if type(message) in batched:
                            crash = await self._handle_batch(fn, env)
                        else:
                            crash = await self._handle_async(fn, env)
                        if crash is not None:
                            self._down(crash)
                        if (
                            self.state is not RUNNING
                            or self._instance_dead
                            or self._suspend_deadline is not None
                            or self._probes_pending
                        ):
                            break
                        continue
                    # Inline sync path: the tell target is won or lost here.
                    reply = env[REPLY_TO]
                    if reply is not None:
                        reply.started = True
                    context.envelope = env
                    mailbox.processed += 1
                    try:
                        result = fn(actor, message)
                    except Exception as exc:
                        if isinstance(exc, ExoarmurError) and self._answered_with(env, exc):
                            continue
                        self._down(self._crashed(env, exc))
                        if budget and self._replaced_at_once():
                            actor = self.actor
                            continue  # the fresh instance goes on with this turn
                        break  # the loop top makes a fresh instance, if resumed
                    if reply is not None and type(result) is not Deferred and not reply.resolve(outcome.Value(result)):
                        self.system._late_replies += 1
                current = None
                context.envelope = None
                if self.state is SUSPENDED:
                    continue  # straight to the linger above: it checkpoints
                if self._instance_dead and budget and not mailbox.control and self.state is RUNNING:
                    # Resumed at once (its parent decided in this stack): the
                    # fresh instance goes on with this turn, no pass lost.
                    carry = True
                    continue
                if mailbox.control or queue or self._instance_dead:
                    await checkpoint()
                    continue
                # Linger a scheduler pass or two before giving the task up (or
                # parking it), so a ping-pong asker finds the drain still
                # running (trio may run the drain before the asker in a batch).
                for _ in range(linger_passes):
                    await checkpoint()
                    if queue or mailbox.control:
                        break
                else:
                    self.scheduled = False
                    if park is None or not await park(self):
                        return
                    # woken by _schedule(), which set `scheduled` again
        except BaseException:
            # Cancelled (the host is going away) or a fatal error: the envelope in
            # hand, if its asker still waits, ends with SHUTTING_DOWN.
            self.scheduled = False
            if current is not None:
                self._cancelled_while_handling(current)
            raise

    def _cancelled_while_handling(self, env: Envelope) -> None:
        reply = env.reply_to
        if reply is not None and not reply.done:
            reply.resolve(
                outcome.Error(
                    self.system.failure(
                        "dead_letter",
                        ReasonCode.SHUTTING_DOWN,
                        path=self.path,
                        envelope=env,
                        detail="cancelled while handling",
                    )
                )
            )

    def _alive(self, actor: Actor) -> bool:
        """`actor` is the instance now running (no crash, suspend or stop since)."""
        return actor is self.actor and not self._instance_dead and self.state is RUNNING

    async def _handle_async(self, fn: Callable[..., Any], env: Envelope) -> ExoarmurError | None:
        """Run an `async def` handler in a cancel scope at the envelope's deadline
        (or the stop deadline, if earlier). The crash's error if it crashed."""
        if type(env.message) in self.batched:  # outside a run (a probe, a stop): a run of one
            self._mark_taken([env])
            return await self._handle_run(fn, [env])
        reply = env.reply_to
        if reply is not None:
            reply.started = True
        self.context.envelope = env
        self.mailbox.processed += 1
        deadline = env.deadline if env.deadline < self._stop_deadline else self._stop_deadline
        result = None  # stays None if the scope cuts the handler
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                try:
                    result = await fn(self.actor, env.message)
                finally:
                    self._scope = None
        except ExoarmurError as exc:
            if self._answered_with(env, exc):
                return None
            return self._crashed(env, exc)
        except Exception as exc:
            return self._crashed(env, exc)
        self._settle(env, scope, result, instance_gone=self._instance_dead)  # a concurrent handler may crash it
        return None

    def _settle(self, env: Envelope, scope: anyio.CancelScope, result: Any, *, instance_gone: bool) -> None:
        """After an async handler's scope: its value to the asker, or why it was
        cut. Out of time, a value returned after that is void; the scope's
        deadline says whose deadline it was: the envelope's or the stop's."""
        if scope.cancel_called:
            if instance_gone:
                self._overran(env, ReasonCode.ACTOR_CRASHED)
            elif scope.deadline < env.deadline:
                self._overran(env, self.mailbox.closed or ReasonCode.SHUTTING_DOWN)
            else:
                self._overran(env, timeout_category(type(env.message)).code)
            return
        reply = env.reply_to
        if reply is not None and type(result) is not Deferred and not reply.resolve(outcome.Value(result)):
            self.system._late_replies += 1

    async def _take_control(self) -> None:
        """Handle the control lane: STOP markers (the state already says
        STOPPING) and signals, which go through the handlers before user mail."""
        control = self.mailbox.control
        while control:
            signal = control.popleft()
            if signal is STOP:
                continue
            if type(signal) is CallbackCrash:
                if self._alive(signal.actor):
                    self._down(self._callback_crash_error(signal))
                    return
                self._callback_crashed_after_end(signal)  # its instance crashed already
                continue
            if self._instance_dead or self.state is SUSPENDED:
                control.appendleft(signal)  # handled once a fresh instance runs
                return
            fn, is_async = self.dispatch[type(signal.message)]
            crash = await self._handle_async(fn, signal) if is_async else self._handle_sync(fn, signal)
            if crash is not None:
                if self.state is RUNNING:
                    self._down(crash)
                return

    def callback_crashed(self, crash: CallbackCrash) -> None:
        """An `ask_then` callback of this actor raised: the instance that asked
        crashes when its drain next looks at the control lane (not in the
        stack of whoever resolved the reply). Already ended: only audited."""
        if not self._alive(crash.actor):
            self._callback_crashed_after_end(crash)
            return
        self.mailbox.push_control(crash)
        self._schedule()

    def _callback_crashed_after_end(self, crash: CallbackCrash) -> None:
        """Audited, and the asker of the envelope it was for is answered with
        the crash (the callback did not answer it); nothing else crashes."""
        error = self.system.failure(
            "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, envelope=crash.envelope,
            detail=f"ask_then callback after its instance ended: {crash.exc!r}",
        )
        reply = crash.envelope.reply_to if crash.envelope is not None else None
        if reply is not None:
            reply.resolve(outcome.Error(error))

    def _callback_crash_error(self, crash: CallbackCrash) -> ExoarmurError:
        if crash.envelope is not None:
            return self._crashed(crash.envelope, crash.exc)
        self._instance_dead = True
        error = self.system.failure(
            "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, detail=f"ask_then callback: {crash.exc!r}"
        )
        error.__cause__ = crash.exc
        return error

    def deferring(self, deferred: Deferred) -> None:
        """A handler deferred its answer: an ask's is owed until resolved (a
        stop waits for it until the stop deadline); a probe's is waited for
        (`_drain_probes`)."""
        if deferred.envelope.reply_to is not None:
            if self._owed is None:
                self._owed = set()
            self._owed.add(deferred)
        if self._probing:
            self._probe_deferred = deferred

    def settled(self, deferred: Deferred) -> None:
        if self._owed is not None:
            self._owed.discard(deferred)
            if self._owed_settled is not None:
                self._owed_settled.set()

    async def _settle_owed(self, code: ReasonCode) -> None:
        """At stop: answers still owed get until the stop deadline, as a running
        handler does; then their askers get `code` (dead-lettered)."""
        with anyio.move_on_after(max(self._stop_deadline - self.system.now(), 0.0)):
            while self._owed:
                self._owed = {d for d in self._owed if not d.envelope.reply_to.done}  # a crash may answer one
                if not self._owed:
                    break
                self._owed_settled = anyio.Event()
                await self._owed_settled.wait()
        self._owed_settled = None
        self._abandon_owed(code)

    def _abandon_owed_at_crash(self) -> None:
        """The answers a crashed instance still owed die with it, as its
        running concurrent handlers do: each asker gets ACTOR_CRASHED now (as
        a gen_server's callers do), not a timeout at its deadline."""
        owed, self._owed = self._owed, None
        for deferred in owed or ():
            deferred.settled = True  # a late answer of the dead instance is void
            self._overran(deferred.envelope, ReasonCode.ACTOR_CRASHED)

    def _abandon_owed(self, code: ReasonCode) -> None:
        owed, self._owed = self._owed, None
        for deferred in owed or ():
            deferred.settled = True
            reply = deferred.envelope.reply_to
            if reply is not None and not reply.done:
                self.dead_letter(deferred.envelope, code, "its answer was deferred and never came")

    def _idle(self) -> bool:
        """Running, with nothing queued, in hand or under way: no drain, no
        concurrent handler or job. What the drain would do next is whatever
        comes now."""
        mailbox = self.mailbox
        inflight = self.inflight
        return (
            not self.scheduled
            and self.state is RUNNING
            and not self._instance_dead
            and not mailbox.control
            and not mailbox.queue
            and (inflight is None or not (len(inflight) or inflight.jobs))
        )

    def signal_now(self, message: Any) -> None:
        """A signal handled at once, in the caller's stack, when this actor is
        idle (running, nothing queued, no drain or job under way) and its
        handler for it is a plain `def`: it runs as this actor, in its own
        context (idle, it handles nothing else), and an exception crashes the
        instance through its control lane, as `call_as_self` does. Otherwise
        it is queued as `signal` queues it. What a supervisor's one_for_one
        decision costs a crash: no scheduler pass of the supervisor's own."""
        fn, is_async = self.dispatch[type(message)]
        if is_async or not self._idle():
            self.signal(message)
            return
        self.mailbox.accepted += 1
        self.mailbox.processed += 1
        self.scheduled = True  # as handle_now: what comes meanwhile queues
        token = CURRENT.set(self.context)
        try:
            fn(self.actor, message)
        except Exception as exc:
            self.callback_crashed(CallbackCrash(self.actor, None, exc))
        finally:
            CURRENT.reset(token)
            self._ran_now()

    def signal(self, message: Any, *, timeout: float | None = None) -> None:
        """Deliver a runtime signal (e.g. "your child crashed") ahead of user mail,
        whatever the mailbox's capacity. Signals to a stopped actor are dead-lettered."""
        if type(message) not in self.dispatch:
            raise TypeError(f"{self.actor_type.__qualname__} has no handler for signal {message!r}")
        now = self.system.now()
        seconds = self.system.default_seconds(type(message)) if timeout is None else timeout
        env = Envelope(message, now + seconds)
        self.mailbox.accepted += 1  # counted like any envelope: it ends exactly once
        if self.state is STOPPED:
            self.dead_letter(env, ReasonCode.ACTOR_STOPPED)
            return
        self.mailbox.push_control(env)
        self._schedule()

    def _dead_letter_signals(self, code: ReasonCode) -> None:
        control = self.mailbox.control
        while control:
            signal = control.popleft()
            if signal is not STOP:
                self.dead_letter(signal, code)

    async def _drain_stopping(self) -> None:
        """Handle what is queued until the stop deadline, dead-letter the rest,
        run `stopping`, and end. A crashed instance handles nothing more (no
        restart while stopping): its queue is dead-lettered, its hook skipped."""
        mailbox = self.mailbox
        queue = mailbox.queue
        now = self.system.now
        code = mailbox.closed or ReasonCode.SHUTTING_DOWN
        if mailbox.control and not self._instance_dead:
            await self._take_control()
        while queue and now() < self._stop_deadline and not self._instance_dead:
            env = queue.popleft()
            if env.deadline <= now():
                mailbox.expired += 1
                self.dead_letter(env, ReasonCode.DEADLINE_EXCEEDED)
                continue
            fn, is_async = self.dispatch[type(env.message)]
            if is_async:
                await self._handle_async(fn, env)
            else:
                self._handle_sync(fn, env)
        while queue:
            self.dead_letter(queue.popleft(), code)
        self._dead_letter_signals(code)
        self.context.envelope = None
        if self.inflight is not None:
            await self.inflight.wait_empty()  # each is cut at the stop deadline at the latest
        if self._owed:
            await self._settle_owed(code)
        if self.actor_type._has_stopping and not self._instance_dead:
            with anyio.move_on_after(max(self._stop_deadline - now(), 0.0)):
                try:
                    await self.actor.stopping()
                except Exception as exc:
                    self.system.failure(
                        "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, detail=f"stopping: {exc!r}"
                    )
        self._cancel_tasks()
        self.scheduled = False
        self._finish()

    def _handle_sync(self, fn: Callable[..., Any], env: Envelope) -> ExoarmurError | None:
        """One plain-`def` handler call outside the hot loop (stopping, signals).
        The crash's error if it crashed."""
        reply = env.reply_to
        if reply is not None:
            reply.started = True
        self.context.envelope = env
        self.mailbox.processed += 1
        try:
            result = fn(self.actor, env.message)
        except ExoarmurError as exc:
            if self._answered_with(env, exc):
                return None
            return self._crashed(env, exc)
        except Exception as exc:
            return self._crashed(env, exc)
        if reply is not None and type(result) is not Deferred and not reply.resolve(outcome.Value(result)):
            self.system._late_replies += 1
        return None

    def sweep(self, code: ReasonCode) -> None:
        """After the host is gone: dead-letter whatever is still queued or owed."""
        queue = self.mailbox.queue
        while queue:
            self.dead_letter(queue.popleft(), code)
        self._abandon_owed(code)
        self._dead_letter_signals(code)
        if self.mailbox.closed is None:
            self.mailbox.closed = code
        self.mailbox.wake_all_waiters()

