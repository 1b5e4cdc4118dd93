"""Calling nats-py from a handler: deadline budgets and coded errors.

Every call is bounded by the envelope's deadline, less a margin so its answer
reaches the asker before the asker's own timer fires (`remaining`,
`answer_by`). nats-py's exceptions become coded errors (errors.py); the
dependency failures among them, running out of time included, are reported
to the supervisor's breaker (`coded`). An exception that is not NATS's is a
bug: it is raised, and the connection crashes.

    call(state, code, fn, *args)   one call, awaited
    call_each(state, code, calls)  a batch handler's run, each asker answered
                                   as its own call ends (runtime/batch.py)
    settle(state, later, code, r)  answer a deferred asker with a call's end
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from exoarmur.actors.nats.aio import StrayCancellation
from exoarmur.actors.nats.errors import DEPENDENCY_CODES, coded as coded_error
from exoarmur.actors.nats.starting import Call, gather, start_each
from exoarmur.actors.nats.state import ConnectionState
from exoarmur.runtime import Deferred, ExoarmurError, ReasonCode, TimeoutCategory, error_for
from exoarmur.runtime.margins import ANSWER, BRIDGED_ANSWER, CALL_FLOOR

__all__ = ["answer_by", "attempt", "call", "call_each", "coded", "remaining", "settle"]

NO_ANSWER = "no answer from NATS before the deadline"


def remaining(state: ConnectionState) -> float:
    """Seconds to the deadline of the envelope being handled (at least CALL_FLOOR)."""
    return _left(state, state.context.now())


def _left(state: ConnectionState, now: float) -> float:
    deadline = state.context.deadline
    return max(deadline - now, CALL_FLOOR) if deadline is not None else CALL_FLOOR


def answer_by(state: ConnectionState) -> float:
    """When a request ends unanswered (counted as a failed dependency):
    just before the envelope's deadline, an instant on the runtime's clock,
    which is the asyncio side's too (trio-asyncio's loop reads trio's), so a
    request started a pass later still ends in time."""
    margin = ANSWER if state.bridge.loop is None else BRIDGED_ANSWER
    now = state.context.now()
    return now + max(_left(state, now) - margin, CALL_FLOOR)


def coded(state: ConnectionState, exc: BaseException, code: ReasonCode) -> ExoarmurError | None:
    """nats-py's exception as its coded error (`code`: the operation's
    timeout code), reported to the breaker if a dependency failed; None for
    any other exception (a bug: the caller crashes the actor with it)."""
    error = coded_error(exc, timeout=code)
    if error is not None and error.code in DEPENDENCY_CODES:
        state.context.report_failure(error.code, error.detail)
    return error


async def call(
    state: ConnectionState,
    code: ReasonCode,
    fn: Callable[..., Awaitable[Any]],
    /,
    *args: Any,
    absent_on: tuple[type[Exception], ...] = (),
    bounded: bool = True,
    **kwargs: Any,
) -> Any:
    """`fn(*args, **kwargs)` on the asyncio side until just before the
    envelope's deadline; its exceptions coded (`absent_on` ones: None).
    `bounded=False`: no cancel scope of its own (for calls that do not wait
    on the network, a publish into nats-py's buffer: the handler's deadline
    still bounds them)."""
    if not bounded:
        return await attempt(state, code, fn, args, kwargs, absent_on)
    if state.context.deadline is None:  # in a hook: the operation's default time
        budget = state.context.system.timeouts.seconds[TimeoutCategory(code)]
    else:
        budget = remaining(state) - ANSWER
    with anyio.move_on_after(budget):
        return await attempt(state, code, fn, args, kwargs, absent_on)
    error = error_for(code, NO_ANSWER)
    state.context.report_failure(code, error.detail)
    raise error


async def attempt(
    state: ConnectionState,
    code: ReasonCode,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    absent_on: tuple[type[Exception], ...],
) -> Any:
    """One crossing to nats-py: where every awaited call of nats-py's goes."""
    try:
        return await state.bridge.call(fn, *args, **kwargs)
    except absent_on:
        return None
    except Exception as exc:
        error = coded(state, exc, code)
        if error is None:
            raise
        raise error from None


async def call_each(state: ConnectionState, code: ReasonCode, calls: list[Call | ExoarmurError]) -> list[Deferred]:
    """For a batch handler's run: `calls` (one per message, or the message's
    coded answer if already known) start at once on the asyncio side, in one
    crossing of the bridge. Each asker is answered (its value, or its coded
    error; a dependency failure is reported) as soon as its own call ends on
    asyncio, when the run's last one does on trio. The run waits until just
    before its latest deadline; each asker no longer than its own. An
    exception that is not NATS's crashes the actor once every call has ended."""
    context = state.context
    laters = context.defer_each()
    pending = [later for later, c in zip(laters, calls, strict=True) if not isinstance(c, ExoarmurError)]
    started = [c for c in calls if not isinstance(c, ExoarmurError)]
    bugs: list[BaseException] = []

    def settle_one(index: int, result: Any) -> None:
        bug = settle(state, pending[index], code, result)
        if bug is not None:
            bugs.append(bug)

    for later, c in zip(laters, calls, strict=True):
        if isinstance(c, ExoarmurError):  # one bucket's error, shared: each asker's own event
            later.fail(error_for(c.code, c.detail))
    with anyio.move_on_after(remaining(state) - ANSWER):
        nc = state.client()
        if state.bridge.loop is None:
            await start_each(nc, started, settle_one)
        else:
            # On trio a crossing of the bridge costs more than waiting for
            # the run's last answer: answered one by one, the askers would
            # come back one by one, a crossing each. The run ends as one.
            for index, result in enumerate(await state.bridge.call(gather, nc, started)):
                settle_one(index, result)
        if bugs:
            raise bugs[0]
        return laters
    for later in pending:
        if not later.settled:
            context.report_failure(code, NO_ANSWER)
            later.fail(error_for(code, NO_ANSWER))
    return laters


def settle(state: ConnectionState, later: Deferred, code: ReasonCode, result: Any) -> BaseException | None:
    """Answer `later` with a call's value, or its exception coded (a
    dependency failure reported); the exception if it is not NATS's (a
    bug, for the caller to raise). Nothing if the asker was answered
    already (a stop, a run's deadline)."""
    if later.settled:
        return None
    if isinstance(result, asyncio.CancelledError):
        result = StrayCancellation(f"{code}: cancelled by nats-py")
    if not isinstance(result, BaseException):
        later.reply(result)
        return None
    error = coded(state, result, code)
    if error is None:
        return result
    later.fail(error)
    return None
