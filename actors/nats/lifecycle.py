"""The connection's client from connect to close, and the watchdog between.

- `start`: connect within NATS_CONNECT (a first connect with unlimited
  reconnects would never return: TIMEOUT_NATS_CONNECT, `started` fails and
  the supervisor decides), subscribe again what `Subscriptions` kept, and
  start the watchdog and the closer.
- The closer (`_close_when_gone`) lives as long as the instance: when it
  crashes (no `stopping` runs then), its client is closed, so a fresh
  instance never runs beside a client that still delivers.
- `stop`: drain, then close, each bounded; a close stuck on a silent peer
  aborts the socket, and no task of the client is left running (`_reap`).
- The watchdog: a reconnect stuck against a silent peer can hang for
  minutes in nats-py. After `stuck_after` the socket is aborted; if the
  client is still stuck `stuck_after` later, the actor crashes so its
  supervisor starts a fresh client.
- nats-py's callbacks: a disconnect is reported to the breaker
  (NATS_DISCONNECTED); permission errors and slow-consumer drops, which
  reach only the error callback, are counted and audited; a reconnect
  resumes the KV watches.

docs/nats.md says which nats-py behaviours each of these works around.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

import anyio
import nats

from exoarmur.actors.nats import subscriptions, watches
from exoarmur.actors.nats.credentials import redact_url
from exoarmur.actors.nats.errors import coded
from exoarmur.actors.nats.read_loop import inline_replies
from exoarmur.actors.nats.state import ConnectionState, audit, audited_drop
from exoarmur.runtime import ReasonCode, TimeoutCategory, error_for
from exoarmur.runtime.logs import logged
from exoarmur.runtime.margins import CLIENT_CLOSE, CONNECT_ATTEMPT, CONNECT_ATTEMPT_FLOOR

__all__ = ["start", "stop"]

LOG = logging.getLogger("exoarmur.nats")
DOWN_LOG_EVERY = 10.0  # seconds between "still reconnecting" lines


async def start(state: ConnectionState) -> None:
    """Connected, everything kept subscribed again, the watchdog running."""
    context = state.context
    deadline = context.now() + context.system.timeouts.seconds[TimeoutCategory.NATS_CONNECT]
    state.nc = await _connect(state, deadline)
    logged(LOG, logging.INFO, "nats.connected", f"connected to {_server(state.nc)}", path=context.path)
    context.start_task(_close_when_gone, state, state.nc)
    for record in state.subscriptions.records.values():  # a restart: subscribe again
        await subscriptions.attach(state, record)
    for watch in state.subscriptions.watches.values():
        await watches.attach(state, watch)
    context.start_task(_watchdog, state)


async def _connect(state: ConnectionState, deadline: float) -> Any:
    context, options = state.context, state.options
    kwargs = options.client_kwargs()
    kwargs.update(
        error_cb=partial(_on_error, state),
        disconnected_cb=partial(_on_disconnected, state),
        reconnected_cb=partial(_on_reconnected, state),
        connect_timeout=max(min(CONNECT_ATTEMPT, deadline - context.now()), CONNECT_ATTEMPT_FLOOR),
    )
    with anyio.move_on_after(max(deadline - context.now(), 0.0)) as scope:
        try:
            nc = await state.bridge.call(nats.connect, **kwargs)
            await state.bridge.call(inline_replies, nc)
            return nc
        except Exception as exc:
            error = coded(exc, timeout=ReasonCode.TIMEOUT_NATS_CONNECT)
            if error is None:
                raise
            raise error from None
    assert scope.cancelled_caught
    raise error_for(ReasonCode.TIMEOUT_NATS_CONNECT, f"no connection to {', '.join(map(redact_url, options.urls))}")


async def _close_when_gone(state: ConnectionState, nc: Any) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        state.ended = True
        with anyio.CancelScope(shield=True):
            await _close(state, nc)


async def stop(state: ConnectionState) -> None:
    """Drain, then close; within the stop's bound (`CLIENT_CLOSE` at least)."""
    state.ended = True
    nc, state.nc = state.nc, None
    if nc is None:
        return
    tasks = _client_tasks(nc)  # before the drain forgets the subscriptions
    bound = max(state.options.flush_timeout, CLIENT_CLOSE)
    with anyio.move_on_after(bound):
        try:
            await state.bridge.call(_drain, nc, bound / 2)
        except Exception as exc:  # noqa: BLE001 - a drain that fails is why close follows: recorded, coded
            audit(state, ReasonCode.NATS_API_ERROR, f"drain before close: {exc!r}")
    await _close(state, nc, tasks)


async def _drain(nc: Any, seconds: float) -> None:
    """`nc.drain`, its wait for the subscriptions bounded by `seconds`: a
    cancel that lands in that wait is swallowed by nats-py, which then
    flushes. A cancel lands only once through trio-asyncio, so only its own
    `drain_timeout` ends that wait; the caller's bound then cuts the flush."""
    nc.options["drain_timeout"] = seconds
    await nc.drain()


async def _close(state: ConnectionState, nc: Any, tasks: frozenset[Any] | set[Any] = frozenset()) -> None:
    """Close within CLIENT_CLOSE; a close stuck on a silent peer aborts the
    socket. Afterwards no task of the client is left running (`tasks`: its
    tasks found before a drain, which forgets the subscriptions)."""
    tasks = _client_tasks(nc) | tasks | state.request_tasks  # before the close forgets them
    if not nc.is_closed:
        with anyio.move_on_after(CLIENT_CLOSE):
            try:
                await state.bridge.call(nc.close)
            except Exception as exc:  # noqa: BLE001 - the bridge may be gone; the socket goes below, recorded
                audit(state, ReasonCode.NATS_API_ERROR, f"close: {exc!r}")
        if not nc.is_closed or _transport(nc) is not None:
            _abort(nc)
    await _reap(state, nc, tasks)


async def _reap(state: ConnectionState, nc: Any, tasks: set[Any]) -> None:
    """nats-py's close can stop short (cut at its bound, or by a stray
    cancellation inside it), and it cancels the reconnect loop once: that
    cancel is lost when it lands as a refused connect completes (the
    OSError wins), and the loop would retry forever. With no server left in
    its pool, its next pick ends it; the client's other tasks are cancelled
    here."""
    nc._server_pool.clear()
    tasks = {task for task in tasks | _client_tasks(nc) if not task.done()}
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    with anyio.move_on_after(CLIENT_CLOSE):
        try:
            await state.bridge.call(asyncio.wait, tasks)
        except Exception as exc:  # noqa: BLE001 - the bridge may be gone with the instance; the loop still ends itself
            audit(state, ReasonCode.NATS_API_ERROR, f"reaping the client's tasks: {exc!r}")


async def _watchdog(state: ConnectionState) -> None:
    options = state.options
    stuck_since: float | None = None
    aborted_at: float | None = None
    while True:
        await anyio.sleep(options.ping_interval)
        nc = state.nc
        if nc is None:
            return
        now = state.context.now()
        _still_down(state, now)
        # Not connected and not closed: reconnecting, or in one of its
        # connect attempts (nats-py says CONNECTING then, not RECONNECTING).
        if nc.is_connected or nc.is_closed:
            stuck_since = aborted_at = None
            continue
        stuck_since = stuck_since if stuck_since is not None else now
        if aborted_at is None and now - stuck_since >= options.stuck_after:
            state.aborted_sockets += 1
            aborted_at = now
            _abort(nc)
        elif aborted_at is not None and now - aborted_at >= options.stuck_after:
            state.nc = None
            await _close(state, nc)
            raise ConnectionError("nats client stuck reconnecting after its socket was aborted")


# ---- nats-py's callbacks (they run on the asyncio side) ---------------------------


async def _on_error(state: ConnectionState, exc: Exception) -> None:
    if state.current():
        state.bridge.actor_side(_error, state, exc)


def _error(state: ConnectionState, exc: Exception) -> None:
    if isinstance(exc, nats.errors.SlowConsumerError):
        state.slow_consumer_drops += 1
        if audited_drop(state.slow_consumer_drops):
            audit(state, ReasonCode.NATS_SLOW_CONSUMER, f"{state.slow_consumer_drops} dropped so far")
    elif "permissions violation" in str(exc):
        state.permission_errors += 1
        audit(state, ReasonCode.NATS_PERMISSION_DENIED, str(exc))


async def _on_disconnected(state: ConnectionState) -> None:
    if state.current():
        state.disconnects += 1
        state.bridge.actor_side(_disconnected, state)


def _disconnected(state: ConnectionState) -> None:
    if state.down_since is None:
        state.down_since = state.down_logged = state.context.now()
    state.context.report_failure(ReasonCode.NATS_DISCONNECTED, "connection lost")  # audited, and logged so


async def _on_reconnected(state: ConnectionState) -> None:
    if state.current():
        state.reconnects += 1
        state.bridge.actor_side(_reconnected, state)


def _reconnected(state: ConnectionState) -> None:
    down = state.context.now() - state.down_since if state.down_since is not None else 0.0
    state.down_since = None
    logged(LOG, logging.INFO, "nats.reconnected", f"reconnected to {_server(state.nc)} after {down:.1f} s",
           path=state.context.path, down_seconds=round(down, 3))  # fmt: skip
    if state.subscriptions.watches:
        state.context.start_task(watches.resume, state)


def _still_down(state: ConnectionState, now: float) -> None:
    """While the connection is down, say so every DOWN_LOG_EVERY seconds."""
    if state.down_since is None or now - state.down_logged < DOWN_LOG_EVERY:
        return
    state.down_logged = now
    logged(LOG, logging.WARNING, "nats.reconnecting", f"still reconnecting, {now - state.down_since:.0f} s after the connection was lost",
           path=state.context.path, code=ReasonCode.NATS_DISCONNECTED.value, down_seconds=round(now - state.down_since, 3))  # fmt: skip


def _server(nc: Any) -> str:
    url = getattr(nc, "connected_url", None)
    return redact_url(url.geturl()) if url is not None else "?"


# ---- nats-py's internals: its tasks and its socket ---------------------------------


def _client_tasks(nc: Any) -> set[Any]:
    """The tasks nats-py runs for a client, those still running: its own, each
    subscription's, and a JetStream consumer's heartbeat and flow-control
    checks (which its close leaves running)."""
    tasks = {nc._reading_task, nc._ping_interval_task, nc._flusher_task, nc._reconnection_task}
    for sub in nc._subs.values():
        tasks.add(sub._wait_for_msgs_task)
        jsi = getattr(sub, "_jsi", None)
        if jsi is not None:
            tasks.update((getattr(jsi, "_hbtask", None), getattr(jsi, "_fctask", None)))
    return {task for task in tasks if task is not None and not task.done()}


def _transport(nc: Any) -> Any:
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    return getattr(writer, "transport", None)


def _abort(nc: Any) -> None:
    """Drop the socket now (nats-py has no public way): a reconnect or close
    stuck writing to a silent peer then moves on."""
    transport = _transport(nc)
    if transport is not None:
        transport.abort()
