"""What nats-py's read loop hands over at once: no queue, no task, no loop pass.

nats-py hands each message of a subscription made with `future=` straight to
that future's `set_result`, from its read loop (`_process_msg`: the old-style
request). `Inline` is such a sink for a long-lived subscription:

    await nc.subscribe("svc", future=Inline(handle))   # handle(msg), at once

`inline_replies` makes the client's reply subscription for requests that
way, and a request started here waits in a `ReplySlot`, whose callbacks run
as the reply is read (or the deadline's timer cancels it), not at the
loop's next pass as an asyncio future's would.

Whatever runs from the read loop must not block nor raise: an exception
there would end nats-py's reading. `Inline` and `ReplySlot` hand their
callbacks' exceptions to the loop's exception handler, as asyncio does
those of a future's callbacks.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = ["Inline", "ReplySlot", "inline_replies"]


def _report(fn: Callable[..., object], exc: Exception) -> None:
    asyncio.get_running_loop().call_exception_handler(
        {"message": f"exception in {getattr(fn, '__qualname__', fn)!r}, called from nats-py's read loop", "exception": exc}
    )


class Inline:
    """A subscription's sink, called by nats-py with each message as it is read."""

    __slots__ = ("deliver",)

    def __init__(self, deliver: Callable[[Any], None]) -> None:
        self.deliver = deliver

    def cancelled(self) -> bool:
        return False

    def set_result(self, msg: Any) -> None:
        try:
            self.deliver(msg)
        except Exception as exc:  # noqa: BLE001 - reported, as a future's callback's would be
            _report(self.deliver, exc)


async def inline_replies(nc: Any) -> None:
    """On the asyncio side, once connected: nats-py's reply subscription for
    requests (`_init_request_sub`, which its first request would make), its
    replies settled from the read loop. Reconnects subscribe it again as any other."""
    prefix = nc._inbox_prefix[:]
    prefix.extend(b".")
    prefix.extend(nc._nuid.next())
    prefix.extend(b".")
    nc._resp_map = {}
    await nc.subscribe(prefix.decode() + "*", future=Inline(partial(_reply_arrived, nc, len(prefix))))
    nc._resp_sub_prefix = prefix


def _reply_arrived(nc: Any, prefix_length: int, msg: Any) -> None:
    """A reply: what waits for its token in `nc._resp_map` gets it (an
    asyncio future of nats-py's own request, or a ReplySlot)."""
    waiting = nc._resp_map.get(msg.subject[prefix_length:])
    if waiting is not None and not waiting.done():
        waiting.set_result(msg)


_PENDING, _REPLIED, _CANCELLED = range(3)


_Callback = Callable[["ReplySlot"], object]


class ReplySlot:
    """Where a request started here waits for its reply: the part of
    asyncio.Future that a reply map and its waiter use, with the done
    callbacks run at once (each in the context it was added in, as asyncio
    runs them)."""

    __slots__ = ("_state", "_msg", "_callbacks")

    def __init__(self) -> None:
        self._state = _PENDING
        self._msg: Any = None
        self._callbacks: list[tuple[_Callback, contextvars.Context]] = []

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> Any:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError()
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("no reply yet")
        return self._msg

    def exception(self) -> BaseException | None:
        self.result()
        return None

    def set_result(self, msg: Any) -> None:
        if self._state == _PENDING:
            self._state, self._msg = _REPLIED, msg
            self._ended()

    def cancel(self) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._ended()
        return True

    def add_done_callback(self, fn: _Callback) -> None:
        self._callbacks.append((fn, contextvars.copy_context()))
        if self._state != _PENDING:
            self._ended()

    def remove_done_callback(self, fn: _Callback) -> int:
        before = len(self._callbacks)
        self._callbacks = [(f, context) for f, context in self._callbacks if f != fn]
        return before - len(self._callbacks)

    def _ended(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            try:
                context.run(fn, self)
            except Exception as exc:  # noqa: BLE001 - reported, as a future's callback's would be
                _report(fn, exc)
