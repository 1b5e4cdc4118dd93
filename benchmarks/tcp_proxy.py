"""A TCP proxy on 127.0.0.1 that injects network faults (asyncio and trio):
the network chaos of the tests and of the load script (`bench load --chaos`).

    async with TcpProxy(target_port) as proxy:
        url = proxy.url  # nats://127.0.0.1:<proxy.port>
        proxy.delay(0.2); proxy.blackhole(); proxy.cut(); proxy.heal()

Modes, one at a time, switchable at any time, for every connection (current
and new):
- forward (`heal()`): bytes pass as they come;
- `delay(s)`: each chunk is forwarded `s` seconds after it was read (order
  kept; a bounded queue per direction, so a slow link pushes back);
- `blackhole()`: a silent peer. No byte passes in either direction and the
  proxy stops reading, so once the kernel buffers in between are full the
  sender's writes block, as on a link that drops every packet. Connections
  stay open and new ones are accepted (and go silent too). On `heal()` what
  was held flows on, the stream intact, as TCP would retransmit it;
and an action, `cut()`: every current connection is closed at once (both
sides); new ones are accepted.

Invariants: at most `max_connections` at a time (more are closed at once);
each connection's loops end with its streams, at a cut, or on exit; every
task lives in the proxy's task group and is cancelled when the block ends.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

_Chunk = tuple[float, bytes]  # (when it may be forwarded, the bytes)

__all__ = ["TcpProxy"]

HOST = "127.0.0.1"
CHUNK = 16 * 1024
QUEUED_CHUNKS = 8  # per direction: what a delayed link holds before pushing back
CONNECT_SECONDS = 2.0

_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`; see the module doc."""

    def __init__(self, target_port: int, *, max_connections: int = 64) -> None:
        self.target_port = target_port
        self.max_connections = max_connections
        self.port = 0
        self.accepted = 0  # connections accepted since the start
        self._delay = 0.0
        self._open = anyio.Event()  # set: not blackholed
        self._open.set()
        self._connections: set[anyio.CancelScope] = set()
        self._stack: AsyncExitStack | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def connections(self) -> int:
        """Open now."""
        return len(self._connections)

    # ---- modes -----------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Forward with this latency (and lift a blackhole: one mode at a time)."""
        self._delay = max(seconds, 0.0)
        self._open.set()

    def blackhole(self) -> None:
        if self._open.is_set():
            self._open = anyio.Event()

    def heal(self) -> None:
        self._delay = 0.0
        self._open.set()

    def cut(self) -> None:
        for scope in list(self._connections):
            scope.cancel()

    async def _passable(self) -> None:
        """Until no blackhole is on (the event is replaced, so re-read it)."""
        while not self._open.is_set():
            await self._open.wait()

    # ---- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> TcpProxy:
        async with AsyncExitStack() as stack:
            listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
            await stack.enter_async_context(listener)
            self.port = listener.extra(SocketAttribute.local_port)
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # on exit: first cancel, then wait
            tg.start_soon(listener.serve, self._serve, tg)  # ends when tg is cancelled
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return await stack.__aexit__(*exc_info)

    async def _serve(self, client: anyio.abc.SocketStream) -> None:
        _read_on_demand(client)
        scope = anyio.CancelScope()
        try:
            with scope:
                async with client:
                    if len(self._connections) >= self.max_connections:
                        return  # over the bound: closed at once
                    self._connections.add(scope)
                    self.accepted += 1
                    try:
                        with anyio.fail_after(CONNECT_SECONDS):
                            server = await anyio.connect_tcp(HOST, self.target_port)
                    except (OSError, TimeoutError):
                        return  # nothing to forward to: the client sees a close
                    async with server, anyio.create_task_group() as tg:
                        tg.start_soon(self._direction, client, server, tg.cancel_scope)
                        tg.start_soon(self._direction, server, client, tg.cancel_scope)
        finally:
            self._connections.discard(scope)

    async def _direction(self, source: ByteStream, sink: ByteStream, connection: anyio.CancelScope) -> None:
        """source -> sink through a bounded queue; either side ending ends the connection."""
        send, receive = anyio.create_memory_object_stream[_Chunk](QUEUED_CHUNKS)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, source, send)
            try:
                await self._write(receive, sink)
            finally:
                connection.cancel()

    async def _read(self, source: ByteStream, queue: MemoryObjectSendStream[_Chunk]) -> None:
        async with queue:
            while True:  # ends with the stream
                await self._passable()
                try:
                    data = await source.receive(CHUNK)
                except _GONE:
                    return
                try:
                    await queue.send((anyio.current_time() + self._delay, data))
                except _GONE:
                    return  # the writer ended: so does the connection

    async def _write(self, queue: MemoryObjectReceiveStream[_Chunk], sink: ByteStream) -> None:
        async with queue:
            async for due, data in queue:  # ends when the reader closes the queue
                await anyio.sleep(max(due - anyio.current_time(), 0.0))
                await self._passable()
                try:
                    await sink.send(data)
                except _GONE:
                    return


def _read_on_demand(stream: anyio.abc.SocketStream) -> None:
    """On asyncio, anyio's accepted streams read eagerly into an unbounded
    buffer until a receive() finds it empty and pauses the transport: a
    blackholed proxy would swallow everything the peer sends instead of
    letting its buffers fill. Pause now; each receive() resumes and pauses
    again. (Trio reads on demand; connect_tcp's streams start paused.)"""
    transport = getattr(stream, "_transport", None)  # anyio's asyncio SocketStream
    if transport is not None and hasattr(transport, "pause_reading") and transport.is_reading():
        transport.pause_reading()
