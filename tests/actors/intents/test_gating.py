"""The intent's side of the gates, on the runtime's clock (trio's MockClock:
exact virtual times; asyncio: short real ones). The gates actor here is a
script of verdicts: what the real one decides is tested with NATS
(tests/integration/test_kill_switches.py, test_approvals.py,
test_breaker_gate.py); this is when an intent asks, waits and writes."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.actors.intents import IntentRecord, IntentState, TypeInfo
from exoarmur.actors.intents.gates import GateCheck, Stage, Verdict
from exoarmur.actors.intents.gating import Gating
from exoarmur.runtime import Actor, ActorSystem, DependencyFailed, ReasonCode, handles
from exoarmur.runtime.margins import APPROVAL_POLL, KILL_CHECK_FRESH

pytestmark = pytest.mark.anyio

S = IntentState
WALL = 1_000_000.0  # the records' clock at runtime time 0


class ScriptedGates(Actor):
    """Answers each GateCheck with the next verdict of its script (a pass when
    it runs out), stamped with the time of the check; keeps what it was asked."""

    def __init__(self, *, script: list[Verdict], asked: list[tuple[float, Stage]]) -> None:
        self.script = script
        self.asked = asked

    @handles(GateCheck)
    def check(self, m: GateCheck) -> Verdict:
        now = self.context.now()
        self.asked.append((now, m.stage))
        verdict = self.script.pop(0) if self.script else Verdict(now)
        return Verdict(now, verdict.state, verdict.code, verdict.detail, verdict.retry_after)


class Asked:
    def __init__(self) -> None:
        self.asked: list[tuple[float, Stage]] = []


class Writes:
    """The intent's `_write`: records what it was asked to write; the first
    `failing` writes fail as the store would."""

    def __init__(self, *, wall, failing: int = 0) -> None:
        self.wall = wall
        self.failing = failing
        self.written: list[tuple[S, str]] = []

    async def __call__(self, record: IntentRecord, state: S, **change: object) -> IntentRecord:
        if self.failing:
            self.failing -= 1
            raise DependencyFailed(ReasonCode.NATS_DISCONNECTED, "the store is away")
        self.written.append((state, str(change.get("code", ""))))
        return record.moved(state, now=self.wall(), **change)  # type: ignore[arg-type]


def record(state: S = S.RECEIVED, *, deadline: float = 10_000.0) -> IntentRecord:
    received = IntentRecord.received(
        intent_id="i-1", tenant="acme", type="t", params={}, owner="p", now=WALL, deadline=WALL + deadline
    )
    return received if state is S.RECEIVED else received.moved(state, now=WALL)


async def gating(system: ActorSystem, *script: Verdict, approval_timeout: float = 3600.0, failing: int = 0):
    gates = Asked()
    ref = await system.spawn(ScriptedGates, name="gates", kwargs={"script": list(script), "asked": gates.asked})
    wall = lambda: WALL + system.now()  # noqa: E731 - the records' clock, on the runtime's
    writes = Writes(wall=wall, failing=failing)
    types = {"t": TypeInfo(name="t", path="execution/t", timeout=1.0, approval_timeout=approval_timeout)}
    return Gating(gates=ref, types=types, now=system.now, write=writes, wall=wall), gates, writes


def refused(state: S, code: ReasonCode) -> Verdict:
    return Verdict(0.0, state, code.value, "refused")


AWAITING = Verdict(0.0, S.AWAITING_APPROVAL, ReasonCode.APPROVAL_REQUIRED.value, "waits")


class TestKillSwitchFreshness:
    async def test_a_check_that_passed_covers_an_apply_for_kill_check_fresh_and_no_longer(self, anyio_backend_name):
        if anyio_backend_name != "trio":
            pytest.skip("exact virtual times: trio's MockClock")
        async with ActorSystem() as system:
            gate, gates, writes = await gating(system)
            assert await gate.check(record(), Stage.ENTER) is not None
            checked = gates.asked[0][0]
            assert gate.not_after == checked + KILL_CHECK_FRESH
            await anyio.sleep(KILL_CHECK_FRESH - 0.01)
            assert await gate.switches_clear(record(S.APPROVED))
            assert len(gates.asked) == 1  # fresh: not asked again
            await anyio.sleep(0.02)
            assert await gate.switches_clear(record(S.APPROVED))
            assert [stage for _, stage in gates.asked] == [Stage.ENTER, Stage.KILL_SWITCHES]
            assert gate.not_after == gates.asked[1][0] + KILL_CHECK_FRESH
        assert writes.written == []

    async def test_a_switch_seen_active_before_an_apply_writes_killed(self):
        async with ActorSystem() as system:
            gate, gates, writes = await gating(system, Verdict(0.0), refused(S.KILLED, ReasonCode.KILL_SWITCH_ACTIVE))
            assert await gate.check(record(), Stage.ENTER) is not None
            gate.gated -= 2 * KILL_CHECK_FRESH  # stale: the next apply asks again
            assert not await gate.switches_clear(record(S.APPROVED))
        assert writes.written == [(S.KILLED, "KILL_SWITCH_ACTIVE")]


class TestRefusals:
    async def test_a_refusal_is_kept_until_it_is_written_and_the_gates_are_not_asked_again(self):
        async with ActorSystem() as system:
            gate, gates, writes = await gating(system, refused(S.KILLED, ReasonCode.KILL_SWITCH_ACTIVE), failing=2)
            for _ in range(2):  # the store away: the step fails, the refusal stays
                with pytest.raises(DependencyFailed):
                    await gate.check(record(), Stage.ENTER)
            assert await gate.check(record(), Stage.ENTER) is None  # a pass, had it asked
            assert not await gate.switches_clear(record(S.APPROVED))
        assert len(gates.asked) == 1
        assert writes.written == [(S.KILLED, "KILL_SWITCH_ACTIVE")] * 2


class TestWaits:
    async def test_an_intent_waits_for_an_approval_until_the_next_look(self, anyio_backend_name):
        if anyio_backend_name != "trio":
            pytest.skip("a whole APPROVAL_POLL: virtual time only")
        async with ActorSystem() as system:
            gate, gates, writes = await gating(system, AWAITING, AWAITING)
            assert await gate.check(record(), Stage.ENTER) is None  # AWAITING_APPROVAL written at once
            assert writes.written == [(S.AWAITING_APPROVAL, "APPROVAL_REQUIRED")]
            start = system.now()
            assert await gate.check(record(S.AWAITING_APPROVAL), Stage.ENTER) is None
            assert system.now() - start == pytest.approx(APPROVAL_POLL)
        assert len(writes.written) == 1

    async def test_a_recheck_ends_the_wait_at_once(self, tick):
        async with ActorSystem() as system:
            gate, gates, writes = await gating(system, AWAITING)
            start = system.now()
            async with anyio.create_task_group() as group:
                group.start_soon(gate.check, record(S.AWAITING_APPROVAL), Stage.ENTER)
                await anyio.sleep(tick)
                gate.recheck()
            assert system.now() - start < APPROVAL_POLL / 2
            assert await gate.check(record(S.AWAITING_APPROVAL), Stage.ENTER) is not None  # the script ran out: a pass

    async def test_the_wait_ends_at_the_approval_deadline_not_the_next_look(self, anyio_backend_name):
        if anyio_backend_name != "trio":
            pytest.skip("exact virtual times: trio's MockClock")
        async with ActorSystem() as system:
            gate, gates, writes = await gating(system, AWAITING, approval_timeout=APPROVAL_POLL / 4)
            start = system.now()
            await gate.check(record(S.AWAITING_APPROVAL), Stage.ENTER)
            assert system.now() - start == pytest.approx(APPROVAL_POLL / 4)

    async def test_an_open_breaker_is_looked_at_again_after_its_cooldown_never_at_once(self, anyio_backend_name):
        if anyio_backend_name != "trio":
            pytest.skip("exact virtual times: trio's MockClock")
        breaker = Verdict(0.0, code=ReasonCode.BREAKER_OPEN.value, detail="open", retry_after=3.0)
        async with ActorSystem() as system:
            gate, gates, writes = await gating(system, breaker, breaker)
            start = system.now()
            for _ in range(2):
                assert await gate.check(record(), Stage.ENTER) is None
            assert system.now() - start == pytest.approx(6.0)
            assert await gate.check(record(), Stage.ENTER) is not None
        assert [at for at, _ in gates.asked] == pytest.approx([start, start + 3.0, start + 6.0])
        assert writes.written == []
