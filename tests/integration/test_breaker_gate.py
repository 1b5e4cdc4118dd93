"""The execution type's breaker as the last gate: while it is open, an
intent fails fast with BREAKER_OPEN before it is ever EXECUTING, or, if its
type waits for the breaker and its deadline leaves room, waits for the
half-open probe and then runs once; an apply refused by a breaker that
opened since the gates ends FAILED without spending an attempt."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.actors.execution import execution_spec
from exoarmur.actors.intents import Apply, IntentState, Outcome
from exoarmur.supervisors import BreakerPolicy, Describe, Supervisor
from tests.actors.execution.support import Scripted, intent
from tests.integration.intents_support import intents_on

pytestmark = pytest.mark.anyio
S = IntentState
COOLDOWN = 1.0


class Hasty(Scripted):
    """Opens its breaker after two uncertain answers; its intents never wait for it."""

    name = "hasty"
    breaker = BreakerPolicy(threshold=2, window=60.0, cooldown=600.0, max_cooldown=600.0)
    wait_for_breaker = False


class Patient(Scripted):
    """The same, with a short cooldown; its intents wait for the half-open probe."""

    name = "patient"
    breaker = BreakerPolicy(threshold=2, window=60.0, cooldown=COOLDOWN, max_cooldown=COOLDOWN)


async def opened(it, name: str) -> None:
    """Two uncertain applies asked of the type's actor directly; until its
    supervisor says its breaker is open."""
    ref = it.system.lookup(f"execution/{name}")
    for n in range(2):
        effect = await ref.ask(Apply(intent(name, do="raise", intent_id=f"x-{n}"), f"acme/x-{n}"))
        assert effect.outcome is Outcome.UNCERTAIN
    with anyio.fail_after(5):
        while True:
            node = await it.system.lookup("execution").ask(Describe())
            (child,) = [c for c in node.children if c.path.endswith(f"/{name}")]
            if child.breaker and child.breaker.startswith("open"):
                return
            await anyio.sleep(0.01)


async def test_an_open_breaker_fails_an_intent_before_it_executes(tmp_path):
    hasty = Hasty(timeout=2.0)  # an apply must fit in the lease (intents_on: 6 s)
    spec, infos = execution_spec({"hasty": hasty}, parent_path="execution")
    async with intents_on(tmp_path, gates=True, types=dict(infos)) as it:
        await it.system.spawn(Supervisor, name="execution", kwargs={"spec": spec})
        await opened(it, "hasty")
        await it.request("acme", "submit", {"id": "h-1", "type": "hasty"})
        record = await it.settled("acme", "h-1")
        assert (record.state, record.code, record.attempts) == (S.FAILED, "BREAKER_OPEN", 0)
        assert [e["record"]["state"] for e in await it.events("acme")] == ["RECEIVED", "FAILED"]
        assert [call[1] for call in hasty.calls] == ["x-0", "x-1"]  # never called for h-1


async def test_an_intent_of_a_type_that_waits_runs_once_after_the_half_open_probe(tmp_path):
    patient = Patient(timeout=2.0)
    spec, infos = execution_spec({"patient": patient}, parent_path="execution")
    async with intents_on(tmp_path, gates=True, types=dict(infos)) as it:
        await it.system.spawn(Supervisor, name="execution", kwargs={"spec": spec})
        await opened(it, "patient")
        started = anyio.current_time()
        await it.request("acme", "submit", {"id": "p-1", "type": "patient", "timeout": 60})
        # Too short a deadline to wait out the cooldown: it fails at once.
        await it.request("acme", "submit", {"id": "p-2", "type": "patient", "timeout": COOLDOWN / 2})
        short = await it.settled("acme", "p-2")
        assert (short.state, short.code) in ((S.FAILED, "BREAKER_OPEN"), (S.EXPIRED, "DEADLINE_EXCEEDED"))
        record = await it.settled("acme", "p-1", timeout=COOLDOWN * 10)
        assert record.state is S.SUCCEEDED and record.attempts == 1
        assert anyio.current_time() - started >= COOLDOWN * 0.5  # it waited for the probe
        assert [call[1] for call in patient.calls].count("p-1") == 1 and "p-2" not in [c[1] for c in patient.calls]


class Touchy(Scripted):
    """Opens its breaker at the first uncertain answer, for a long cooldown."""

    name = "touchy"
    breaker = BreakerPolicy(threshold=1, window=60.0, cooldown=600.0, max_cooldown=600.0)
    wait_for_breaker = False


async def test_an_apply_refused_by_a_breaker_opened_since_its_gates_ends_failed_with_no_attempt_spent(tmp_path):
    """t-2 passes its gates while both of the type's places are taken (one
    apply waits, one hangs) and its apply waits in the mailbox; the hanging
    one times out, the breaker opens and refuses what waits. t-2 was never
    started: FAILED with BREAKER_OPEN at its first attempt, nothing to
    reconcile."""
    touchy = Touchy(timeout=2.0)
    touchy.release = anyio.Event()
    spec, infos = execution_spec({"touchy": touchy}, parent_path="execution")
    async with intents_on(tmp_path, gates=True, types=dict(infos)) as it:
        await it.system.spawn(Supervisor, name="execution", kwargs={"spec": spec})
        ref = it.system.lookup("execution/touchy")
        await it.request("acme", "submit", {"id": "t-1", "type": "touchy", "params": {"do": "wait"}})
        async with anyio.create_task_group() as group:
            group.start_soon(ref.ask, Apply(intent("touchy", do="hang", intent_id="x-0"), "acme/x-0"))
            with anyio.fail_after(5):
                while touchy.running < 2:
                    await anyio.sleep(0.01)
            await it.request("acme", "submit", {"id": "t-2", "type": "touchy"})
            record = await it.settled("acme", "t-2")
            touchy.release.set()
        assert (record.state, record.code, record.attempts) == (S.FAILED, "BREAKER_OPEN", 1)
        states = [e["record"]["state"] for e in await it.events("acme") if e["record"]["id"] == "t-2"]
        assert states == ["RECEIVED", "APPROVED", "EXECUTING", "FAILED"]
        assert "t-2" not in [call[1] for call in touchy.calls]
