"""The Supervisor: an actor that starts, watches and restarts its children.

    tree = SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        intensity=RestartIntensity(3, 5.0),
        children=(ChildSpec("kv", KvBucket, backoff=BackoffPolicy(initial=0.1)),
                  ChildSpec("api", Api)),
    )
    root = await system.spawn(Supervisor, name="root", kwargs={"spec": tree})

What it does, in OTP's terms (supervisors/spec.py has the rules as functions):
- Starts its children in order at `started`, at paths "<own path>/<child name>";
  their drains run in the supervisor's own host (a task group), so no child
  task outlives the supervisor.
- A child that crashes is SUSPENDED by the kernel and its crash reaches the
  supervisor as a signal (`ChildDown`) through the supervisor's inbox,
  handled ahead of any user mail; an idle supervisor handles it at once, in
  the crashed child's stack (`signal_now`: its decision never awaits), so a
  one_for_one restart costs no scheduler pass of the supervisor's. The inbox
  is the supervisor instance's own: signals from the children of an instance
  that has crashed never reach the instance that replaces it.
- What it does to a child goes through the kernel's `Supervised` handle
  (`ActorSystem.spawn_child`): resume, restart, suspend, stop, fail_fast,
  admit, redeliver, info.
- Decision, one crash at a time: a temporary child is removed; otherwise the
  restart is counted against the intensity (more than `max_restarts` within
  `within` seconds: every child is shut down and the supervisor fails to its
  own parent with ESCALATED, the chain of failures in the detail); the
  strategy names the children to restart; healthy siblings among them are
  wound down newest first (each within its shutdown timeout; BRUTAL: at once);
  after the failed child's backoff they are resumed in start order, each a
  fresh instance that keeps its mailbox. The crashed envelope is not redelivered.
- While a child is down or backing off, sends to it queue within its mailbox's
  capacity (or are refused by its policy): never unbounded.
- At `stopping`, children are shut down newest first, then the host is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import attrs
import outcome

from exoarmur.runtime import (
    Actor,
    ActorCrashed,
    ActorRef,
    AuditEvent,
    CellState,
    ExoarmurError,
    Host,
    Inbox,
    InvalidInput,
    Overflow,
    ReasonCode,
    handles,
)
from exoarmur.runtime.logs import logged
from exoarmur.supervisors.breaker import Breaker, BreakerState, Transition
from exoarmur.supervisors.children import Child, ChildState, Link
from exoarmur.supervisors.describe import Node, node_of
from exoarmur.supervisors.intensity import RestartWindow
from exoarmur.supervisors.messages import (
    BreakerDue,
    ChildDown,
    ChildExited,
    DependencyFailed,
    Describe,
    Escalate,
    ProbeDone,
    RestartDue,
    RestartGroup,
    StartChild,
    TerminateChild,
)
from exoarmur.supervisors.spec import ChildSpec, Restart, Strategy, SupervisorSpec, should_restart, to_restart

LOG = logging.getLogger("exoarmur.supervisors")


class Supervisor(Actor):
    mailbox_capacity = 100
    overflow = Overflow.REJECT

    def __init__(self, *, spec: SupervisorSpec, seed: int = 0) -> None:
        if not isinstance(spec, SupervisorSpec):
            raise TypeError(f"spec must be a SupervisorSpec, got {spec!r}")
        self.spec = spec
        self.seed = seed
        self._children: dict[str, Child] = {}  # in start order
        self._restarts = RestartWindow(spec.intensity)
        self._host: Host | None = None
        self._inbox: Inbox | None = None  # this instance's (`started` makes it)
        self._pending: dict[int, list[str]] = {}  # restart ticket -> names, start order
        self._tickets = 0
        # Breakers of children started again after a normal exit: state survives.
        self._breakers_kept: dict[str, Breaker] = {}
        self._escalating = False

    # ---- lifecycle ----------------------------------------------------------

    async def started(self) -> None:
        system = self.context.system
        self._inbox = self.context.inbox()
        self._host = await system.open_host(self.context.path)
        try:
            for child_spec in self.spec.children:
                await self._start(child_spec)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._shutdown_all()
            raise

    async def stopping(self) -> None:
        await self._shutdown_all()

    async def _start(self, spec: ChildSpec) -> None:
        breaker = self._breakers_kept.pop(spec.name, None)
        if breaker is None and spec.breaker is not None:
            breaker = Breaker(spec.breaker)
        child = Child(spec, seed=self.seed, breaker=breaker, one_for_one=self.spec.strategy is Strategy.ONE_FOR_ONE)
        self._children[spec.name] = child
        assert self._host is not None and self._inbox is not None, "children run only while the supervisor's host is open"
        try:
            child.handle = await self.context.system.spawn_child(
                spec.actor,
                name=f"{self.context.path}/{spec.name}",
                kwargs=dict(spec.kwargs),
                tenant=spec.tenant,
                host=self._host,
                parent=Link(self._inbox, spec.name),
            )
        except BaseException:
            del self._children[spec.name]  # it never started: not a child
            raise
        child.state = ChildState.RUNNING

    def _signal(self, message: object) -> None:
        """A signal to this instance (handled ahead of the mail, never by a later instance)."""
        assert self._inbox is not None
        self._inbox.signal(message)

    def _host_start_soon(self) -> Callable[..., None]:
        assert self._host is not None, "children run only while the supervisor's host is open"
        return self._host.start_soon

    async def _shutdown_all(self) -> None:
        """Every child, newest first, each within its shutdown timeout; then the host."""
        for name in reversed(list(self._children)):
            await self._shut_down(name)
        self._pending.clear()
        if self._host is not None:
            host, self._host = self._host, None
            await host.close()

    async def _shut_down(self, name: str) -> None:
        child = self._children[name]
        child.state = ChildState.STOPPING  # its exit is ours, not news
        if child.handle is not None:
            await self.context.system.stop(child.handle.ref, timeout=child.shutdown_seconds)
        child.state = ChildState.STOPPED

    # ---- decisions ----------------------------------------------------------

    @handles(ChildDown)
    def on_child_down(self, message: ChildDown) -> None:
        """Decide at once, without awaiting (the common case, one_for_one, costs no
        task and no cancel scope); what must await (winding siblings down,
        escalating) follows as a signal of its own. The children concerned are
        marked first, so a crash signal arriving in between finds them taken."""
        failed = self._children.get(message.name)
        if failed is None or failed.state is not ChildState.RUNNING or self._escalating:
            return  # a child already being handled, or removed, or we are giving up
        handle = failed.handle
        if handle is None or handle.state is not CellState.SUSPENDED or not self._deciding():
            return  # the child was stopped meanwhile, or the tree is coming down
        if failed.temporary:
            self._forget(message.name)
            return
        now = self.context.now()
        if failed.breaker is not None and self._breaker_failure(failed, message.code, now=now):
            return  # open: no restart, no intensity spent, until the cooldown ends
        if self._restarts.add(now):
            self._escalating = True
            self._signal(Escalate(f"{message.name} {message.code}: {message.detail}"))
            return
        if failed.at_once:
            handle.resume()  # its drain makes the fresh instance and runs `started`
            return
        if self.spec.strategy is Strategy.ONE_FOR_ONE:
            affected = [message.name]  # no need to look at the siblings
        else:
            live = [name for name, child in self._children.items() if child.state is ChildState.RUNNING]
            affected = to_restart(self.spec.strategy, children=live, failed=message.name)
        for name in affected:
            self._children[name].state = ChildState.BACKING_OFF
        self._tickets += 1
        self._pending[self._tickets] = affected
        delay = max(failed.backoff_delay(now=now, within=self.spec.intensity.within), failed.retry_delay(self.context.system, now=now))
        # Permanent children's restarts are news; an intent actor's (transient) are many: debug.
        level = logging.INFO if failed.spec.restart is Restart.PERMANENT else logging.DEBUG
        logged(LOG, level, "actor.restarting", f"restarting {', '.join(affected)} in {delay:.3g} s",
               path=f"{self.context.path}/{message.name}", code=message.code.value)  # fmt: skip
        if len(affected) > 1:
            self._signal(RestartGroup(self._tickets, message.name, delay))
        elif delay > 0:
            self._host_start_soon()(self._wake_after, self._tickets, delay)
        else:
            self._pending.pop(self._tickets)
            failed.state = ChildState.RUNNING
            handle.resume()  # its drain makes the fresh instance and runs `started`

    @handles(RestartGroup)
    async def on_restart_group(self, message: RestartGroup) -> None:
        """Wind the healthy siblings down, newest first (the failed one is down
        already); temporary ones are removed; the rest restart in start order
        after the failed child's backoff."""
        names = self._pending.get(message.ticket, [])
        now = self.context.now()
        for name in reversed(names):
            sibling = self._children.get(name)
            if name != message.failed and sibling is not None and sibling.handle is not None:
                await sibling.handle.suspend(deadline=now + sibling.shutdown_seconds)
        for name in [n for n in names if self._children[n].spec.restart is Restart.TEMPORARY]:
            names.remove(name)
            self._forget(name)
        if message.delay > 0:
            self._host_start_soon()(self._wake_after, message.ticket, message.delay)
        else:
            await self._resume(message.ticket)

    @handles(Escalate)
    async def on_escalate(self, message: Escalate) -> None:
        await self._escalate(message.last)

    def _forget(self, name: str) -> None:
        """Stop a child without waiting (it is down or being replaced) and drop it."""
        child = self._children.pop(name)
        child.state = ChildState.STOPPED
        if child.handle is not None:
            deadline = self.context.now() + child.shutdown_seconds
            child.handle.request_stop(code=ReasonCode.ACTOR_STOPPED, deadline=deadline)

    async def _wake_after(self, ticket: int, delay: float) -> None:
        await anyio.sleep(delay)
        self._signal(RestartDue(ticket))

    @handles(ChildExited)
    async def on_child_exited(self, message: ChildExited) -> None:
        """A child stopped by itself (a normal exit): permanent children are
        started again (a new mailbox: the old one was drained at the stop), and
        the restart counts against the intensity; transient and temporary ones
        are removed."""
        child = self._children.get(message.name)
        if child is None or child.state is not ChildState.RUNNING:
            return  # stopped by this supervisor, or already handled
        if not self._deciding():
            return  # the tree is coming down: nothing is restarted
        if not should_restart(child.spec.restart, abnormal=False):
            del self._children[message.name]
            return
        now = self.context.now()
        exceeded = self._restarts.add(now)
        if exceeded:
            await self._escalate(f"{message.name} exited")
        del self._children[message.name]
        if child.breaker is not None:
            self._breakers_kept[message.name] = child.breaker
        await self._start(child.spec)
        self._restore_start_order()

    def _deciding(self) -> bool:
        """Restart decisions are made only while this supervisor runs and the
        system is not shutting down; after that every child just stops."""
        return not self.context.system.stopping and self.context.running

    def _restore_start_order(self) -> None:
        """A child started again keeps its place in the spec's start order
        (dynamic children, started later, stay after the static ones)."""
        static = [c.name for c in self.spec.children]
        order = [n for n in static if n in self._children] + [n for n in self._children if n not in static]
        self._children = {name: self._children[name] for name in order}

    async def _escalate(self, last: str) -> None:
        logged(LOG, logging.ERROR, "supervisor.escalating", f"too many restarts; last: {last}",
               path=self.context.path, code=ReasonCode.ESCALATED.value)  # fmt: skip
        await self._shutdown_all()
        raise ActorCrashed(
            ReasonCode.ESCALATED,
            f"{self.context.path}: more than {self.spec.intensity.max_restarts} restarts "
            f"in {self.spec.intensity.within:g} s; last: {last}",
        )

    # ---- breakers -------------------------------------------------------------

    def _breaker_failure(self, child: Child, code: ReasonCode, *, now: float) -> bool:
        """Count a crash or reported failure; True if the breaker is open now
        (then the child fails fast and is left alone until the cooldown ends)."""
        breaker = child.breaker
        if breaker is None:
            return False
        transition = breaker.record_failure(now=now, code=code)
        self._audit(child, transition)
        if breaker.state is not BreakerState.OPEN:
            return False
        if transition is not None:
            assert child.handle is not None
            child.handle.fail_fast(ReasonCode.BREAKER_OPEN)
            child.state = ChildState.BREAKER_OPEN
            self._host_start_soon()(self._breaker_timer, child.spec.name, breaker.reopen_at - now)
        return True

    async def _breaker_timer(self, name: str, delay: float) -> None:
        await anyio.sleep(max(delay, 0.0))
        self._signal(BreakerDue(name))

    @handles(DependencyFailed)
    def on_dependency_failed(self, message: DependencyFailed) -> None:
        child = self._children.get(message.name)
        if child is not None and child.state is ChildState.RUNNING:
            self._breaker_failure(child, message.code, now=self.context.now())

    @handles(BreakerDue)
    async def on_breaker_due(self, message: BreakerDue) -> None:
        """Cooldown over: HALF_OPEN. A crashed child is started again; then
        `half_open_probes` envelopes are let through."""
        child = self._children.get(message.name)
        if child is None or child.breaker is None or child.state is not ChildState.BREAKER_OPEN:
            return
        now = self.context.now()
        transition = child.breaker.poll(now=now)
        if transition is None:
            return
        self._audit(child, transition)
        assert child.handle is not None
        child.state = ChildState.RUNNING
        if child.handle.state is CellState.SUSPENDED:
            failure = await child.handle.restart()
            if failure is not None:
                self._breaker_failure(child, failure.code, now=now)  # open again, longer
                return
        probes = child.breaker.policy.half_open_probes
        for _ in range(probes):
            child.breaker.admit(now=now)
        child.handle.admit(probes=probes)

    @handles(ProbeDone)
    def on_probe_done(self, message: ProbeDone) -> None:
        child = self._children.get(message.name)
        if child is None or child.breaker is None:
            return
        now = self.context.now()
        if message.ok is None:
            child.breaker.release_probe(now=now)
            assert child.handle is not None
            child.handle.admit(probes=1)  # let another probe take its place
        elif message.ok:
            transition = child.breaker.record_success(now=now)
            self._audit(child, transition)
            if child.breaker.state is BreakerState.CLOSED and child.handle is not None:
                child.handle.admit()
        else:
            self._breaker_failure(child, ReasonCode.BREAKER_OPEN, now=now)

    def _audit(self, child: Child, transition: Transition | None) -> None:
        if transition is None:
            return
        self.context.system.audit.emit(
            AuditEvent(
                kind=transition.kind,
                code=transition.reason,
                at=transition.at,
                path=f"{self.context.path}/{child.spec.name}",
                detail=(
                    f"{transition.from_state}->{transition.to_state} "
                    f"failures_in_window={transition.failures_in_window} cooldown={transition.cooldown:g}"
                ),
            )
        )

    @handles(RestartDue)
    async def on_restart_due(self, message: RestartDue) -> None:
        await self._resume(message.ticket)

    async def _resume(self, ticket: int) -> None:
        """Restart the ticket's children in start order, each `started` hook
        finishing before the next begins. One that cannot start counts as a crash."""
        for name in self._pending.pop(ticket, ()):
            child = self._children.get(name)
            if child is None or child.state is not ChildState.BACKING_OFF or child.handle is None:
                continue
            failure = await child.handle.restart()
            child.state = ChildState.RUNNING
            if failure is not None:
                self._signal(ChildDown(name, failure.code, failure.detail))

    async def _remove(self, name: str) -> None:
        await self._shut_down(name)
        del self._children[name]

    # ---- dynamic children ---------------------------------------------------

    @handles(StartChild)
    async def on_start_child(self, message: StartChild) -> ActorRef:
        """Start one more child, after the others (stopped first at shutdown).
        For per-key children (OTP's simple_one_for_one) name it after the key."""
        name = message.spec.name
        if name in self._children:
            raise InvalidInput(ReasonCode.ACTOR_NAME_TAKEN, f"{self.context.path}/{name}")
        try:
            await self._start(message.spec)
        except ExoarmurError as exc:
            # The child's failure to start (audited where it happened) is the
            # asker's answer, whatever its code: this supervisor has not crashed.
            answer = self.context.defer()
            answer.resolve(outcome.Error(exc))
            return answer  # type: ignore[return-value]
        handle = self._children[name].handle
        assert handle is not None
        return handle.ref

    @handles(TerminateChild)
    async def on_terminate_child(self, message: TerminateChild) -> bool:
        """Shut a child down and forget it; False if there was no such child."""
        if message.name not in self._children:
            return False
        await self._remove(message.name)
        return True

    # ---- introspection ------------------------------------------------------

    def child_states(self) -> dict[str, ChildState]:
        return {name: child.state for name, child in self._children.items()}

    @handles(Describe)
    async def on_describe(self, message: Describe) -> Node:
        children = []
        for child in self._children.values():
            handle = child.handle
            if handle is None:
                continue
            if issubclass(handle.actor_type, Supervisor) and child.state is ChildState.RUNNING:
                children.append(await handle.ref.ask(Describe()))
                continue
            node = node_of(handle.info(), state=str(child.state))
            if child.breaker is not None:
                stats = child.breaker.statistics()
                node = attrs.evolve(
                    node, breaker=f"{stats.state}({stats.failures_in_window}/{child.breaker.policy.threshold})"
                )
            children.append(node)
        own = node_of(self.context.system.info(self.context.path), state="running")
        return attrs.evolve(own, children=tuple(children))
