"""The publish path: runs of publishes, flushes, and the replies of served requests.

Publishes waiting together in the mailbox are one run (runtime/batch.py),
handled in order, so they reach the server in the order they were sent,
buffered as one write (buffering.py). None waits on the network unless the
buffer is full, and then the flush timeout and the run's deadline bound it.
A publish nats-py refuses (a bad subject, too big, a closed client) is that
publish's coded error alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from exoarmur.actors.nats.buffering import buffered, buffered_run, publish_all
from exoarmur.actors.nats.calls import call, coded, remaining
from exoarmur.actors.nats.messages import Publish
from exoarmur.actors.nats.state import ConnectionState
from exoarmur.runtime import ExoarmurError, ReasonCode

__all__ = ["flush", "publish", "respond"]


async def publish(state: ConnectionState, batch: list[Publish]) -> list[None | ExoarmurError]:
    """One answer per publish: None, or its coded error."""
    nc = state.client()
    # On asyncio, connected with room: straight into the buffer. Not on
    # trio: requests and replies started before reach the buffer at the
    # asyncio side's next pass, and this run must go after them.
    results = buffered_run(nc, batch) if state.bridge.loop is None else None
    if results is None:
        results = await call(state, ReasonCode.TIMEOUT_NATS_PUBLISH, publish_all, nc, batch, bounded=False)
    answers: list[None | ExoarmurError] = []
    for result in results:
        error = None if result is None else coded(state, result, ReasonCode.TIMEOUT_NATS_PUBLISH)
        if result is not None and error is None:
            raise result  # not NATS's: a bug, a crash
        answers.append(error)
    return answers


async def flush(state: ConnectionState, code: ReasonCode = ReasonCode.TIMEOUT_NATS_PUBLISH) -> None:
    """Until the server has taken everything buffered so far (a PING's PONG)."""
    await call(state, code, _written_then_flushed, state.client(), remaining(state))


async def _written_then_flushed(nc: Any, timeout: float) -> None:
    """`nc.flush`, once nats-py's flusher has written what is buffered:
    `flush` writes its PING straight to the socket, ahead of the buffer (a
    SUB just made), and the server can answer PONG before it has read them."""
    if nc.is_connected and nc._flusher_task is not None and not nc._flusher_task.done():
        written = asyncio.get_running_loop().create_future()
        await nc._flush_queue.put(written)  # the flusher writes the buffer, then ends this
        await asyncio.wait_for(written, timeout)
    await nc.flush(timeout=timeout)


def respond(state: ConnectionState, subject: str, data: bytes) -> None:
    """A served request's reply. Connected, it goes straight into nats-py's
    buffer (with `nc.publish`'s checks, as `msg.respond` would; on trio from
    the asyncio side, at its next pass); otherwise through this connection's
    mailbox as a Publish."""
    nc = state.nc
    if nc is None:
        _publish_later(state, subject, data)
    elif state.bridge.loop is None:
        if not buffered(nc, subject, data):
            _publish_later(state, subject, data)
    else:
        state.bridge.soon(_buffer_or_publish_later, state, nc, subject, data)


def _buffer_or_publish_later(state: ConnectionState, nc: Any, subject: str, data: bytes) -> None:
    if not buffered(nc, subject, data):  # on the asyncio side
        state.bridge.actor_side(_publish_later, state, subject, data)


def _publish_later(state: ConnectionState, subject: str, data: bytes) -> None:
    try:
        state.context.self_ref.tell_nowait(Publish(subject, data))
    except ExoarmurError:
        state.replies_lost += 1  # full or stopping (audited there): the asker hears at its deadline
