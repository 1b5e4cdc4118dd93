"""Owner leases on a real nats-server: an observer sees a lease lapse only
after its revision stood still for TTL + LEASE_GRACE, revokes it by
compare-and-set, and the former holder's next renewal finds it revoked and
takes a new generation."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.actors.intents import Lapsed, LeaseRemaining, OwnerLease
from exoarmur.actors.nats import Delete, KvBucket
from exoarmur.runtime import ActorSystem
from exoarmur.runtime.margins import LEASE_GRACE
from tests.integration.support import connect, running_server

pytestmark = pytest.mark.anyio
TTL = 1.0


class Freezable(OwnerLease):
    """A lease whose renewals stop while `frozen` is set (a paused process)."""

    frozen: anyio.Event | None = None

    async def _renew(self) -> None:
        while Freezable.frozen is not None and not Freezable.frozen.is_set():
            await anyio.sleep(0.05)
        await super()._renew()


async def test_a_lease_lapses_only_after_ttl_and_grace_and_comes_back_as_a_new_generation(tmp_path):
    try:
        await lapse_and_come_back(tmp_path)
    finally:
        Freezable.frozen = None  # never left frozen for the next test


async def lapse_and_come_back(tmp_path) -> None:
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server)
        await system.spawn(KvBucket, name="leases", kwargs={"bucket": "leases", "connection": "nats"})
        holder = await system.spawn(Freezable, name="a", kwargs={"owner": "p-a", "bucket": "leases", "ttl": TTL})
        observer = await system.spawn(OwnerLease, name="b", kwargs={"owner": "p-b", "bucket": "leases", "ttl": 30.0})
        first = await holder.ask(LeaseRemaining())
        assert first.generation >= 1 and 0 < first.remaining <= TTL

        # Renewed all along: never lapsed, however long the observer looks.
        with anyio.move_on_after(TTL + LEASE_GRACE + 0.5):
            while True:
                assert not await observer.ask(Lapsed("p-a"))
                await anyio.sleep(0.1)

        # Frozen: lapsed only once TTL + GRACE passed without a new revision.
        Freezable.frozen = anyio.Event()
        await anyio.sleep(TTL / 3 + 0.1)  # any renewal in flight has landed
        started = anyio.current_time()
        while not await observer.ask(Lapsed("p-a")):
            await anyio.sleep(0.05)
        # Its last renewal landed at most TTL/3 before the freeze, and `started`
        # is TTL/3 after it: what is left of TTL + GRACE is at least GRACE.
        assert anyio.current_time() - started >= LEASE_GRACE - 0.1
        assert (await holder.ask(LeaseRemaining())).remaining == 0.0  # its own view ended first

        # Thawed: the renewal finds the lease revoked and takes a new generation.
        Freezable.frozen.set()
        with anyio.fail_after(5):
            while (view := await holder.ask(LeaseRemaining())).generation == first.generation:
                await anyio.sleep(0.05)
        assert view.remaining > 0 and view.generation > first.generation
        assert not await observer.ask(Lapsed("p-a"))  # alive again
        # A restarted lease actor takes a generation never seen before (an
        # apply started under the old one cannot go on under the new).
        await system.stop(holder, timeout=5.0)
        again = await system.spawn(OwnerLease, name="a2", kwargs={"owner": "p-a", "bucket": "leases", "ttl": TTL})
        assert (await again.ask(LeaseRemaining())).generation > view.generation


async def test_a_lease_given_up_by_a_graceful_stop_lapses_at_once_and_a_missing_one_only_after_ttl(tmp_path):
    async with running_server(tmp_path) as server, ActorSystem() as system:
        await connect(system, server)
        bucket = await system.spawn(KvBucket, name="leases", kwargs={"bucket": "leases", "connection": "nats"})
        observer = await system.spawn(OwnerLease, name="b", kwargs={"owner": "p-b", "bucket": "leases", "ttl": TTL})
        holder = await system.spawn(OwnerLease, name="a", kwargs={"owner": "p-a", "bucket": "leases", "ttl": 30.0})
        assert not await observer.ask(Lapsed("p-a"))
        await system.stop(holder, timeout=5.0)
        assert await observer.ask(Lapsed("p-a"))  # released: taken over at once

        # A key that is not there at all (a lost bucket, never a stop): not
        # lapsed at first sight, only once absent for the observer's TTL + GRACE.
        await bucket.ask(Delete("p-a"))
        started = anyio.current_time()
        assert not await observer.ask(Lapsed("p-a"))
        while not await observer.ask(Lapsed("p-a")):
            await anyio.sleep(0.05)
        assert anyio.current_time() - started >= TTL + LEASE_GRACE - 0.05
