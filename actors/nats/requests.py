"""Requests: started at once from a plain handler, answered when the reply comes.

A Request (or a JetStream publish, also one request) is started on the
asyncio side with no task and no cancel scope of ours (`starting.begin`),
and its asker is answered later (runtime/deferred.py): by the reply, or just
before its deadline by a timer on the asyncio loop, with the operation's
timeout code (a failed dependency). At most `requests_limit` wait at once;
past it one more is refused at once with OVERLOAD_SHED, so a sender faster
than the replies slows down or retries instead of piling requests up in
nats-py until their deadlines end them.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import nats

from exoarmur.actors.nats.calls import answer_by, settle
from exoarmur.actors.nats.messages import Request, Response
from exoarmur.actors.nats.starting import OneRequest, begin, result_of
from exoarmur.actors.nats.state import ConnectionState
from exoarmur.runtime import Deferred, ReasonCode, error_for

__all__ = ["request", "start"]


def request(state: ConnectionState, m: Request) -> Deferred:
    call = OneRequest(m.subject, m.data, _response, nats.errors.NoRespondersError, m.headers)
    return start(state, ReasonCode.TIMEOUT_NATS_REQUEST, call)


def _response(msg: Any) -> Response:
    return Response(msg.data, dict(msg.headers) if msg.headers else None)


def start(state: ConnectionState, code: ReasonCode, call: OneRequest, later: Deferred | None = None) -> Deferred:
    """Started at once on the asyncio side; answered when the reply comes,
    or with `code` (a failed dependency) just before the deadline. `later`:
    the envelope's answer deferred already (default: deferred here)."""
    nc = state.client()
    if state.requests_in_flight >= state.requests_limit:
        raise error_for(ReasonCode.OVERLOAD_SHED, f"{state.requests_in_flight} requests in flight (requests_limit)")
    if later is None:
        later = state.context.defer()
    state.requests_in_flight += 1
    state.bridge.soon(_start_on_asyncio, state, nc, call, code, answer_by(state), later)
    return later


def _start_on_asyncio(
    state: ConnectionState, nc: Any, call: OneRequest, code: ReasonCode, deadline: float, later: Deferred
) -> None:
    """The request started (`begin`), ended by its reply or by a timer at
    `deadline`. Whatever happens here reaches the asker (on trio this runs
    as a loop callback, whose exceptions asyncio would only log)."""
    context, bridge = state.context, state.bridge
    answer = partial(context.call_as_self, envelope=later.envelope)
    on_asyncio = bridge.loop is None
    loop = asyncio.get_running_loop()
    try:
        future, key = begin(nc, call, loop)
    except Exception as exc:  # noqa: BLE001 - a bug: this connection crashes, its asker hears so
        state.requests_in_flight -= 1
        bridge.actor_side(answer, _raise, exc)
        return
    if key is None:
        state.request_tasks.add(future)  # nats-py's own task: reaped at close
    time_was_up = False

    def time_up() -> None:
        nonlocal time_was_up
        time_was_up = True  # before the cancel: a ReplySlot's callbacks run within it
        future.cancel()

    def ended(_: Any) -> None:
        state.requests_in_flight -= 1
        state.request_tasks.discard(future)
        timer.cancel()
        nc._resp_map.pop(key, None)
        # A task asked to stop may still have returned its reply: that counts.
        timed_out = time_was_up and future.cancelled()
        result = nats.errors.TimeoutError() if timed_out else result_of(call, future)
        if on_asyncio and not isinstance(result, BaseException):
            settle(state, later, code, result)  # a value: nothing here runs as the actor
        else:
            bridge.actor_side(answer, _answer, state, later, code, result)

    timer = loop.call_at(deadline, time_up)
    future.add_done_callback(ended)


def _answer(context: Any, state: ConnectionState, later: Deferred, code: ReasonCode, result: Any) -> None:
    bug = settle(state, later, code, result)
    if bug is not None:
        raise bug  # not NATS's: this connection crashes, the asker hears ACTOR_CRASHED


def _raise(context: Any, exc: BaseException) -> None:
    raise exc
