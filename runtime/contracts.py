"""The contracts between the kernel's parts, named: who may use what of whom.

The kernel is one object per actor (`ActorCell`, runtime/cell.py) composed of
parts that each hold one idea (admission, the drain, eager dispatch, endings,
the control lane, the breaker gate, owed answers, concurrent handlers,
batches, instance tasks). The parts are written against these protocols, not
against the classes that implement them, so the import graph of runtime/ has
no cycle (tests/runtime/test_kernel_structure.py checks it):

- `Cell`: what the parts share of one actor's runtime side (ActorCell). Its
  fields are documented once, here.
- `Supervised`: what a parent may do to an actor it supervises (ActorCell, as
  `ActorSystem.spawn_child` hands it out). supervisors/ use this and nothing
  else of the kernel's insides.
- `Parent`: what the kernel tells an actor's parent (a supervisor's link, or
  the actor system itself).
- `System`: what an actor may use of its actor system (`context.system`).
- runtime/kernel.py's `Kernel`: what the parts and refs use of the actor system.

Fields typed `Any` hold objects of the kernel's own parts (named in the
comment): their modules depend on this one, so it cannot name their classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.lifecycle import CellState
from exoarmur.runtime.mailbox import Mailbox, MailboxStatistics, Overflow

from exoarmur.runtime.kernel import Kernel

if TYPE_CHECKING:
    from exoarmur.runtime.deadletters import DeadLetters
    from exoarmur.runtime.deferred import Deferred
    from exoarmur.runtime.errors import ExoarmurError
    from exoarmur.runtime.host import Host
    from exoarmur.runtime.ref import ActorRef

__all__ = ["ActorInfo", "Cell", "Parent", "Supervised", "System"]


@attrs.frozen
class ActorInfo:
    """One actor as data (for describing a tree)."""

    path: str
    actor: str  # its class's qualified name
    state: CellState
    restarts: int
    mailbox: MailboxStatistics


class Supervised(Protocol):
    """What a parent may do to an actor it supervises (`ActorSystem.spawn_child`)."""

    path: str
    ref: ActorRef
    actor_type: type  # an Actor subclass
    state: CellState
    restarts: int  # fresh instances made after crashes or wind-downs
    start_failed: bool  # the last fresh instance failed in __init__ or `started`

    def take_crashed_on(self) -> Envelope | None:
        """The envelope the last crash interrupted, once (a retry hands it back)."""

    def resume(self) -> None:
        """SUSPENDED -> RUNNING: a fresh instance (made by its drain, which runs
        its `started` hook) takes the mailbox the crashed one left."""

    async def restart(self) -> ExoarmurError | None:
        """SUSPENDED -> RUNNING now, the fresh instance's `started` hook run in
        the caller's task (children restart one after another, in start
        order); the audited error, and still SUSPENDED, if it could not start."""

    async def suspend(self, *, deadline: float) -> None:
        """RUNNING -> SUSPENDED without a crash (its parent restarting healthy
        siblings): the handler running now is cut at `deadline`, `stopping`
        runs (bounded by it); the mailbox keeps its mail for `resume`."""

    def request_stop(self, *, code: ReasonCode, deadline: float) -> None:
        """Close the mailbox at once (sends get `code`); what is queued is
        handled until `deadline`, the rest dead-lettered; then STOPPED."""

    async def wait_stopped(self) -> None: ...

    def fail_fast(self, code: ReasonCode) -> None:
        """Every send refused with `code` (BREAKER_OPEN), queued mail dead-lettered."""

    def admit(self, *, probes: int | None = None) -> None:
        """End `fail_fast`; with `probes`, only that many envelopes pass for now,
        each reported to the parent as it ends (`Parent.child_probed`)."""

    def redeliver(self, env: Envelope) -> bool:
        """`env` first in the mailbox (a retry); False, nothing queued, if it does not fit."""

    def info(self) -> ActorInfo: ...


class Parent(Protocol):
    """Who decides what happens to an actor after it crashes: its supervisor,
    or the actor system (which resumes at once, as Akka's default does)."""

    def child_crashed(self, child: Supervised, error: ExoarmurError) -> None:
        """`child` crashed (already audited) and is SUSPENDED: its mailbox keeps
        accepting within its policy, nothing is handled. Call `child.resume()`
        now or later (after a backoff), or `child.request_stop(...)`."""

    def child_exited(self, child: Supervised) -> None:
        """`child` has STOPPED (its own `context.stop()`, or any stop request)."""

    def child_reported(self, child: Supervised, code: ReasonCode, detail: str) -> None:
        """`child` reports a failed dependency (`context.report_failure`) and runs on."""

    def child_probed(self, child: Supervised, ok: bool | None) -> None:
        """A probe let in by `admit(probes=...)` ended: handled well (True),
        failed (False: a dependency failure reported while handling it), or
        never handled (None: it expired). A crash is reported as a crash."""


class Cell(Supervised, Protocol):
    """One actor's runtime side, as the kernel's parts share it.

    Invariants (each held by a part, and checked by tests/runtime/):
    - `state` moves only along runtime/lifecycle.py's table.
    - `scheduled` is True while a drain, or a handler run in a caller's stack
      (eager dispatch), owns the mailbox: nothing else handles its mail then.
    - `instance_dead`: the instance crashed or was wound down; nothing is
      handled until a fresh one is made (runtime/instances.py).
    - Every accepted envelope ends exactly once (runtime/endings.py).
    """

    # Who it is (and, from Supervised: path, ref, actor_type, state, restarts,
    # start_failed).
    system: System
    kwargs: Mapping[str, Any]
    tenant: str | None  # set: every envelope it takes carries this tenant
    context: Any  # its ActorContext (runtime/context.py)
    parent: Parent
    start_soon: Callable[..., None]  # its host's: drains, workers, instance tasks
    # Its class's handler tables (runtime/actor.py).
    dispatch: dict[type, tuple[Callable[..., Any], bool]]  # message type -> (handler, is async)
    throughput: int
    concurrent: frozenset[type]
    batched: frozenset[type]
    per_item: frozenset[type]
    urgent: frozenset[type]
    # Its mail.
    mailbox: Mailbox
    scheduled: bool
    parked: Any  # the future an idle drain waits on (runtime/backend.py's park)
    # Its lifecycle.
    stop_deadline: float  # inf until a stop; every handler is cut by it
    suspend_deadline: float | None  # set by suspend(): the drain winds down by then
    suspended: anyio.Event | None  # set once the wind-down is done
    stopped: anyio.Event | None  # set at STOPPED
    # Its instance.
    actor: Any  # the instance running now (of actor_type)
    instance_dead: bool
    crashed_on: Envelope | None  # the envelope the last crash interrupted, until taken
    failure_reported: bool  # context.report_failure() since the last probe began
    scope: anyio.CancelScope | None  # of the async handler the drain runs now
    # Its parts, made when first needed (an idle actor stays small).
    inflight: Any  # InFlight | None: concurrent handlers (runtime/inflight.py)
    gate: Any  # Gate | None: the breaker gate (runtime/gate.py)
    owed: Any  # OwedAnswers | None: deferred answers (runtime/owed.py)
    tasks: Any  # InstanceTasks | None: context.start_task (runtime/instance_tasks.py)

    def schedule(self) -> None:
        """Make sure a drain runs for what is queued (or will, after resume)."""

    def move(self, to: CellState) -> None:
        """One transition of runtime/lifecycle.py's table (a bug otherwise)."""

    def down(self, error: ExoarmurError) -> None:
        """After a crash: the instance's work is cancelled; its parent decides."""

    def finish(self) -> None:
        """STOPPING -> STOPPED: unregistered, waiters woken, the parent told."""

    def deferring(self, deferred: Deferred) -> None: ...

    def settled(self, deferred: Deferred) -> None: ...

    def start_task(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None: ...

    def callback_crashed(self, crash: Any) -> None:
        """A CallbackCrash (runtime/deferred.py): the instance crashes in its drain."""


class System(Kernel, Protocol):
    """What an actor may use of its actor system (`context.system`), beside
    what the kernel's parts use of it (`Kernel`)."""

    name: str
    dead_letters: DeadLetters
    fatal: ExoarmurError | None

    async def spawn(
        self,
        actor_type: type,
        *,
        name: str,
        kwargs: Mapping[str, Any] | None = None,
        capacity: int | None = None,
        overflow: Overflow | str | None = None,
        tenant: str | None = None,
    ) -> ActorRef: ...

    async def spawn_child(
        self,
        actor_type: type,
        *,
        name: str,
        parent: Parent,
        host: Host,
        kwargs: Mapping[str, Any] | None = None,
        tenant: str | None = None,
    ) -> Supervised: ...

    async def open_host(self, name: str) -> Host: ...

    def lookup(self, path: str) -> ActorRef: ...

    def find(self, path: str) -> ActorRef | None: ...

    def paths(self) -> list[str]: ...

    def info(self, path: str) -> ActorInfo: ...

    async def stop(self, ref: ActorRef, *, timeout: float | None = None) -> None: ...

    @property
    def stopping(self) -> bool: ...
