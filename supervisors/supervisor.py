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

import enum
import anyio
import attrs

from exoarmur.runtime import (
    Actor,
    ActorCrashed,
    ActorInfo,
    ActorRef,
    AuditEvent,
    CellState,
    ExoarmurError,
    Host,
    Inbox,
    InvalidInput,
    Overflow,
    ReasonCode,
    Supervised,
    System,
    handles,
    message,
)
from exoarmur.supervisors.backoff import jitter_rng
from exoarmur.supervisors.breaker import Breaker, BreakerState, Transition
from exoarmur.supervisors.intensity import RestartHistory, RestartWindow, in_window_from
from exoarmur.supervisors.spec import BRUTAL, ChildSpec, Restart, Strategy, SupervisorSpec, should_restart, to_restart

# Restarts of one child remembered for its backoff's attempt number: 2**63
# times any initial delay is past every sensible cap.
BACKOFF_ATTEMPTS_KEPT = 64


@message("exoarmur.supervisor.child_down")
class ChildDown:
    """Signal: the child `name` crashed with `code` and is suspended."""

    name: str
    code: ReasonCode
    detail: str


@message("exoarmur.supervisor.child_exited")
class ChildExited:
    """Signal: the child `name` stopped."""

    name: str


@message("exoarmur.supervisor.dependency_failed")
class DependencyFailed:
    """Signal: the child `name` reported a failed dependency and runs on."""

    name: str
    code: ReasonCode


@message("exoarmur.supervisor.probe_done")
class ProbeDone:
    """Signal: a HALF_OPEN probe to `name` ended (ok True/False, None: expired)."""

    name: str
    ok: bool | None


@message("exoarmur.supervisor.breaker_due")
class BreakerDue:
    """Signal: the cooldown of `name`'s breaker may be over."""

    name: str


@message("exoarmur.supervisor.restart_group")
class RestartGroup:
    """Signal to itself: wind down and restart the children of `ticket`."""

    ticket: int
    failed: str
    delay: float


@message("exoarmur.supervisor.escalate")
class Escalate:
    """Signal to itself: too many restarts; shut everything down and fail."""

    last: str


@message("exoarmur.supervisor.restart_due")
class RestartDue:
    """Signal: the backoff of restart `ticket` is over."""

    ticket: int


@message("exoarmur.supervisor.start_child")
class StartChild:
    """Ask: start a child from `spec` (OTP's start_child); answers its ActorRef.
    Local only: a ChildSpec names a class, so it does not go on the wire."""

    spec: ChildSpec


@message("exoarmur.supervisor.terminate_child")
class TerminateChild:
    """Ask: shut the child `name` down (within its shutdown timeout) and forget it."""

    name: str


@message("exoarmur.supervisor.describe")
class Describe:
    """Ask: this supervisor's subtree as data (a `Node`)."""


@attrs.frozen
class Node:
    """One actor of a supervision tree, as data (for `exoarmur status` and SIGUSR1)."""

    path: str
    actor: str
    state: str
    restarts: int
    depth: int
    capacity: int
    breaker: str | None = None
    children: tuple[Node, ...] = ()

    def render(self, *, indent: int = 0) -> str:
        """An indented tree, one actor per line."""
        breaker = f" breaker={self.breaker}" if self.breaker else ""
        line = (
            f"{'  ' * indent}{self.path} [{self.actor}] {self.state} restarts={self.restarts} "
            f"mailbox={self.depth}/{self.capacity}{breaker}"
        )
        return "\n".join([line, *(child.render(indent=indent + 1) for child in self.children)])


class ChildState(enum.StrEnum):
    RUNNING = "running"
    BACKING_OFF = "backing_off"  # down, waiting for its restart
    BREAKER_OPEN = "breaker_open"  # failing fast; not restarted during the cooldown
    STOPPING = "stopping"  # being shut down by this supervisor
    STOPPED = "stopped"


class _Child:
    __slots__ = ("spec", "handle", "state", "restart_times", "rng", "breaker", "temporary", "at_once")

    def __init__(self, spec: ChildSpec, *, seed: int, breaker: Breaker | None, one_for_one: bool) -> None:
        self.spec = spec
        # Owned here, not by the child: it survives the child's restarts.
        self.breaker = breaker
        self.temporary = spec.restart is Restart.TEMPORARY
        # Resumed by the crash's own decision: alone (one_for_one), with no
        # backoff to wait and no envelope to hand back first.
        self.at_once = one_for_one and spec.backoff.max_delay == 0.0 and spec.retry is None
        self.handle: Supervised | None = None  # what the kernel lets a parent do
        self.state = ChildState.STOPPED
        self.restart_times: RestartHistory = ()  # for the backoff's attempt number
        self.rng = jitter_rng(seed, name=spec.name)

    @property
    def shutdown_seconds(self) -> float:
        return 0.0 if self.spec.shutdown is BRUTAL else float(self.spec.shutdown)


class _Link:
    """A child's parent (the kernel's `Parent`): forwards what happens to the
    child to the inbox of the supervisor instance that started it."""

    __slots__ = ("_inbox", "_name")

    def __init__(self, inbox: Inbox, name: str) -> None:
        self._inbox = inbox
        self._name = name

    def child_crashed(self, child: Supervised, error: ExoarmurError) -> None:
        # Decided at once when the supervisor is idle (on_child_down never
        # awaits): the crashed child's own drain goes on to its fresh instance.
        self._inbox.signal_now(ChildDown(self._name, error.code, error.detail))

    def child_exited(self, child: Supervised) -> None:
        self._inbox.signal(ChildExited(self._name))

    def child_reported(self, child: Supervised, code: ReasonCode, detail: str) -> None:
        self._inbox.signal(DependencyFailed(self._name, code))

    def child_probed(self, child: Supervised, ok: bool | None) -> None:
        self._inbox.signal(ProbeDone(self._name, ok))


class Supervisor(Actor):
    mailbox_capacity = 100
    overflow = Overflow.REJECT

    def __init__(self, *, spec: SupervisorSpec, seed: int = 0) -> None:
        if not isinstance(spec, SupervisorSpec):
            raise TypeError(f"spec must be a SupervisorSpec, got {spec!r}")
        self.spec = spec
        self.seed = seed
        self._children: dict[str, _Child] = {}  # in start order
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
        child = _Child(spec, seed=self.seed, breaker=breaker, one_for_one=self.spec.strategy is Strategy.ONE_FOR_ONE)
        self._children[spec.name] = child
        assert self._host is not None and self._inbox is not None, "children run only while the supervisor's host is open"
        child.handle = await self.context.system.spawn_child(
            spec.actor,
            name=f"{self.context.path}/{spec.name}",
            kwargs=dict(spec.kwargs),
            tenant=spec.tenant,
            host=self._host,
            parent=_Link(self._inbox, spec.name),
        )
        child.state = ChildState.RUNNING

    def _signal(self, message: object) -> None:
        """A signal to this instance (handled ahead of the mail, never by a later instance)."""
        assert self._inbox is not None
        self._inbox.signal(message)

    def _host_start_soon(self):
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
        delay = max(self._backoff(failed, now=now), self._retry(failed, now=now))
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

    def _retry(self, child: _Child, *, now: float) -> float:
        """Hand the crashed envelope back to the child if its spec has a retry
        policy and the envelope an idempotency key, attempts and time remain.
        The retry's delay (0 if none): the restart waits at least that long.
        Each retry is audited ("retry"); running out is one RETRY_EXHAUSTED."""
        policy, handle = child.spec.retry, child.handle
        env = handle.crashed_on if handle is not None else None
        if policy is None or env is None or env.idempotency_key is None:
            return 0.0
        handle.crashed_on = None
        path = handle.path
        key = env.idempotency_key
        delay = policy.delay(key=key, attempt=env.attempt) if env.attempt < policy.max_attempts else None
        if delay is None or now + delay >= env.deadline:
            self.context.system.failure(
                "retry_exhausted",
                ReasonCode.RETRY_EXHAUSTED,
                path=path,
                envelope=env,
                detail=f"key {key!r}: {env.attempt} attempt(s), last ACTOR_CRASHED",
            )
            return 0.0
        again = env._replace(attempt=env.attempt + 1, reply_to=None)  # its asker was told
        if not handle.redeliver(again):
            self.context.system.failure(
                "retry_exhausted", ReasonCode.RETRY_EXHAUSTED, path=path, envelope=env, detail="mailbox full"
            )
            return 0.0
        self.context.system.audit.emit(
            AuditEvent(
                kind="retry",
                code=ReasonCode.ACTOR_CRASHED,
                at=now,
                path=path,
                idempotency_key=key,
                attempt=again.attempt,
                detail=f"redelivered after {delay:.6g}s",
            )
        )
        return delay

    def _backoff(self, child: _Child, *, now: float) -> float:
        """The failed child's next backoff: its attempt is the number of its
        restarts within the intensity window (a child that ran quietly starts over)."""
        backoff = child.spec.backoff
        if backoff.max_delay == 0.0:
            return 0.0  # no backoff (OTP's default): no history needed
        times = child.restart_times
        times = times[in_window_from(times, now=now, within=self.spec.intensity.within) :]
        # Past BACKOFF_ATTEMPTS_KEPT attempts the delay sits at its cap anyway.
        child.restart_times = (*times[-BACKOFF_ATTEMPTS_KEPT + 1 :], now)
        return backoff.delay(len(child.restart_times), rng=child.rng)

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
        await self._shutdown_all()
        raise ActorCrashed(
            ReasonCode.ESCALATED,
            f"{self.context.path}: more than {self.spec.intensity.max_restarts} restarts "
            f"in {self.spec.intensity.within:g} s; last: {last}",
        )

    # ---- breakers -------------------------------------------------------------

    def _breaker_failure(self, child: _Child, code: ReasonCode, *, now: float) -> bool:
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

    def _audit(self, child: _Child, transition: Transition | None) -> None:
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
        await self._start(message.spec)
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


def node_of(info: ActorInfo, *, state: str) -> Node:
    return Node(
        path=info.path,
        actor=info.actor,
        state=state,
        restarts=info.restarts,
        depth=info.mailbox.depth,
        capacity=info.mailbox.capacity,
    )


async def describe_system(system: System) -> list[Node]:
    """Every top-level actor of `system` as a tree: supervisors with their subtrees."""
    nodes = []
    paths = system.paths()
    for path in paths:
        if "/" in path and path.rsplit("/", 1)[0] in paths:
            continue  # described by its supervisor
        ref = system.lookup(path)
        if ref.accepts(Describe):
            nodes.append(await ref.ask(Describe()))
        else:
            info = system.info(path)
            nodes.append(node_of(info, state=info.state.value))
    return nodes
