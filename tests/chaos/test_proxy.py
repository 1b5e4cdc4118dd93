"""The fault-injecting proxy itself, against a loopback echo server: forward,
delay, blackhole (nothing passes, held bytes flow on after heal), cut."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

from exoarmur.benchmarks.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """Echoes every byte back; yields its port."""

    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                async for chunk in stream:
                    await stream.send(chunk)
            except (anyio.BrokenResourceError, OSError):
                pass

    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            yield listener.extra(SocketAttribute.local_port)
            tg.cancel_scope.cancel()


async def roundtrip(stream: anyio.abc.SocketStream, data: bytes) -> bytes:
    await stream.send(data)
    got = b""
    while len(got) < len(data):
        got += await stream.receive()
    return got


async def test_forward_delay_blackhole_heal_and_cut():
    with anyio.fail_after(10):
        async with echo_server() as port, TcpProxy(port) as proxy:
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                assert await roundtrip(stream, b"hello") == b"hello"

                proxy.delay(0.1)
                started = anyio.current_time()
                assert await roundtrip(stream, b"slow") == b"slow"
                assert 0.2 <= anyio.current_time() - started < 0.5  # a chunk each way

                proxy.blackhole()
                await stream.send(b"held")
                with anyio.move_on_after(0.3) as scope:
                    await stream.receive()
                assert scope.cancelled_caught  # a silent peer
                proxy.heal()
                got = b""
                while len(got) < 4:
                    got += await stream.receive()
                assert got == b"held"  # the stream is intact after heal

                proxy.cut()
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                    await stream.receive()
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                assert await roundtrip(stream, b"again") == b"again"
            assert proxy.accepted == 2


async def test_a_blackholed_proxy_stops_reading_so_the_sender_fills_up():
    with anyio.fail_after(10):
        async with echo_server() as port, TcpProxy(port) as proxy:
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                proxy.blackhole()
                sent = 0
                with anyio.move_on_after(1.0):
                    while sent < 256 * 1024 * 1024:  # bounded; the kernel buffers fill long before
                        await stream.send(b"x" * 65536)
                        sent += 65536
                assert sent < 256 * 1024 * 1024  # the sender blocked
            assert proxy.connections <= 1
