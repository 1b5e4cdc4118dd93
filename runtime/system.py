"""The actor system: a task group that hosts drains, a registry of paths, the
dead letters, the audit sink, the clock and the timeout policy.

    async with ActorSystem(audit=JsonlAuditSink("audit.jsonl")) as system:
        counter = await system.spawn(Counter, name="demo/counter")
        await counter.tell(Add(1))
    # leaving the block stops every actor gracefully, in reverse spawn order:
    # queued envelopes are handled until the stop deadline, the rest are
    # dead-lettered with SHUTTING_DOWN. None vanish.

If the block raises, the task group is cancelled instead and everything still
queued is dead-lettered with SHUTTING_DOWN.

The clock is the event loop's own (`now()`): every deadline in the process is
an absolute time on it. A stop may overrun its deadline by STOP_OVERRUN
(runtime/margins.py) for `stopping` hooks before they are cancelled.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs

from exoarmur.runtime.actor import Actor
from exoarmur.runtime.audit import AuditEvent, AuditSink, MemoryAuditSink
from exoarmur.runtime.backend import Backend, current_backend
from exoarmur.runtime.cell import ActorCell
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.contracts import ActorInfo, Parent, Supervised
from exoarmur.runtime.deadletters import DeadLetter, DeadLetters
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ExoarmurError, error_for
from exoarmur.runtime.host import Host, run_host
from exoarmur.runtime.instances import run_started
from exoarmur.runtime.mailbox import Mailbox, MailboxConfig, Overflow
from exoarmur.runtime.margins import STOP_OVERRUN
from exoarmur.runtime.messages import timeout_category
from exoarmur.runtime.ref import ActorRef
from exoarmur.runtime.timeouts import TimeoutPolicy
from exoarmur.runtime.totals import ActorTotals, totals_of

MAX_PATH = 512  # characters of an actor's path
_PATH = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


@attrs.frozen
class SystemStatistics:
    actors: int
    dead_letters: int
    late_replies: int
    restarts: int


_new = tuple.__new__


class ActorSystem:
    """The host of a tree of actors: spawns them, hosts their drains, keeps
    their registry, their dead letters and the audit sink, and stops them.
    Enter it (`async with`) on the event loop it is to run on."""

    def __init__(
        self,
        *,
        name: str = "exoarmur",
        timeouts: TimeoutPolicy | None = None,
        audit: AuditSink | None = None,
        mailboxes: Mapping[str, MailboxConfig] | None = None,
        stop_timeout: float = 5.0,
        dead_letter_capacity: int = 10_000,
    ) -> None:
        if not (math.isfinite(stop_timeout) and stop_timeout > 0):
            raise ValueError(f"stop_timeout must be finite and > 0, got {stop_timeout!r}")
        self.name = name
        self.timeouts = timeouts or TimeoutPolicy()
        self.audit: AuditSink = audit if audit is not None else MemoryAuditSink()
        self.dead_letters = DeadLetters(capacity=dead_letter_capacity)
        self.stop_timeout = stop_timeout
        # Per-path mailbox overrides: fnmatch patterns, first match wins.
        self._mailboxes = dict(mailboxes or {})
        self._cells: dict[str, ActorCell] = {}
        self.late_replies = 0  # answers that came after their asker had one
        self.eager_depth = 0  # eager dispatches nested in the running stack (runtime/eager.py)
        self._restarts_of_stopped = 0
        self._retired: dict[str, ActorTotals] = {}  # per actor type: the counts of stopped actors
        self._stopping = False
        self._outer: anyio.abc.TaskGroup
        self._hosts: anyio.abc.TaskGroup | None = None  # the drains' host, supervisors' hosts, timers
        self._drains: Host | None = None
        self.backend: Backend
        self.now: Callable[[], float]
        self.default_timeouts: dict[type, float] = {}
        # Set when the root of a supervision tree escalates: the process must end.
        self.fatal: ExoarmurError | None = None
        self.failed: anyio.Event

    # ---- context manager ----------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        self.backend = current_backend()
        self.now = self.backend.now
        self.failed = anyio.Event()
        # Drains run in an inner task group owned by a host task, so that
        # cancelling them (shutdown) never cancels the code inside the block.
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        try:
            self._hosts, self._drains = await self._outer.start(self._host, name=f"{self.name}:host")
        except BaseException as exc:
            await self._outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if self.backend.service is not None:
            self._hosts.start_soon(self.backend.service, name=f"{self.name}:timers")
        return self

    async def _host(self, *, task_status: anyio.abc.TaskStatus[tuple[anyio.abc.TaskGroup, Host]]) -> None:
        async with anyio.create_task_group() as hosts:
            drains = await hosts.start(run_host, name=f"{self.name}:drains")
            task_status.started((hosts, drains))
            await anyio.sleep_forever()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        outer = self._outer
        try:
            if exc_type is None:
                with anyio.CancelScope(shield=True):
                    await self.shutdown()
            else:
                self._stopping = True
                outer.cancel_scope.cancel()
                if not isinstance(exc, anyio.get_cancelled_exc_class()):
                    # The group hosts only drains: let the body's own exception
                    # propagate as itself, not wrapped in an ExceptionGroup.
                    exc_type = exc = tb = None
        finally:
            try:
                await outer.__aexit__(exc_type, exc, tb)
            finally:
                self._sweep()
        return None

    async def shutdown(self, *, timeout: float | None = None) -> None:
        """Stop every actor, newest first, within `timeout` (default stop_timeout)
        for all of them together. Then no drain is left running. The code that
        called it goes on: only the actors' tasks end."""
        self._stopping = True
        deadline = self.now() + (self.stop_timeout if timeout is None else timeout)
        # Drains end by the deadline (handlers run in scopes bounded by it); the
        # one margin covers `stopping` hooks that overrun, for all actors together.
        with anyio.move_on_after(max(deadline - self.now(), 0.0) + STOP_OVERRUN):
            for cell in reversed(list(self._cells.values())):
                cell.request_stop(code=ReasonCode.SHUTTING_DOWN, deadline=deadline)
                await cell.wait_stopped()
        if self._hosts is not None:
            self._hosts.cancel_scope.cancel()

    def _sweep(self) -> None:
        for cell in list(self._cells.values()):
            cell.sweep(ReasonCode.SHUTTING_DOWN)

    # ---- actors -------------------------------------------------------------

    async def spawn(
        self,
        actor_type: type[Actor],
        *,
        name: str,
        kwargs: Mapping[str, Any] | None = None,
        capacity: int | None = None,
        overflow: Overflow | str | None = None,
        tenant: str | None = None,
    ) -> ActorRef:
        """Create the actor at path `name` and run its `started` hook; its ref.

        Mailbox settings, strongest first: a config override matching the
        path, the arguments here, the class attributes. Its drains run in the
        system's own task group; after a crash the system resumes it at once
        with a fresh instance (as Akka's default does)."""
        drains = self._drains
        if drains is None:
            raise RuntimeError("spawn needs an entered ActorSystem (async with)")
        cell = await self._spawn(actor_type, name, kwargs, capacity, overflow, tenant, start_soon=drains.start_soon, parent=self)
        return cell.ref

    async def spawn_child(
        self,
        actor_type: type[Actor],
        *,
        name: str,
        parent: Parent,
        host: Host,
        kwargs: Mapping[str, Any] | None = None,
        capacity: int | None = None,
        overflow: Overflow | str | None = None,
        tenant: str | None = None,
    ) -> Supervised:
        """As `spawn`, for a supervisor: the actor's drains run in `host` (the
        supervisor's task group, `open_host`), `parent` hears of its crashes
        and exits, and the handle returned is what the parent may do to it."""
        return await self._spawn(
            actor_type, name, kwargs, capacity, overflow, tenant, start_soon=host.start_soon, parent=parent
        )

    async def _spawn(
        self,
        actor_type: type[Actor],
        name: str,
        kwargs: Mapping[str, Any] | None,
        capacity: int | None,
        overflow: Overflow | str | None,
        tenant: str | None,
        *,
        start_soon: Callable[..., None],
        parent: Parent,
    ) -> ActorCell:
        if self._stopping:
            raise self.failure("rejected", ReasonCode.SHUTTING_DOWN, path=name, detail="spawn")
        if not isinstance(name, str) or not _PATH.fullmatch(name) or len(name) > MAX_PATH:
            raise self.failure("rejected", ReasonCode.ENVELOPE_INVALID, detail=f"bad actor path {name!r:.{MAX_PATH}}")
        if name in self._cells:
            raise self.failure("rejected", ReasonCode.ACTOR_NAME_TAKEN, path=name)
        if not (isinstance(actor_type, type) and issubclass(actor_type, Actor)):
            raise TypeError(f"{actor_type!r} is not an Actor subclass")
        config = self._mailbox_config(name, actor_type, capacity, overflow)
        try:
            cell = ActorCell(
                path=name,
                system=self,
                actor_type=actor_type,
                kwargs=dict(kwargs or {}),
                tenant=tenant,
                mailbox=Mailbox(capacity=config.capacity, overflow=config.overflow),
                start_soon=start_soon,
                parent=parent,
            )
        except ExoarmurError as exc:
            # A coded refusal keeps its code (a bad option: CONFIG_INVALID), as
            # a coded failure in `started` does; audited once, here.
            self.audit_error(exc, kind="crashed", path=name, envelope=None)
            raise
        except Exception as exc:
            raise self.failure(
                "crashed", ReasonCode.ACTOR_CRASHED, path=name, detail=f"__init__: {exc!r}"
            ) from exc
        self._cells[name] = cell
        # Mail sent while `started` runs waits for it, as a drain's would (OTP's
        # init): no handler runs before the instance is ready.
        cell.scheduled = True
        try:
            await run_started(cell)
        except BaseException:
            del self._cells[name]
            raise
        cell.scheduled = False
        if cell.mailbox.queue or cell.mailbox.control:
            cell.schedule()
        return cell

    def _mailbox_config(
        self, path: str, actor_type: type[Actor], capacity: int | None, overflow: Overflow | str | None
    ) -> MailboxConfig:
        """Per field, strongest first: the first config override matching the
        path, the spawn arguments, the class attributes."""
        override = next(
            (config for pattern, config in self._mailboxes.items() if fnmatch.fnmatchcase(path, pattern)),
            MailboxConfig(),
        )
        return MailboxConfig(
            capacity=next(c for c in (override.capacity, capacity, actor_type.mailbox_capacity) if c is not None),
            overflow=next(o for o in (override.overflow, overflow, actor_type.overflow) if o is not None),
        )

    async def open_host(self, name: str) -> Host:
        """A task group for a supervisor's children, owned by a task in the
        system's own group: closing it ends every drain it hosts."""
        if self._hosts is None or self._stopping:
            raise self.failure("rejected", ReasonCode.SHUTTING_DOWN, path=name, detail="open_host")
        return await self._hosts.start(run_host, name=f"{name}:host")

    def lookup(self, path: str) -> ActorRef:
        """The ref of the live actor at `path`; ACTOR_NOT_FOUND (audited) if none."""
        return self._cell(path).ref

    def find(self, path: str) -> ActorRef | None:
        """The ref of the live actor at `path`, or None: a question, not a
        failure (nothing is audited), for actors started on demand."""
        cell = self._cells.get(path)
        return None if cell is None else cell.ref

    def _cell(self, path: str) -> ActorCell:
        cell = self._cells.get(path)
        if cell is None:
            # What is kept of a path no actor has is bounded (it may come from a peer).
            shown = path if isinstance(path, str) and len(path) <= MAX_PATH else f"{str(path)[:MAX_PATH]}..."
            raise self.failure("rejected", ReasonCode.ACTOR_NOT_FOUND, path=shown)
        return cell

    def info(self, path: str) -> ActorInfo:
        """The live actor at `path` as data: class, state, restarts, mailbox."""
        return self._cell(path).info()

    def paths(self) -> list[str]:
        """Every live actor's path, in spawn order."""
        return list(self._cells)

    async def stop(self, ref: ActorRef, *, timeout: float | None = None) -> None:
        """Stop one actor: its queue is handled until the deadline, then
        dead-lettered with ACTOR_STOPPED; later sends get ACTOR_STOPPED."""
        cell = ref._cell
        deadline = self.now() + (self.stop_timeout if timeout is None else timeout)
        cell.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=deadline)
        with anyio.move_on_after(max(deadline - self.now(), 0.0) + STOP_OVERRUN):
            await cell.wait_stopped()

    def child_crashed(self, child: Supervised, error: ExoarmurError) -> None:
        """The system as parent (no supervisor): resume at once with a fresh
        instance and the same mailbox, as Akka's default strategy does. A
        supervisor that escalated is not resumed: the root of the tree failed,
        which is fatal for the process (`failed` is set, `fatal` says why)."""
        if error.code is ReasonCode.ESCALATED:
            self.fatal = error
            self.failed.set()
            child.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=self.now())
            return
        if child.start_failed:
            # A fresh instance that cannot even start would fail again at once:
            # stop; queued and later sends get ACTOR_STOPPED.
            child.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=self.now())
            return
        child.resume()

    def child_exited(self, child: Supervised) -> None:
        """The system as parent: a stopped actor is simply gone."""

    def child_reported(self, child: Supervised, code: ReasonCode, detail: str) -> None:
        """The system keeps no breaker: the report's audit event is all."""

    def child_probed(self, child: Supervised, ok: bool | None) -> None:
        """The system never gates an actor, so it admits no probes."""

    @property
    def stopping(self) -> bool:
        """True once shutdown began: supervisors restart nothing from then on."""
        return self._stopping

    def unregister(self, cell: ActorCell) -> None:
        if self._cells.get(cell.path) is cell:
            del self._cells[cell.path]
            self._restarts_of_stopped += cell.restarts
            info = cell.info()
            self._retired.setdefault(info.actor, ActorTotals()).count(info)

    # ---- outcomes -------------------------------------------------------------

    def default_seconds(self, message_type: type) -> float:
        seconds = self.default_timeouts.get(message_type)
        if seconds is None:
            seconds = self.timeouts[timeout_category(message_type)]
            self.default_timeouts[message_type] = seconds
        return seconds

    def failure(
        self,
        kind: str,
        code: ReasonCode,
        *,
        path: str | None = None,
        envelope: Envelope | None = None,
        detail: str = "",
        idempotency_key: str | None = None,
        attempt: int | None = None,
    ) -> ExoarmurError:
        """Build the coded error for a failure and emit its one audit event.
        `idempotency_key` and `attempt` are for failures without an envelope."""
        if not detail:
            detail = path or ""
        # The one place failures' audit events are built, on every crash and
        # refusal: positionally, in AuditEvent's field order (its keyword
        # __new__ costs 1.0 µs, a tuple 0.25 µs).
        if envelope is None:
            event = _new(AuditEvent, (kind, code, self.now(), path, None, None, None, None, None, idempotency_key, attempt, detail))
        else:
            message_type = type(envelope.message)
            event = _new(
                AuditEvent,
                (
                    kind,
                    code,
                    self.now(),
                    path,
                    getattr(message_type, "__wire_name__", None) or message_type.__qualname__,
                    envelope.tenant,
                    envelope.sender,
                    envelope.correlation_id,
                    envelope.trace_id,
                    envelope.idempotency_key,
                    envelope.attempt,
                    detail,
                ),
            )
        self.audit.emit(event)
        error = error_for(code, detail)
        error.audited = True
        return error

    def audit_error(self, error: ExoarmurError, *, kind: str, path: str, envelope: Envelope | None) -> None:
        """Emit the one audit event of a coded error built elsewhere (e.g. raised
        by a handler as its answer), unless it already has one."""
        if not error.audited:
            self.failure(kind, error.code, path=path, envelope=envelope, detail=error.detail)
            error.audited = True

    def record_dead_letter(self, path: str, env: Envelope, code: ReasonCode) -> None:
        self.dead_letters.record(DeadLetter(path=path, code=code, envelope=env, at=self.now()))

    def totals(self) -> dict[str, ActorTotals]:
        """Per actor type: what its actors did, the stopped ones included
        (runtime/totals.py)."""
        return totals_of((cell.info() for cell in self._cells.values()), self._retired)

    def statistics(self) -> SystemStatistics:
        return SystemStatistics(
            actors=len(self._cells),
            dead_letters=self.dead_letters.total,
            late_replies=self.late_replies,
            restarts=self._restarts_of_stopped + sum(c.restarts for c in self._cells.values()),
        )
