"""Circuit breakers owned by the supervisor: crashes and reported dependency
failures open them; while open, sends fail fast and nothing is restarted; after
the cooldown, probes decide; every transition is audited."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, BreakerOpen, ReasonCode, handles, message
from exoarmur.supervisors import BreakerPolicy, ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec
from tests.runtime.support import wait_until

pytestmark = pytest.mark.anyio


@message("test.sup.breaker.call")
class Call:
    n: int


@message("test.sup.breaker.crash")
class Crash:
    pass


@message("test.sup.breaker.flaky")
class Flaky:
    pass


class Dependent(Actor):
    mailbox_capacity = 10

    def __init__(self, *, starts: list) -> None:
        self.starts = starts

    async def started(self) -> None:
        self.starts.append(self.context.now())

    @handles(Call)
    def call(self, message: Call) -> int:
        return message.n

    @handles(Crash)
    def crash(self, message: Crash) -> None:
        raise RuntimeError("dependency is down")

    @handles(Flaky)
    def flaky(self, message: Flaky) -> str:
        self.context.report_failure(ReasonCode.TIMEOUT_KV_GET, "kv did not answer")
        return "degraded"


def tree(tick: float, starts: list) -> SupervisorSpec:
    policy = BreakerPolicy(
        threshold=2, window=100 * tick, cooldown=10 * tick, cooldown_factor=2.0, max_cooldown=15 * tick,
        half_open_probes=1,
    )  # fmt: skip
    return SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        intensity=RestartIntensity(100, 1000 * tick),
        children=(ChildSpec("dep", Dependent, kwargs={"starts": starts}, breaker=policy),),
    )


def kinds(system: ActorSystem) -> list[str]:
    return [e.kind for e in system.audit.events if e.kind.startswith("BREAKER")]


class TestBreaker:
    async def test_closed_open_half_open_closed_then_open_again_with_a_longer_cooldown(self, tick):
        """Two crashes open it: sends fail fast with BREAKER_OPEN, queued mail is failed, no restart
        in the cooldown; then HALF_OPEN restarts the child for one probe; success closes it; two more
        crashes open it again, and a failed probe re-opens it with the cooldown doubled, capped."""
        starts: list = []
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": tree(tick, starts)})
            dep = system.lookup("sup/dep")
            await dep.tell(Crash())  # failure 1: restarted
            await wait_until(lambda: len(starts) == 2)
            await dep.tell(Crash())  # failure 2: opens
            await wait_until(lambda: kinds(system) == ["BREAKER_OPENED"])
            opened_at = system.now()
            with pytest.raises(BreakerOpen) as caught:
                await dep.ask(Call(1))
            assert caught.value.code is ReasonCode.BREAKER_OPEN
            await anyio.sleep(9 * tick)
            assert len(starts) == 2  # not restarted during the cooldown
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_HALF_OPEN"], timeout=5 * tick)
            assert system.now() - opened_at == pytest.approx(10 * tick, abs=tick)
            assert len(starts) == 3  # restarted for the probe
            assert await dep.ask(Call(7)) == 7  # the probe
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_CLOSED"])
            assert await dep.ask(Call(8)) == 8
            # Open again, then fail the probe: cooldown 10 -> 15 (2x, capped at 15).
            await dep.tell(Crash())
            await wait_until(lambda: len(starts) == 4)
            await dep.tell(Crash())
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_OPENED"])
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_HALF_OPEN"], timeout=20 * tick)
            await dep.tell(Crash())  # the probe crashes
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_OPENED"])
            reopened_at = system.now()
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_HALF_OPEN"], timeout=40 * tick)
            assert system.now() - reopened_at == pytest.approx(15 * tick, abs=tick)
        assert kinds(system) == [
            "BREAKER_OPENED", "BREAKER_HALF_OPEN", "BREAKER_CLOSED",
            "BREAKER_OPENED", "BREAKER_HALF_OPEN", "BREAKER_OPENED", "BREAKER_HALF_OPEN",
        ]  # fmt: skip
        opened = [e for e in system.audit.events if e.kind == "BREAKER_OPENED"]
        assert opened[0].code is ReasonCode.ACTOR_CRASHED
        assert "failures_in_window=2" in opened[0].detail

    async def test_queued_envelopes_are_failed_when_the_breaker_opens(self, tick):
        """Envelopes waiting for a child when its breaker opens end with BREAKER_OPEN; their askers are told."""
        starts: list = []
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": tree(tick, starts)})
            dep = system.lookup("sup/dep")
            await dep.tell(Crash())
            await wait_until(lambda: len(starts) == 2)
            await dep.tell(Crash())
            outcomes: list = []

            async def asker(n: int) -> None:
                try:
                    outcomes.append(await dep.ask(Call(n), timeout=100 * tick))
                except BreakerOpen as exc:
                    outcomes.append(exc.code)

            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(asker, n)
            assert outcomes == [ReasonCode.BREAKER_OPEN] * 3
            assert system.dead_letters.count(ReasonCode.BREAKER_OPEN) + dep.statistics().rejected == 3

    async def test_reported_dependency_failures_open_the_breaker_without_a_crash(self, tick):
        """Failures a child reports through its context open the breaker; the child is never
        restarted, and after the cooldown a good probe closes it."""
        starts: list = []
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": tree(tick, starts)})
            dep = system.lookup("sup/dep")
            assert await dep.ask(Flaky()) == "degraded"
            assert await dep.ask(Flaky()) == "degraded"
            await wait_until(lambda: kinds(system) == ["BREAKER_OPENED"])
            with pytest.raises(BreakerOpen):
                await dep.tell(Call(1))
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_HALF_OPEN"], timeout=20 * tick)
            assert await dep.ask(Call(2)) == 2
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_CLOSED"])
            assert len(starts) == 1 and system.statistics().restarts == 0
            opened = [e for e in system.audit.events if e.kind == "BREAKER_OPENED"][0]
            assert opened.code is ReasonCode.TIMEOUT_KV_GET
            assert system.audit.counts()[ReasonCode.TIMEOUT_KV_GET] == 3  # two reports + the opening


async def test_refusing_says_what_a_send_would_meet_now(tick):
    """`ActorRef.refusing()`: None while sends are taken, BREAKER_OPEN while
    open, None again once HALF_OPEN lets its probe in, ACTOR_STOPPED after a stop."""
    starts: list = []
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="sup", kwargs={"spec": tree(tick, starts)})
        dep = system.lookup("sup/dep")
        assert dep.refusing() is None
        for _ in range(2):
            await dep.tell(Crash())
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_OPENED"] or len(starts) == 2)
        await wait_until(lambda: kinds(system) == ["BREAKER_OPENED"])
        assert dep.refusing() is ReasonCode.BREAKER_OPEN
        await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_HALF_OPEN"], timeout=20 * tick)
        assert dep.refusing() is None  # the probe may enter
        assert await dep.ask(Call(3)) == 3
        await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_CLOSED"])
        assert dep.refusing() is None
        await system.stop(dep)
        assert dep.refusing() is ReasonCode.ACTOR_STOPPED
