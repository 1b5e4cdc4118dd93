"""TTL reverts on a real nats-server: an intent submitted with a `ttl` is
reverted that long after it succeeded, once; its due time is durable in its
record; a type without revert refuses a ttl."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.actors.intents import IntentState, TypeInfo
from tests.integration.intents_support import intents_on

pytestmark = pytest.mark.anyio
S = IntentState
TTL = 1.0


async def test_an_intent_with_a_ttl_is_reverted_once_that_long_after_it_succeeded(tmp_path):
    async with intents_on(tmp_path) as it:
        reply = await it.request("acme", "submit", {"id": "c-1", "type": "fx", "ttl": TTL, "wait": 10})
        succeeded = reply["intent"]
        assert succeeded["state"] == "SUCCEEDED" and it.effects == {("acme/c-1", "apply"): 1}
        record = await it.store.load("acme", "c-1")
        assert record.ttl == TTL and record.revert_at == pytest.approx(succeeded["updated"] + TTL)
        assert ("acme", "c-1") in {(t, i) for _, t, i in await it.unsettled()}  # indexed until reverted
        reverted = await it.settled("acme", "c-1", timeout=10 + TTL)
        assert reverted.state is S.REVERTED and reverted.updated >= record.revert_at
        assert it.effects == {("acme/c-1", "apply"): 1, ("acme/c-1", "revert"): 1}
        states = [e["record"]["state"] for e in await it.events("acme")]
        assert states == ["RECEIVED", "APPROVED", "EXECUTING", "SUCCEEDED", "REVERTING", "REVERTED"]


async def test_a_restarted_actor_finds_the_due_revert_in_kv(tmp_path):
    """The intent's actor stopped while it waits (as a crash of its tenant
    would stop it): the resumer starts it again from the index and the
    revert still happens, once."""
    async with intents_on(tmp_path) as it:
        await it.request("acme", "submit", {"id": "c-2", "type": "fx", "ttl": TTL, "wait": 10})
        actor = it.system.find("tenants/acme/intent.c-2")
        assert actor is not None
        await it.system.stop(actor)
        with anyio.fail_after(10):
            while it.system.find("tenants/acme/intent.c-2") is None:  # the resumer's next scan
                await anyio.sleep(0.05)
        assert (await it.settled("acme", "c-2", timeout=10 + TTL)).state is S.REVERTED
        assert it.effects == {("acme/c-2", "apply"): 1, ("acme/c-2", "revert"): 1}


@pytest.mark.parametrize(("ttl", "names"), [(0, "ttl"), (-1, "ttl"), ("soon", "ttl"), (1e9, "at most")])
async def test_a_bad_ttl_is_refused_and_nothing_is_created(tmp_path, ttl, names):
    async with intents_on(tmp_path) as it:
        reply = await it.request("acme", "submit", {"id": "b-1", "type": "fx", "ttl": ttl})
        assert (reply["ok"], reply["code"]) == (False, "INTENT_INVALID") and names in reply["detail"]
        assert await it.store.load("acme", "b-1") is None


async def test_a_type_without_revert_takes_no_ttl(tmp_path):
    plain = TypeInfo(name="plain", path="fx", timeout=2.0)
    async with intents_on(tmp_path, types={"plain": plain}) as it:
        reply = await it.request("acme", "submit", {"id": "p-1", "type": "plain", "ttl": 5})
        assert (reply["code"], "cannot revert" in reply["detail"]) == ("INTENT_INVALID", True)
        assert await it.store.load("acme", "p-1") is None
