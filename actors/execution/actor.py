"""The actor that hosts one execution type and turns its calls into answers.

    Apply(intent, key)      -> Effect      apply once, within the type's timeout
    Revert(intent, key)     -> Effect      (types with revert)
    Reconcile(intent, key)  -> Reconciled  did it take effect?

Every call runs in a cancel scope ending at the earlier of `now + timeout`
(the type's) and the envelope's deadline less EXECUTION_ANSWER, so the asker
hears the answer before its own deadline. What the type does becomes:

    returned                        -> Effect(APPLIED)
    ExecutionError(declared reason) -> Effect(FAILED, reason, detail)
    ExecutionError(other reason)    -> Effect(UNCERTAIN, EXECUTION_FAILED)
    any other exception             -> Effect(UNCERTAIN, EXECUTION_FAILED, repr)
    ran out of time                 -> Effect(UNCERTAIN, TIMEOUT_<category>)
    ... before the call started     -> Effect(NOT_STARTED, TIMEOUT_<category>),
                                       not reported (waiting for its key or
                                       its kill-switch check)
    no time left to start           -> Effect(FAILED, DEADLINE_EXCEEDED)
    its turn came after `not_after` -> the kill switches checked again here,
                                       at its turn (`gates`: TenantSwitches):
                                       clear, it is applied; else (or with no
                                       gates) Effect(NOT_STARTED), no call
                                       made, and the intent asks its gates

and for `reconcile`: its Reconciled answer; UNKNOWN if it answered something
else; and if it raised or ran out of time, the coded error (EXECUTION_FAILED,
or the timeout's code): a slow or unreachable effector is asked again later
by the intent, never turned into an operator's case.

Calls for one intent key run one at a time (keys.py): a reconcile waits for
a running apply of its key, never overtakes it. A type's exceptions never
crash the actor; the uncertain ones and reconcile's failures are reported to the
supervisor (`report_failure`), so its breaker opens on a failing dependency.
Cancellation from outside (the asker gave up, the actor stops) is never
caught. An apply that returned is APPLIED even if its time ran out meanwhile:
a type that shields its write (as the ledger does) is answered truthfully.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import anyio

from exoarmur.actors.execution.api import ExecutionError, ExecutionType
from exoarmur.actors.execution.keys import KeyCalls
from exoarmur.actors.intents.effects import Apply, Effect, Outcome, Reconcile, Reconciled, Revert
from exoarmur.actors.intents.gates import TenantSwitches
from exoarmur.runtime import Actor, ExoarmurError, ReasonCode, error_for, handles, timeout_category
from exoarmur.runtime.margins import EXECUTION_ANSWER, KILL_CHECK_FRESH

__all__ = ["ExecutionActor"]


class ExecutionActor(Actor):
    """Hosts the instance `execution_type`; spawn `ExecutionActor.of(it)`."""

    def __init__(self, *, execution_type: ExecutionType, calls: KeyCalls | None = None, gates: str = "") -> None:
        if type(self).concurrency != execution_type.concurrency:
            raise TypeError(f"spawn ExecutionActor.of(execution_type) for type {execution_type.name!r}")
        self.execution_type = execution_type
        # One call per key at a time (keys.py); given by the supervisor's spec,
        # it outlives this instance.
        self.calls = KeyCalls() if calls is None else calls
        self.gates_path = gates  # "" : none; an apply whose check went stale is not started

    async def started(self) -> None:
        find, path = self.context.system.find, self.gates_path
        self.switches = TenantSwitches(lambda: find(path) if path else None, now=self.context.now)

    @classmethod
    def of(cls, execution_type: ExecutionType) -> type[ExecutionActor]:
        """The actor class for `execution_type`: one whose `concurrency` is the type's.

        One class per (name, concurrency), not a limiter inside: the kernel
        bounds a class's concurrent handlers and, at the bound, takes nothing
        more from the mailbox, so waiting calls stay queued under the
        mailbox's policy and their own deadlines (an expired one is refused
        unstarted), instead of piling up as tasks parked on a limiter."""
        return _actor_class(cls, execution_type.name, execution_type.concurrency)

    @handles(Apply, concurrent=True)
    async def apply(self, m: Apply) -> Effect:
        self._check(m.intent.type)
        return await self._effect(self.execution_type.apply, m)

    @handles(Revert, concurrent=True)
    async def revert(self, m: Revert) -> Effect:
        self._check(m.intent.type)
        if not self.execution_type.revertible:
            return Effect(Outcome.FAILED, ReasonCode.EXECUTION_FAILED, f"type {self.execution_type.name} cannot revert")
        return await self._effect(self.execution_type.revert, m)

    @handles(Reconcile, concurrent=True)
    async def reconcile(self, m: Reconcile) -> Reconciled:
        self._check(m.intent.type)
        end = self._end()
        if end is None:
            raise error_for(ReasonCode.DEADLINE_EXCEEDED, f"{self.execution_type.name}: no time left to reconcile")
        with anyio.CancelScope(deadline=end):
            try:
                async with self.calls.alone(m.key):
                    answer = await self.execution_type.reconcile(m.intent, m.key)
            except Exception as exc:
                code, detail = _code_of(exc), f"reconcile raised {exc!r}"
                self._report(code, detail)
                raise error_for(code, detail) from None
            if isinstance(answer, Reconciled):
                return answer
            self._report(ReasonCode.EXECUTION_FAILED, f"reconcile answered {answer!r}, not a Reconciled")
            return Reconciled.UNKNOWN
        code = timeout_category(Reconcile).code
        self._report(code, self._late("reconcile", end))
        raise error_for(code, self._late("reconcile", end))

    # ---- helpers ----------------------------------------------------------------

    async def _effect(self, call: Callable[[Any, str], Awaitable[None]], m: Apply | Revert) -> Effect:
        """`call(intent, key)` as an Effect (the table in the module doc)."""
        end = self._end()
        what = type(m).__name__.lower()
        if end is None:
            return Effect(Outcome.FAILED, ReasonCode.DEADLINE_EXCEEDED, f"{self.execution_type.name}: no time left to {what}")
        started = False
        with anyio.CancelScope(deadline=end):
            try:
                async with self.calls.alone(m.key):
                    if isinstance(m, Apply) and m.not_after is not None and self.context.now() > m.not_after:
                        stopped = await self._switches_say(m.intent.tenant)
                        if stopped:
                            return Effect(Outcome.NOT_STARTED, ReasonCode.KILL_SWITCH_ACTIVE, stopped)
                    started = True
                    await call(m.intent, m.key)
            except ExecutionError as exc:
                if exc.reason in self.execution_type.reasons:
                    return Effect(Outcome.FAILED, exc.reason, exc.detail)
                return self._uncertain(ReasonCode.EXECUTION_FAILED, f"undeclared reason {exc.reason!r}: {exc.detail}")
            except Exception as exc:
                return self._uncertain(_code_of(exc), f"{what} raised {exc!r}")
            return Effect(Outcome.APPLIED)
        if not started:  # its time ran out waiting for its key or its check: certainly not made
            return Effect(Outcome.NOT_STARTED, timeout_category(type(m)).code, f"{self._late(what, end)} before it started")
        return self._uncertain(timeout_category(type(m)).code, self._late(what, end))

    async def _switches_say(self, tenant: str) -> str:
        """"" if the kill switches covering `tenant` were read clear within
        KILL_CHECK_FRESH (read again now if need be, one read per tenant at
        a time): the check an apply waiting for its turn outlived. Else why
        it must not start: a switch's words, or a check that could not be made."""
        stale = "its kill-switch check went stale"
        try:
            seen = await self.switches.check(tenant)
        except ExoarmurError as exc:
            return f"{stale}; checked again: {exc.code.value}: {exc.detail}"
        if seen is None:
            return stale
        sent, detail = seen
        return detail or (f"{stale}; checked again too late" if self.context.now() - sent > KILL_CHECK_FRESH else "")

    def _end(self) -> float | None:
        """When the call must be over; None if that is already past."""
        context = self.context
        now = context.now()
        end = now + self.execution_type.timeout
        if context.deadline is not None:
            end = min(end, context.deadline - EXECUTION_ANSWER)
        return end if end > now else None

    def _late(self, what: str, end: float) -> str:
        deadline = self.context.deadline
        by_deadline = deadline is not None and end >= deadline - EXECUTION_ANSWER
        bound = "the asker's deadline" if by_deadline else f"its timeout, {self.execution_type.timeout:g} s"
        return f"{self.execution_type.name}: {what} ran out of time ({bound})"

    def _uncertain(self, code: ReasonCode, detail: str) -> Effect:
        """The effect may or may not have happened: only reconcile can tell."""
        self._report(code, detail)
        return Effect(Outcome.UNCERTAIN, code, detail)

    def _report(self, code: ReasonCode, detail: str) -> None:
        """A failed dependency, counted towards the type's breaker (and audited)."""
        self.context.report_failure(code, detail)

    def _check(self, type_name: str) -> None:
        if type_name != self.execution_type.name:
            raise error_for(
                ReasonCode.EXECUTION_TYPE_UNKNOWN,
                f"an intent of type {type_name!r} sent to the actor of {self.execution_type.name!r}",
            )


def _code_of(exc: Exception) -> ReasonCode:
    """A coded error keeps its code (a type's own ask that timed out says
    more than EXECUTION_FAILED); anything else is EXECUTION_FAILED."""
    return exc.code if isinstance(exc, ExoarmurError) else ReasonCode.EXECUTION_FAILED


@cache
def _actor_class(base: type[ExecutionActor], name: str, concurrency: int) -> type[ExecutionActor]:
    return type(f"{base.__name__}[{name}]", (base,), {"concurrency": concurrency, "__module__": base.__module__})
