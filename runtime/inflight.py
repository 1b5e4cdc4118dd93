"""Concurrent handlers in flight: what lets one actor keep many I/O calls open.

A handler marked `@handles(M, concurrent=True)` (an `async def`) does not hold
the mailbox while it awaits: the drain starts it in a task of its own, in the
actor's host, and takes the next envelope. This is Akka's `pipeTo` and
`mapAsync(parallelism)` in one declaration; a NATS connection needs it to keep
64 requests open at once.

Invariants:
- At most `Actor.concurrency` run at once. When that many are in flight the
  drain takes nothing more until one ends, so the mailbox fills and its policy
  pushes back on senders (never an unbounded pile of tasks).
- Each runs in its own cancel scope at its envelope's deadline, or the stop
  deadline if that is earlier (`tighten`). A concurrent batch handler runs
  one job for a run of envelopes, at the latest of their deadlines.
- They belong to one actor instance: a crash (of any handler) or a suspend
  cancels them all, and their askers learn `ACTOR_CRASHED`.
- Worker tasks are reused: one that finished lingers a scheduler pass or two
  and takes the next job from `jobs`, so a steady stream of requests does not
  pay a task spawn each (anyio's spawn is the dearest step on this path).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import outcome

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.context import CURRENT, ActorContext
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ActorCrashed, ExoarmurError

if TYPE_CHECKING:
    from exoarmur.runtime.actor import Actor

__all__ = ["ConcurrentHandlers", "InFlight"]

# Scheduler passes a worker waits for the next job before it ends.
WORKER_LINGER_PASSES = 2


class InFlight:
    """The cancel scopes of one cell's concurrent handlers now running."""

    __slots__ = ("limit", "_scopes", "_changed", "jobs", "idle")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._scopes: set[anyio.CancelScope] = set()
        self._changed: anyio.Event | None = None  # set when one ends
        # Started but not yet picked up by a lingering worker, and how many linger.
        self.jobs: deque[tuple[Any, ...]] = deque()
        self.idle = 0

    def __len__(self) -> int:
        return len(self._scopes)

    @property
    def full(self) -> bool:
        return len(self._scopes) >= self.limit

    def add(self, scope: anyio.CancelScope) -> None:
        self._scopes.add(scope)

    def discard(self, scope: anyio.CancelScope) -> None:
        self._scopes.discard(scope)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for_room(self) -> None:
        while self.full:
            await self._wait_change()

    async def wait_empty(self) -> None:
        while self._scopes:
            await self._wait_change()

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def tighten(self, deadline: float) -> None:
        """No handler in flight runs past `deadline` (a stop or a suspend)."""
        for scope in self._scopes:
            if deadline < scope.deadline:
                scope.deadline = deadline

    def cancel_all(self) -> None:
        for scope in self._scopes:
            scope.cancel()


class ConcurrentHandlers:
    """Mixed into ActorCell, which holds `inflight` and decides the rest
    (`_alive`, `_down`, `_crashed`, `_settle`)."""

    __slots__ = ()

    def _start_concurrent(self, fn: Callable[..., Any], env: Envelope | list[Envelope]) -> None:
        """Start a concurrent handler in the host, for one envelope or a run
        of them (a batch handler's, already taken: runtime/batch.py); its
        scope counts at once."""
        if type(env) is list:
            deadline = max(each.deadline for each in env)
        else:
            reply = env.reply_to
            if reply is not None:
                reply.started = True
            self.mailbox.processed += 1
            deadline = env.deadline
        if self._stop_deadline < deadline:
            deadline = self._stop_deadline
        scope = anyio.CancelScope(deadline=deadline)
        inflight = self.inflight
        assert inflight is not None
        inflight.add(scope)
        job = (fn, env, self.actor, scope)
        if inflight.idle:
            inflight.jobs.append(job)  # a lingering worker takes it
        else:
            self.start_soon(self._concurrent_worker, job, name=self.path)

    async def _concurrent_worker(self, job: tuple[Any, ...]) -> None:
        """Run `job`, then linger for the next one (WORKER_LINGER_PASSES passes)."""
        inflight = self.inflight
        assert inflight is not None
        checkpoint = self.system.backend.checkpoint
        try:
            while True:
                await self._run_concurrent(*job)
                inflight.idle += 1
                try:
                    for _ in range(WORKER_LINGER_PASSES):
                        if inflight.jobs:
                            break
                        await checkpoint()
                    if not inflight.jobs:
                        return
                    job = inflight.jobs.popleft()
                finally:
                    inflight.idle -= 1
        except BaseException:
            # The host is going away: jobs no worker will take end now, coded.
            while inflight.jobs and not inflight.idle:
                _, env, _, scope = inflight.jobs.popleft()
                inflight.discard(scope)
                self._cancelled_while_handling(env)
            raise

    async def _run_concurrent(
        self, fn: Callable[..., Any], env: Envelope | list[Envelope], actor: Actor, scope: anyio.CancelScope
    ) -> None:
        if type(env) is list:
            await self._run_concurrent_batch(fn, env, actor, scope)
            return
        context = ActorContext(self)  # this task's view: its own envelope
        context.envelope = env
        CURRENT.set(context)
        result = None  # stays None if the scope cuts the handler
        try:
            with scope:
                try:
                    result = await fn(actor, env.message)
                except ExoarmurError as exc:
                    if not self._answered_with(env, exc):
                        self._concurrent_crashed(env, exc, actor)
                    return
                except Exception as exc:
                    self._concurrent_crashed(env, exc, actor)
                    return
        except BaseException:
            self._cancelled_while_handling(env)  # the host is going away
            raise
        finally:
            self.inflight.discard(scope)  # type: ignore[union-attr]
        # A sibling's crash may have ended the instance meanwhile.
        self._settle(env, scope, result, instance_gone=actor is not self.actor or self._instance_dead)

    async def _run_concurrent_batch(
        self, fn: Callable[..., Any], run: list[Envelope], actor: Actor, scope: anyio.CancelScope
    ) -> None:
        """A concurrent batch handler on its run (runtime/batch.py); sends
        from it inherit the run's latest deadline."""
        context = ActorContext(self)
        context.envelope = max(run, key=lambda env: env.deadline)
        context.run = run
        CURRENT.set(context)
        result = failure = None
        try:
            with scope:
                try:
                    result = await fn(actor, [env.message for env in run])
                except Exception as exc:
                    failure = exc
                else:
                    failure = self._bad_results(run, result)
        except BaseException:
            for env in run:
                self._cancelled_while_handling(env)  # the host is going away
            raise
        finally:
            self.inflight.discard(scope)  # type: ignore[union-attr]
        if failure is not None and not scope.cancel_called:
            if isinstance(failure, ExoarmurError) and not isinstance(failure, ActorCrashed):
                self._run_raised(run, failure)
            elif self._alive(actor):
                self._down(self._run_raised(run, failure))
            else:
                for env in run:
                    self._concurrent_crashed(env, failure, actor)
            return
        gone = actor is not self.actor or self._instance_dead
        bound = context.envelope.deadline
        # Timers made in the handler keep its context until they are due
        # (asyncio keeps a cancelled TimerHandle's): it keeps no envelope.
        context.envelope = context.run = None
        self._settle_run(run, scope, result, bound=bound, instance_gone=gone)

    def _concurrent_crashed(self, env: Envelope, exc: Exception, actor: Actor) -> None:
        if self._alive(actor):
            self._down(self._crashed(env, exc))
            return
        # The instance is gone already (crashed, suspended or stopping): this
        # asker learns of the crash; the parent has heard of it once.
        reply = env.reply_to
        if reply is None or not reply.done:
            error = self.system.failure(
                "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, envelope=env, detail=f"{type(exc).__name__}: {exc}"
            )
            if reply is not None:
                reply.resolve(outcome.Error(error))
