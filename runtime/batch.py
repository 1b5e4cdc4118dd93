"""Batch handlers (`@handles(M, batch=True)`): one call for a run of envelopes.

The drain takes the envelope at the head and every following one of the same
message type (up to `throughput`), dead-lettering any that expired, and calls
the handler once with their messages, in mailbox order, under one cancel scope
at the earliest of their deadlines (or the stop deadline). Its outcome is every
envelope's: the value to each asker, a coded error to each (audited once per
asker), a crash (ACTOR_CRASHED to each, one crash for the parent), a timeout
(each asker gets the message's timeout code; the stop's code if the stop cut it).
What it saves: the per-envelope cancel scope and handler call, the dearest
part of handing many small messages to a buffered client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import outcome

from runtime.codes import ReasonCode
from runtime.envelope import Envelope
from runtime.errors import ActorCrashed, ExoarmurError
from runtime.messages import timeout_category

__all__ = ["BatchHandlers"]


class BatchHandlers:
    """Mixed into ActorCell."""

    __slots__ = ()

    def _take_run(self, first: Envelope) -> list[Envelope]:
        """`first` and the envelopes of its type right behind it, unexpired."""
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
        return run

    async def _handle_batch(self, fn: Callable[..., Any], first: Envelope) -> ExoarmurError | None:
        """Run the batch handler on the run starting at `first`; the crash's
        error if it crashed."""
        run = self._take_run(first)
        for env in run:
            if env.reply_to is not None:
                env.reply_to.started = True
        self.mailbox.processed += len(run)
        earliest = min(run, key=lambda env: env.deadline)
        self.context.envelope = earliest  # sends from the handler inherit the earliest deadline
        deadline = min(earliest.deadline, self._stop_deadline)
        result = None
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                try:
                    result = await fn(self.actor, [env.message for env in run])
                finally:
                    self._scope = None
        except ExoarmurError as exc:
            if not isinstance(exc, ActorCrashed):
                self._answered_with(run[0], exc)
                for env in run[1:]:
                    self._tell_each(env, exc, kind="answered")
                return None
            return self._batch_crashed(run, exc)
        except Exception as exc:
            return self._batch_crashed(run, exc)
        if scope.cancel_called:
            if self._instance_dead:
                code = ReasonCode.ACTOR_CRASHED
            elif deadline < earliest.deadline:
                code = self.mailbox.closed or ReasonCode.SHUTTING_DOWN
            else:
                code = timeout_category(type(first.message)).code
            for env in run:
                self._overran(env, code)
            return None
        for env in run:
            reply = env.reply_to
            if reply is not None and not reply.resolve(outcome.Value(result)):
                self.system._late_replies += 1
        return None

    def _batch_crashed(self, run: list[Envelope], exc: Exception) -> ExoarmurError:
        error = self._crashed(run[0], exc)  # the one crash the parent hears of
        for env in run[1:]:
            self._tell_each(env, error, kind="crashed")
        return error

    def _tell_each(self, env: Envelope, error: ExoarmurError, *, kind: str) -> None:
        """The batch's failure to one more asker, with its own audit event."""
        failure = self.system.failure(kind, error.code, path=self.path, envelope=env, detail=error.detail)
        reply = env.reply_to
        if reply is not None and not reply.resolve(outcome.Error(failure)):
            self.system._late_replies += 1
