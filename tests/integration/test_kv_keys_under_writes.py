"""Listing a bucket's keys while they are being written: every key, once."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.actors.nats import Keys, KvBucket, Put
from exoarmur.runtime import ActorSystem, ask_all
from tests.integration.support import connect, running_server

pytestmark = pytest.mark.anyio


async def test_keys_listed_while_they_are_written_come_once_each(tmp_path):
    """200 keys rewritten in rounds while they are listed 20 times: every
    listing names each of them once. (The listing used to end at the first
    delivery whose pending count was 0, and missed a key about one listing
    in two.)"""
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server)
        bucket = await system.spawn(KvBucket, name="b", kwargs={"bucket": "listed", "connection": "nats"})
        names = [f"k{n:03}" for n in range(200)]
        await ask_all([(bucket, Put(name, b"0")) for name in names])
        listings: list[list[str]] = []

        async def write() -> None:
            for round_ in range(1, 20):
                await ask_all([(bucket, Put(name, str(round_).encode())) for name in names])

        async def list_() -> None:
            for _ in range(20):
                listings.append(await bucket.ask(Keys()))

        async with anyio.create_task_group() as group:
            group.start_soon(write)
            group.start_soon(list_)
        assert all(len(listing) == len(set(listing)) for listing in listings)
        assert [len(listing) for listing in listings] == [len(names)] * len(listings)
