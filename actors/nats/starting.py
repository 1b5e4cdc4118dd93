"""Starting nats-py calls on the asyncio side, with no task of ours per call.

A call is either one NATS request (`OneRequest`: a core request, a
JetStream publish or API call), started straight into nats-py's buffer and
answered from its read loop (read_loop.py), or a nats-py coroutine function
with its arguments, run as a task of the loop's. `begin` starts one,
`result_of` reads its end as nats-py's own coroutine would, and
`start_each` starts a run of them at once, settling each as it ends.

Everything here runs on the asyncio side (on trio: in trio-asyncio's loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from secrets import token_hex
from typing import Any

import attrs
import nats
from nats.js.api import Header

from exoarmur.actors.nats.buffering import buffered
from exoarmur.actors.nats.read_loop import ReplySlot
from exoarmur.runtime.margins import JS_BACKSTOP

__all__ = ["Call", "OneRequest", "begin", "gather", "request_now", "result_of", "start_each"]

_NO_RESPONDERS = "503"  # the status header of NATS's no-responders reply


@attrs.define  # not frozen: made per request, and a frozen __init__ costs twice as much
class OneRequest:
    """A call that is one NATS request, its reply read as nats-py's own
    coroutine reads it: `parse` raises nats-py's exception for an error
    reply; `unanswered` is what nats-py raises when nothing answers."""

    subject: str
    data: bytes
    parse: Callable[[Any], Any]
    unanswered: type[Exception]
    headers: dict[str, str] | None = None


# A call of a run: (coroutine function, *args), or one request.
Call = tuple[Any, ...] | OneRequest


def request_now(nc: Any, subject: str, data: bytes, headers: dict[str, str] | None) -> tuple[ReplySlot, str] | None:
    """nats-py's request (its new-style request) started without a wait: the
    slot the reply settles (from the read loop: `inline_replies`) and its
    key in the client's reply map, which the caller pops when it ends; or
    None where only `nc.request` will do (a client without that
    subscription, reconnecting, draining, a refused subject, a full buffer).
    The caller bounds the wait."""
    if not nc._resp_sub_prefix:
        return None
    token = nc._nuid.next()
    token.extend(token_hex(2).encode())
    inbox = nc._resp_sub_prefix[:]
    inbox.extend(token)
    if not buffered(nc, subject, data, headers, inbox.decode()):
        return None
    slot = ReplySlot()
    key = token.decode()
    nc._resp_map[key] = slot
    return slot, key


def begin(nc: Any, call: Call, loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[Any] | ReplySlot, str | None]:
    """The call started. Its future (or slot) ends with the reply (a
    request's raw reply, read by `result_of`) or the value; with the key to
    pop from the client's reply map when it ends (None: a task of nats-py's
    own, which pops its own)."""
    if isinstance(call, OneRequest):
        started = request_now(nc, call.subject, call.data, call.headers)
        if started is not None:
            return started
        # Not now (see request_now): nats-py's own request, in a task.
        return loop.create_task(nc.request(call.subject, call.data, timeout=JS_BACKSTOP, headers=call.headers)), None
    return loop.create_task(call[0](*call[1:])), None


def result_of(call: Call, future: asyncio.Future[Any] | ReplySlot) -> Any:
    """An ended call's value, or its exception (CancelledError: cancelled, not by us)."""
    if future.cancelled():
        return asyncio.CancelledError()
    error = future.exception()
    if not isinstance(call, OneRequest):
        return error or future.result()
    if isinstance(error, nats.errors.NoRespondersError):
        return call.unanswered()
    if error is not None:
        return error
    msg = future.result()
    if msg.headers and msg.headers.get(Header.STATUS) == _NO_RESPONDERS:
        return call.unanswered()
    try:
        return call.parse(msg)
    except Exception as exc:  # noqa: BLE001 - nats-py's error for this call, coded by the caller
        return exc


async def gather(nc: Any, calls: list[Call]) -> list[Any]:
    """Every call at once; each one's value or exception."""
    results: list[Any] = [None] * len(calls)
    await start_each(nc, calls, results.__setitem__)
    return results


async def start_each(nc: Any, calls: list[Call], settle: Callable[[int, Any], None]) -> None:
    """Every call at once, each one's value or exception handed to
    `settle(index, result)` as it ends; returns when all have. Cut short,
    the calls still running are cancelled and settle nothing."""
    if not calls:
        return
    loop = asyncio.get_running_loop()
    all_ended = loop.create_future()
    running = [len(calls)]

    def ended(index: int, future: asyncio.Future[Any] | ReplySlot) -> None:
        nc._resp_map.pop(keys[index], None)
        settle(index, result_of(calls[index], future))
        running[0] -= 1
        if not running[0] and not all_ended.done():
            all_ended.set_result(None)

    futures, keys = [], []
    for index, call in enumerate(calls):
        future, key = begin(nc, call, loop)
        callback = partial(ended, index)
        future.add_done_callback(callback)
        futures.append((future, callback))
        keys.append(key)
    try:
        await all_ended
    finally:
        for (future, callback), key in zip(futures, keys):
            if not future.done():
                future.remove_done_callback(callback)
                future.cancel()
                nc._resp_map.pop(key, None)
