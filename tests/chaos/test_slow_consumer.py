"""A subscriber ten times slower than its producer: memory stays bounded (the
peak is printed), every message is either handled or counted as dropped."""

from __future__ import annotations

import os

import anyio
import psutil
import pytest

from exoarmur.actors.nats import Delivery, Flush, Publish, Statistics, Subscribe
from exoarmur.runtime import Actor, ActorSystem, Overflow, ReasonCode, handles
from tests.integration.support import connect, running_server

pytestmark = pytest.mark.anyio

PRODUCER_RATE = 1000  # messages per second
CONSUMER_SECONDS = 0.01  # per message: 100 per second, a tenth of the producer's rate
SECONDS = 3.0
PAYLOAD = b"x" * 10_000
RSS_GROWTH_LIMIT = 64 * 1024 * 1024


class Slow(Actor):
    mailbox_capacity = 100
    overflow = Overflow.REJECT

    def __init__(self, *, handled: list) -> None:
        self.handled = handled

    @handles(Delivery)
    async def delivery(self, m: Delivery) -> None:
        await anyio.sleep(CONSUMER_SECONDS)
        self.handled.append(len(m.data))


async def test_a_ten_times_slower_subscriber_keeps_memory_bounded_and_counts_its_drops(tmp_path):
    handled: list = []
    process = psutil.Process(os.getpid())
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await system.spawn(Slow, name="slow", kwargs={"handled": handled})
        conn = await connect(system, server)
        await conn.ask(Subscribe("flood", "slow"))
        start_rss = peak_rss = process.memory_info().rss
        sent = 0
        began = anyio.current_time()
        while (elapsed := anyio.current_time() - began) < SECONDS:
            due = int(elapsed * PRODUCER_RATE)
            while sent < due:
                await conn.tell(Publish("flood", PAYLOAD))
                sent += 1
            peak_rss = max(peak_rss, process.memory_info().rss)
            await anyio.sleep(0.01)
        await conn.ask(Flush())

        async def accounted() -> int:
            return (await conn.ask(Statistics())).mailbox_drops + system.lookup("slow").statistics().accepted

        with anyio.fail_after(10):
            while await accounted() < sent:
                peak_rss = max(peak_rss, process.memory_info().rss)
                await anyio.sleep(0.05)
        stats = await conn.ask(Statistics())
        growth = peak_rss - start_rss
        print(f"\nslow consumer: sent {sent}, dropped {stats.mailbox_drops}, "
              f"peak RSS {peak_rss / 2**20:.1f} MiB (+{growth / 2**20:.1f} MiB)")
        assert stats.mailbox_drops + system.lookup("slow").statistics().accepted == sent
        assert stats.mailbox_drops >= sent // 2  # most of a tenfold excess is refused, not queued
        assert growth < RSS_GROWTH_LIMIT
        assert any(e.code is ReasonCode.NATS_SLOW_CONSUMER for e in system.audit.events)
