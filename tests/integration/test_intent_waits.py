"""A submit or get with `wait` is answered once its intent ends (told by
the intent's actor, or read for one another process drives), or with the
intent as it is when the wait is over; and refused before it changes
anything when too many wait."""

from __future__ import annotations

import time

import anyio
import orjson
import pytest

from exoarmur.actors.intents import IntentRecord, IntentState, TypeInfo
from exoarmur.actors.intents.effects import Apply, Effect, Outcome
from exoarmur.actors.intents import service as service_module
from exoarmur.actors.nats import Request
from exoarmur.runtime import Actor, handles
from tests.integration.intents_support import intents_on
from tests.integration.support import eventually
from tests.runtime.support import instance_of

pytestmark = pytest.mark.anyio
S = IntentState


async def ask(it, tenant: str, op: str, body: dict, *, timeout: float = 10.0) -> tuple[dict, float]:
    """The reply, and how long it took."""
    started = time.monotonic()
    request = Request(f"exoarmur.intents.{tenant}.{op}", orjson.dumps(body))
    response = await it.system.lookup("nats").ask(request, timeout=timeout)
    return orjson.loads(response.data), time.monotonic() - started


async def theirs(it, intent_id: str) -> IntentRecord:
    """An intent of another (live, never lapsing here) process: no actor of
    this process tells its end."""
    now = time.time()
    record = IntentRecord.received(
        intent_id=intent_id, tenant="acme", type="fx", params={}, owner="p-other", now=now, deadline=now + 60
    )
    created, _ = await it.store.create(record)
    return created


def waiting(it) -> int:
    """Requests the service holds now."""
    return len(instance_of(it.system.lookup("service")).waiters)


async def test_a_submit_that_waits_is_answered_with_the_end(tmp_path):
    async with intents_on(tmp_path) as it:
        reply, _ = await ask(it, "acme", "submit", {"id": "w-1", "type": "fx", "wait": 5})
        assert reply["ok"] and reply["code"] == "" and reply["intent"]["state"] == "SUCCEEDED"
        assert it.effects[("acme/w-1", "apply")] == 1
        again, seconds = await ask(it, "acme", "submit", {"id": "w-1", "type": "fx", "wait": 5})
        assert again["code"] == "DUPLICATE_SUPPRESSED" and again["intent"]["state"] == "SUCCEEDED"
        assert seconds < 2 and waiting(it) == 0  # ended already: answered at once, nothing held
        got, _ = await ask(it, "acme", "get", {"id": "w-1", "wait": 5})
        assert got["intent"]["state"] == "SUCCEEDED"


async def test_a_get_that_waits_learns_the_end_of_an_intent_another_process_drives(tmp_path):
    async with intents_on(tmp_path) as it:
        record = await theirs(it, "far")
        result: dict = {}

        async def wait() -> None:
            result["reply"], result["seconds"] = await ask(it, "acme", "get", {"id": "far", "wait": 8})

        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await eventually(lambda: waiting(it) == 1)
            assert "reply" not in result
            approved = await it.store.write(record, record.moved(S.APPROVED, now=time.time()))
            await it.store.write(approved, approved.moved(S.FAILED, now=time.time(), code="EXECUTION_FAILED"))
        assert result["reply"]["intent"]["state"] == "FAILED"
        assert result["seconds"] < 7  # read by a poll, not at the end of the wait (8 s)
        assert waiting(it) == 0


class SlowEffector(Actor):
    """Applies in 2.5 s: past two of the service's polls."""

    @handles(Apply)
    async def apply(self, m: Apply) -> Effect:
        await anyio.sleep(2.5)
        return Effect(Outcome.APPLIED)


async def test_a_wait_for_an_intent_whose_actor_runs_here_is_told_not_polled(tmp_path):
    """Its actor tells the end: the service reads nothing meanwhile (the
    record's operations are the create and three compare-and-sets)."""
    slow = TypeInfo(name="slow", path="slow", timeout=3.0)  # its call fits in the lease (6 s) with room
    async with intents_on(tmp_path, types={"slow": slow}) as it:
        await it.system.spawn(SlowEffector, name="slow")
        records = it.system.lookup("records")
        before = records.statistics().processed
        reply, seconds = await ask(it, "acme", "submit", {"id": "s-1", "type": "slow", "wait": 6})
        assert reply["intent"]["state"] == "SUCCEEDED" and 2.5 <= seconds < 6
        assert records.statistics().processed - before == 4


async def test_a_wait_that_is_over_answers_with_the_intent_as_it_is(tmp_path):
    async with intents_on(tmp_path) as it:
        await theirs(it, "stuck")
        reply, seconds = await ask(it, "acme", "get", {"id": "stuck", "wait": 0.5})
        assert reply["ok"] and reply["intent"]["state"] == "RECEIVED"
        assert seconds >= 0.5 and waiting(it) == 0
        missing, _ = await ask(it, "acme", "get", {"id": "nobody", "wait": 1})
        assert missing["code"] == "INTENT_NOT_FOUND"


async def test_past_the_limit_a_waiting_submit_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(service_module, "WAIT_LIMIT", 1)
    async with intents_on(tmp_path) as it:
        await theirs(it, "stuck")
        result: dict = {}

        async def wait() -> None:
            result["reply"], _ = await ask(it, "acme", "get", {"id": "stuck", "wait": 3})

        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await eventually(lambda: waiting(it) == 1)
            refused, _ = await ask(it, "acme", "submit", {"id": "one-too-many", "type": "fx", "wait": 3})
            assert refused["code"] == "OVERLOAD_SHED"
            assert await it.store.load("acme", "one-too-many") is None
            assert ("acme", "one-too-many") not in {(t, i) for _, t, i in await it.unsettled()}
            # Without a wait it is served as always.
            served, _ = await ask(it, "acme", "submit", {"id": "no-wait", "type": "fx"})
            assert served["ok"]
        assert result["reply"]["intent"]["state"] == "RECEIVED"
