"""A crash loop in one tenant's subtree stays there: its supervisor gives up
and is restarted behind a breaker, while the other tenants' intents go on
and the tenants supervisor above them keeps running."""

from __future__ import annotations

import pytest

from exoarmur.actors.intents import IntentActor, IntentState
from exoarmur.actors.tenants.router import TENANT_INTENSITY
from exoarmur.runtime import CellState
from tests.integration.intents_support import intents_on
from tests.integration.support import eventually

pytestmark = pytest.mark.anyio


class BuggyForOneTenant(IntentActor):
    """An intent actor with a bug that shows for tenant "bad" only: each step
    crashes it, and each restart steps again."""

    async def _step(self) -> bool:
        if self.tenant == "bad":
            raise RuntimeError("a bug in this tenant's intents")
        return await super()._step()


async def test_a_crash_looping_tenant_does_not_stop_the_others(tmp_path):
    async with intents_on(tmp_path, intent_actor=BuggyForOneTenant) as it:
        system = it.system
        # Each crashes at its first step, more at once than the tenant's intensity allows.
        for n in range(TENANT_INTENSITY.max_restarts + 10):
            await it.request("bad", "submit", {"id": f"b-{n}", "type": "fx"})
        # The tenant's supervisor gave up (its intensity spent) and was restarted.
        await eventually(lambda: "tenants/bad" in system.paths() and system.info("tenants/bad").restarts > 0, timeout=20)
        for n in range(5):
            await it.request("good", "submit", {"id": f"g-{n}", "type": "fx"})
        for n in range(5):
            assert (await it.settled("good", f"g-{n}")).state is IntentState.SUCCEEDED
        assert system.info("tenants").state is CellState.RUNNING
        assert system.failed is None or not system.failed.is_set()
        assert not any(key == "bad/b-0" for key, _ in it.effects)
