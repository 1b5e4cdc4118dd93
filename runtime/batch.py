"""Batch handlers (`@handles(M, batch=True)`): one call for a run of envelopes.

The drain takes the envelope at the head and every following one of the same
message type (up to `throughput`), dead-lettering any that expired, and calls
the handler once with their messages, in mailbox order.

- Alone, the call holds the mailbox, under one cancel scope at the earliest of
  their deadlines (or the stop deadline): for cheap, ordered work such as
  handing publishes to a client's buffer.
- With `concurrent=True` the run is one concurrent handler (runtime/inflight.py)
  under the latest of their deadlines: many I/O calls started in one go, one
  task and one scope for all. Each asker still waits no longer than its own
  deadline (its reply's own timer).

Its outcome: the value to each asker (with `per_item=True`, the value at its
index; an ExoarmurError there is that asker's coded answer; a Deferred from
`context.defer_each()` answers its asker on its own, as soon as it can), or a
coded error raised to each (audited once per asker), or a crash (ACTOR_CRASHED
to each, one crash for the parent), or a timeout (each asker gets the
message's timeout code; the stop's code if the stop cut it).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import anyio
import outcome

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.deferred import Deferred
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ActorCrashed, ExoarmurError
from exoarmur.runtime.messages import timeout_category

__all__ = ["BatchHandlers"]

_deadline = itemgetter(Envelope._fields.index("deadline"))
REPLY_TO = Envelope._fields.index("reply_to")


class BatchHandlers:
    """Mixed into ActorCell."""

    __slots__ = ()

    def _take_run(self, first: Envelope) -> list[Envelope]:
        """`first` and the envelopes of its type right behind it, unexpired;
        each marked as taken."""
        mailbox = self.mailbox
        queue = mailbox.queue
        kind = type(first.message)
        run = [first]
        now = self.system.now()
        while queue and len(run) < self.throughput and type(queue[0].message) is kind:
            env = queue.popleft()
            if mailbox.waiters:
                mailbox.hand_over_slot()
            if env.deadline <= now:
                mailbox.expired += 1
                self.dead_letter(env, ReasonCode.DEADLINE_EXCEEDED)
                continue
            run.append(env)
        self._mark_taken(run)
        return run

    def _mark_taken(self, run: list[Envelope]) -> None:
        for env in run:
            if env.reply_to is not None:
                env.reply_to.started = True
        self.mailbox.processed += len(run)

    async def _handle_batch(self, fn: Callable[..., Any], first: Envelope) -> ExoarmurError | None:
        return await self._handle_run(fn, self._take_run(first))

    async def _handle_run(self, fn: Callable[..., Any], run: list[Envelope]) -> ExoarmurError | None:
        """Run the batch handler on `run` (taken), holding the mailbox; the
        crash's error if it crashed."""
        earliest = min(run, key=_deadline)
        self.context.envelope = earliest  # sends from the handler inherit the earliest deadline
        self.context.run = run
        deadline = min(earliest.deadline, self._stop_deadline)
        result = None
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                try:
                    result = await fn(self.actor, [env.message for env in run])
                finally:
                    self._scope = None
                    self.context.run = None
        except Exception as exc:
            return self._run_raised(run, exc)
        bad = self._bad_results(run, result)
        if bad is not None and not scope.cancel_called:
            return self._run_raised(run, bad)
        self._settle_run(run, scope, result, bound=earliest.deadline, instance_gone=self._instance_dead)
        return None

    def _bad_results(self, run: list[Envelope], result: Any) -> Exception | None:
        """A per-item handler that did not return one result per message: a bug
        in it, so a crash."""
        if type(run[0].message) not in self.per_item:
            return None
        if isinstance(result, list | tuple) and len(result) == len(run):
            return None
        return TypeError(f"a per-item batch handler returned {type(result).__name__}, not {len(run)} results")

    def _run_raised(self, run: list[Envelope], exc: Exception) -> ExoarmurError | None:
        """A coded error raised by the handler is every asker's answer; anything
        else (or ActorCrashed) is a crash: the error the parent hears of."""
        if isinstance(exc, ExoarmurError) and not isinstance(exc, ActorCrashed):
            self._answered_with(run[0], exc)
            for env in run[1:]:
                self._tell_each(env, exc, kind="answered")
            return None
        error = self._crashed(run[0], exc)  # the one crash the parent hears of
        for env in run[1:]:
            self._tell_each(env, error, kind="crashed")
        return error

    def _settle_run(
        self, run: list[Envelope], scope: anyio.CancelScope, result: Any, *, bound: float, instance_gone: bool
    ) -> None:
        """After the handler's scope: each asker's answer, or why it was cut.
        The scope's deadline says whose deadline it was: the run's (`bound`) or
        the stop's."""
        if scope.cancel_called:
            if instance_gone:
                code = ReasonCode.ACTOR_CRASHED
            elif scope.deadline < bound:
                code = self.mailbox.closed or ReasonCode.SHUTTING_DOWN
            else:
                code = timeout_category(type(run[0].message)).code
            for env in run:
                self._overran(env, code)
            return
        results = result if type(run[0].message) in self.per_item else (result,) * len(run)
        late = 0
        for env, value in zip(run, results, strict=True):
            if type(value) is Deferred:
                continue  # answered on its own (context.defer_each)
            reply = env[REPLY_TO]
            if isinstance(value, ExoarmurError):
                self.system.audit_error(value, kind="answered", path=self.path, envelope=env)
                if reply is not None and not reply.resolve(outcome.Error(value)):
                    late += 1
            elif reply is not None and not reply.resolve(outcome.Value(value)):
                late += 1
        self.system._late_replies += late

    def _tell_each(self, env: Envelope, error: ExoarmurError, *, kind: str) -> None:
        """The run's failure to one more asker, with its own audit event."""
        error = self.system.failure(kind, error.code, path=self.path, envelope=env, detail=error.detail)
        reply = env.reply_to
        if reply is not None and not reply.resolve(outcome.Error(error)):
            self.system._late_replies += 1
