"""Supervision under sustained failure: restarts follow the backoff arithmetic
exactly, and random crash schedules keep every invariant."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, handles, message
from exoarmur.supervisors import BackoffPolicy, ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec
from tests.runtime.support import wait_until, instance_of

pytestmark = pytest.mark.anyio


@message("test.sup.loops.tick")
class Tick:
    n: int


@message("test.sup.loops.fail")
class Fail:
    n: int


@message("test.sup.loops.count")
class Count:
    pass


class Doomed(Actor):
    """Once `doomed` is set, every fresh instance fails in `started`: a crash loop."""

    def __init__(self, *, state: dict) -> None:
        self.state = state

    async def started(self) -> None:
        self.state["starts"].append(self.context.now())
        if self.state["doomed"]:
            raise RuntimeError("dependency is gone")

    @handles(Fail)
    def fail(self, message: Fail) -> None:
        raise RuntimeError("first crash")


def allowed_restarts(*, initial: float, factor: float, cap: float, window: float) -> int:
    """How many restarts a backoff of initial * factor**(n-1), capped, fits in `window`."""
    elapsed, count, delay = 0.0, 0, initial
    while elapsed + delay <= window:
        elapsed += delay
        count += 1
        delay = min(delay * factor, cap)
    return count


class TestCrashLoop:
    async def test_restarts_under_continuous_crashing_follow_the_backoff_arithmetic(
        self, tick, anyio_backend_name
    ):
        """Ten simulated minutes of a child that cannot start: exactly as many restarts as
        1, 2, 4, ... capped at 30 ticks allow, not one more."""
        window = 600 * tick if anyio_backend_name == "trio" else 40 * tick
        cap = 30 * tick if anyio_backend_name == "trio" else 4 * tick
        backoff = BackoffPolicy(initial=tick, factor=2.0, max_delay=cap, jitter=0.0)
        state = {"doomed": False, "starts": []}
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(10**6, 10 * window),
            children=(ChildSpec("doomed", Doomed, kwargs={"state": state}, backoff=backoff),),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            state["doomed"] = True
            start = system.now()
            await system.lookup("sup/doomed").tell(Fail(0))
            await anyio.sleep(window + tick / 2)
            restarts = [t - start for t in state["starts"][1:] if t - start <= window]
        expected = allowed_restarts(initial=tick, factor=2.0, cap=cap, window=window)
        if anyio_backend_name == "trio":
            assert len(restarts) == expected
        else:  # real time: the last restart may fall either side of the window's end
            assert expected - 1 <= len(restarts) <= expected
        crashes = system.audit.counts()[ReasonCode.ACTOR_CRASHED]
        assert crashes == 1 + len(state["starts"]) - 1  # the first crash + every failed start


class Worker(Actor):
    mailbox_capacity = 1000

    def __init__(self, *, ledger: dict) -> None:
        self.ledger = ledger

    @handles(Tick)
    def tick(self, message: Tick) -> None:
        self.ledger["handled"].append(message.n)

    @handles(Fail)
    def fail(self, message: Fail) -> None:
        self.ledger["handled"].append(message.n)
        raise RuntimeError(f"scheduled crash {message.n}")

    @handles(Count)
    def count(self, message: Count) -> int:
        return len(self.ledger["handled"])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    strategy=st.sampled_from(list(Strategy)),
    schedule=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.integers(0, 2)), min_size=1, max_size=30),
)
async def test_random_crash_schedules_keep_the_invariants(strategy, schedule, tick):
    """Random sends and crashes across a supervised trio of children, any strategy:
    every crash is audited once, every send is handled, dead-lettered or refused with a
    code (never both handled and dead-lettered), and nothing is left running afterwards."""
    ledger = {"handled": []}
    spec = SupervisorSpec(
        strategy,
        intensity=RestartIntensity(10**6, 60.0),
        children=tuple(ChildSpec(f"w{i}", Worker, kwargs={"ledger": ledger}) for i in range(3)),
    )
    refused: dict[int, ReasonCode] = {}
    crashes_sent = 0
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
        for n, (child, crash, pause) in enumerate(schedule):
            try:
                ref = system.lookup(f"sup/w{child}")
                await ref.tell(Fail(n) if crash else Tick(n), timeout=100 * tick)
                crashes_sent += crash
            except ExoarmurError as exc:
                refused[n] = exc.code
            if pause:
                await anyio.sleep(pause * tick / 10)
        host = instance_of(system.lookup("sup"))._host
    handled = ledger["handled"]
    dead = [d.envelope.message.n for d in system.dead_letters.recent() if hasattr(d.envelope.message, "n")]
    assert len(handled) == len(set(handled)), "an envelope was handled twice"
    assert not set(handled) & set(dead), "an envelope was both handled and dead-lettered"
    assert set(handled) | set(dead) | set(refused) == set(range(len(schedule)))
    crashed = [n for n in handled if schedule[n][1]]
    assert system.audit.counts().get(ReasonCode.ACTOR_CRASHED, 0) == len(crashed)
    # Every crash led to at most one restart decision (more with one_for_all or
    # rest_for_one, which restart siblings too), and none escalated.
    restarts = system.statistics().restarts
    assert restarts <= len(crashed) * (1 if strategy is Strategy.ONE_FOR_ONE else 3)
    assert system.audit.counts().get(ReasonCode.ESCALATED, 0) == 0
    assert system.paths() == []
    assert host is None or host._closed.is_set()



@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_restarts=st.integers(0, 4),
    schedule=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=20),
)
async def test_random_crash_schedules_stay_within_the_restart_intensity(max_restarts, schedule, tick):
    """one_for_one under a tight intensity (every crash inside its window):
    never more restarts than it allows, and none after the crash one past it,
    which escalates exactly once, to the system (fatal). A sibling may still
    crash while the tree comes down (as in OTP, children are stopped one by
    one): audited, not restarted. Every send ends handled, dead-lettered or
    refused with a code."""
    ledger = {"handled": []}
    spec = SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        intensity=RestartIntensity(max_restarts, 1000 * tick),
        children=tuple(ChildSpec(f"w{i}", Worker, kwargs={"ledger": ledger}) for i in range(3)),
    )
    refused: dict[int, ReasonCode] = {}
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
        for n, (child, crash) in enumerate(schedule):
            try:
                await system.lookup(f"sup/w{child}").tell(Fail(n) if crash else Tick(n), timeout=100 * tick)
            except ExoarmurError as exc:
                refused[n] = exc.code
            await anyio.sleep(0)

        def dead_letters() -> set[int]:
            return {d.envelope.message.n for d in system.dead_letters.recent() if hasattr(d.envelope.message, "n")}

        def settled() -> bool:
            """Every send has ended, and an escalation owed has reached the system."""
            handled = ledger["handled"]
            crashes = sum(1 for n in handled if schedule[n][1])
            ended = set(handled) | dead_letters() | set(refused)
            return len(ended) == len(schedule) and (crashes <= max_restarts or system.fatal is not None)

        await wait_until(settled, timeout=100 * tick)
    handled = ledger["handled"]
    dead = dead_letters()
    assert set(handled) | dead | set(refused) == set(range(len(schedule)))
    assert not set(handled) & dead
    crashed = [n for n in handled if schedule[n][1]]
    counts = system.audit.counts()
    assert counts.get(ReasonCode.ACTOR_CRASHED, 0) == len(crashed)
    assert system.statistics().restarts == min(len(crashed), max_restarts)
    escalated = len(crashed) > max_restarts
    assert counts.get(ReasonCode.ESCALATED, 0) == (1 if escalated else 0)
    assert (system.fatal is not None) is escalated

def half_open_attempts(*, cooldown: float, factor: float, cap: float, window: float) -> int:
    """How many HALF_OPEN restarts a breaker allows in `window` after it opens at 0,
    when every probe restart fails: at cooldown, then each longer cooldown, capped."""
    elapsed, count = 0.0, 0
    while elapsed + cooldown <= window:
        elapsed += cooldown
        count += 1
        cooldown = min(cooldown * factor, cap)
    return count


class TestCrashLoopWithBreaker:
    async def test_a_breaker_limits_restarts_to_its_cooldown_arithmetic(self, tick, anyio_backend_name):
        """A child that can never start again, behind a breaker (threshold 2, cooldown 10 ticks
        doubling to 40): one plain restart, then one restart per cooldown, for ten simulated minutes;
        the restart intensity is never touched while the breaker is open."""
        from exoarmur.supervisors import BreakerPolicy

        window = 600 * tick if anyio_backend_name == "trio" else 60 * tick
        cooldown, cap = (10 * tick, 40 * tick) if anyio_backend_name == "trio" else (2 * tick, 8 * tick)
        state = {"doomed": False, "starts": []}
        breaker = BreakerPolicy(
            threshold=2, window=10 * window, cooldown=cooldown, cooldown_factor=2.0, max_cooldown=cap,
            half_open_probes=1,
        )  # fmt: skip
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(3, 10 * window),  # would escalate after 3 restarts
            children=(ChildSpec("doomed", Doomed, kwargs={"state": state}, breaker=breaker),),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            state["doomed"] = True
            start = system.now()
            await system.lookup("sup/doomed").tell(Fail(0))
            await anyio.sleep(window + tick / 2)
            restarts = [t - start for t in state["starts"][1:] if t - start <= window]
            assert system.fatal is None  # no escalation: the breaker spared the intensity
        expected = 1 + half_open_attempts(cooldown=cooldown, factor=2.0, cap=cap, window=window)
        if anyio_backend_name == "trio":
            assert len(restarts) == expected
        else:
            assert expected - 1 <= len(restarts) <= expected
        # Opened once, then re-opened by every failed probe (on asyncio the last
        # one may fall just past the window).
        opened = [e for e in system.audit.events if e.kind == "BREAKER_OPENED"]
        slack = 0 if anyio_backend_name == "trio" else 1
        assert len(restarts) <= len(opened) <= len(restarts) + slack
