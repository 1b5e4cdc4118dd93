"""RetryPolicy: the schedule (exponential, capped, jitter per key and attempt,
stable across processes), validation, and `run` (retries only retryable codes,
audits each retry and the exhaustion once, never outlives the deadline)."""

from __future__ import annotations

import math

import anyio
import pytest

from exoarmur.runtime import (
    Actor,
    ActorSystem,
    BreakerOpen,
    DeadlineExceeded,
    InvalidInput,
    ReasonCode,
    RetryExhausted,
    TimeoutPolicy,
    error_for,
    handles,
    message,
)
from exoarmur.runtime.retry import DEFAULT_RETRYABLE, NEVER_RETRYABLE, RetryPolicy

pytestmark = pytest.mark.anyio


class Script:
    """An operation that raises the given errors on its first attempts, then returns "done"."""

    def __init__(self, system: ActorSystem, *failures: BaseException) -> None:
        self.system = system
        self.failures = list(failures)
        self.attempts: list[int] = []
        self.times: list[float] = []

    async def __call__(self, attempt: int) -> str:
        self.attempts.append(attempt)
        self.times.append(self.system.now())
        await anyio.lowlevel.checkpoint()
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def always(code: ReasonCode, n: int = 100) -> list[BaseException]:
    return [error_for(code) for _ in range(n)]


def retry_events(system: ActorSystem) -> list:
    return [e for e in system.audit.events if e.kind == "retry"]


class TestSchedule:
    def test_without_jitter_delays_grow_by_factor_up_to_the_cap(self):
        """base(n) = initial * factor ** (n - 1), capped at max_delay."""
        policy = RetryPolicy(max_attempts=6, initial=0.1, factor=2.0, max_delay=1.0, jitter=0)
        assert policy.delays("k") == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])

    def test_schedule_has_one_wait_between_each_pair_of_attempts(self):
        """max_attempts attempts have max_attempts - 1 waits; one attempt has none."""
        assert len(RetryPolicy(max_attempts=7).delays("k")) == 6
        assert RetryPolicy(max_attempts=1).delays("k") == []

    def test_factor_one_gives_a_constant_base(self):
        """factor=1 is a fixed delay."""
        policy = RetryPolicy(max_attempts=5, initial=0.3, factor=1.0, max_delay=0.3, jitter=0)
        assert policy.delays("k") == pytest.approx([0.3] * 4)

    def test_jitter_stays_within_its_share_of_the_capped_base(self):
        """Each delay lies in ((1 - jitter) * base, base], and is never above max_delay."""
        policy = RetryPolicy(max_attempts=8, initial=0.5, factor=2.0, max_delay=8.0, jitter=0.5)
        bases = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        for i in range(200):
            for delay, base in zip(policy.delays(f"intent-{i}"), bases, strict=True):
                assert 0.5 * base < delay <= base <= policy.max_delay

    def test_jitter_actually_spreads_the_delays(self):
        """Across keys, the first delay covers most of its jitter range (not a constant)."""
        policy = RetryPolicy(max_attempts=2, initial=1.0, max_delay=1.0, jitter=1.0)
        firsts = [policy.delay(key=f"k{i}", attempt=1) for i in range(500)]
        assert min(firsts) < 0.05 and max(firsts) > 0.95

    def test_same_key_gives_the_same_delays_on_every_call(self):
        """The schedule is a pure function of the key."""
        policy = RetryPolicy(max_attempts=6)
        assert policy.delays("intent-42") == policy.delays("intent-42")
        assert policy.delay(key="intent-42", attempt=3) == policy.delays("intent-42")[2]

    def test_same_key_gives_the_same_delays_in_every_process(self):
        """Values computed once, in another process (another hash() seed), still hold:
        the jitter comes from blake2b, not from Python's salted hash()."""
        policy = RetryPolicy(max_attempts=5, initial=1.0, factor=3.0, max_delay=10.0, jitter=0.5)
        assert policy.delays("intent-42") == pytest.approx(
            [0.6238632363035712, 1.8621737953119573, 7.348541660438759, 9.370791162634463], rel=1e-12
        )
        assert policy.delays("intent-43") == pytest.approx(
            [0.8492602872198671, 1.8587986416265054, 8.67008950686852, 7.391038870339777], rel=1e-12
        )

    def test_different_keys_get_different_delays(self):
        """Two keys do not share a schedule (no thundering herd)."""
        policy = RetryPolicy(max_attempts=4)
        schedules = {tuple(policy.delays(f"intent-{i}")) for i in range(100)}
        assert len(schedules) == 100

    def test_a_huge_attempt_number_is_capped_not_overflowed(self):
        """factor ** n would overflow a float; the delay is still <= max_delay."""
        policy = RetryPolicy(initial=0.1, factor=10.0, max_delay=5.0)
        assert 0 < policy.delay(key="k", attempt=10**6) <= 5.0

    @pytest.mark.parametrize("bad", [0, -1, 1.5, True])
    def test_attempt_below_one_is_refused(self, bad):
        """Attempts are numbered from 1."""
        with pytest.raises(ValueError):
            RetryPolicy().delay(key="k", attempt=bad)


class TestValidation:
    @pytest.mark.parametrize(
        "options",
        [
            {"max_attempts": 0},
            {"max_attempts": 2.0},
            {"max_attempts": True},
            {"initial": 0},
            {"initial": -1.0},
            {"initial": math.nan},
            {"initial": "0.1"},
            {"factor": 0.5},
            {"factor": math.inf},
            {"initial": 1.0, "max_delay": 0.5},
            {"max_delay": math.inf},
            {"jitter": -0.1},
            {"jitter": 1.5},
            {"retryable": ["NOT_A_CODE"]},
            {"retryable": "TIMEOUT_KV_GET"},
            {"retryable": [ReasonCode.TIMEOUT_KV_GET, ReasonCode.ENVELOPE_INVALID]},
            {"retryable": [ReasonCode.RETRY_EXHAUSTED]},
        ],
    )
    def test_invalid_options_are_config_invalid(self, options):
        """Bad numbers, unknown codes and never-retryable codes are refused at construction."""
        with pytest.raises(InvalidInput) as caught:
            RetryPolicy(**options)
        assert caught.value.code is ReasonCode.CONFIG_INVALID

    def test_options_are_keyword_only_and_the_policy_is_frozen(self):
        """No positional options; no mutation after construction."""
        with pytest.raises(TypeError):
            RetryPolicy(3)  # type: ignore[misc]
        policy = RetryPolicy()
        with pytest.raises(AttributeError):
            policy.max_attempts = 10  # type: ignore[misc]

    def test_retryable_accepts_code_names(self):
        """Codes may be given by value (as config gives them)."""
        policy = RetryPolicy(retryable=["BREAKER_OPEN", ReasonCode.TIMEOUT_KV_GET])
        assert policy.retryable == {ReasonCode.BREAKER_OPEN, ReasonCode.TIMEOUT_KV_GET}

    def test_default_retries_timeouts_and_overload_only(self):
        """Every TIMEOUT_* and the overload codes; not DEADLINE_EXCEEDED, BREAKER_OPEN or crashes."""
        timeouts = {c for c in ReasonCode if c.startswith("TIMEOUT_")}
        overload = {ReasonCode.OVERLOAD_MAILBOX_FULL, ReasonCode.OVERLOAD_SHED, ReasonCode.RATE_LIMITED}
        assert RetryPolicy().retryable == DEFAULT_RETRYABLE == timeouts | overload
        for code in (ReasonCode.DEADLINE_EXCEEDED, ReasonCode.BREAKER_OPEN, ReasonCode.ACTOR_CRASHED):
            assert code not in DEFAULT_RETRYABLE
        assert not DEFAULT_RETRYABLE & NEVER_RETRYABLE


class TestRun:
    async def test_success_after_two_failures_returns_the_value_with_two_retry_events(self, tick):
        """Two retryable failures, then success: the value, and one "retry" event per failure."""
        async with ActorSystem() as system:
            policy = RetryPolicy(max_attempts=5, initial=tick, max_delay=4 * tick)
            op = Script(system, *always(ReasonCode.TIMEOUT_KV_GET, 1), error_for(ReasonCode.RATE_LIMITED))
            result = await policy.run(
                op, system=system, key="intent-1", deadline=system.now() + 100 * tick, path="kv/get"
            )
            assert result == "done"
            assert op.attempts == [1, 2, 3]
            events = retry_events(system)
            assert [(e.code, e.attempt) for e in events] == [
                (ReasonCode.TIMEOUT_KV_GET, 1),
                (ReasonCode.RATE_LIMITED, 2),
            ]
            assert {(e.idempotency_key, e.path) for e in events} == {("intent-1", "kv/get")}
            assert system.audit.events == events  # nothing else: no exhaustion

    async def test_non_retryable_code_is_raised_at_once_without_a_retry_event(self, tick):
        """A code outside `retryable` (BREAKER_OPEN by default) ends the run at attempt 1, as is."""
        async with ActorSystem() as system:
            error = error_for(ReasonCode.BREAKER_OPEN)
            op = Script(system, error)
            with pytest.raises(BreakerOpen) as caught:
                await policy_for(tick).run(op, system=system, key="k", deadline=system.now() + 50 * tick)
            assert caught.value is error
            assert op.attempts == [1]
            assert system.audit.events == []

    async def test_listed_code_is_retried(self, tick):
        """A policy may opt in to a code that is not retried by default."""
        async with ActorSystem() as system:
            policy = RetryPolicy(max_attempts=3, initial=tick, retryable=[ReasonCode.BREAKER_OPEN])
            op = Script(system, error_for(ReasonCode.BREAKER_OPEN))
            assert await policy.run(op, system=system, key="k", deadline=system.now() + 50 * tick) == "done"
            assert [e.code for e in retry_events(system)] == [ReasonCode.BREAKER_OPEN]

    async def test_uncoded_exception_propagates_unchanged_and_is_not_retried(self, tick):
        """A crash is not a retryable failure: the same exception, after one attempt."""
        async with ActorSystem() as system:
            crash = ValueError("bug")
            op = Script(system, crash)
            with pytest.raises(ValueError) as caught:
                await policy_for(tick).run(op, system=system, key="k", deadline=system.now() + 50 * tick)
            assert caught.value is crash
            assert op.attempts == [1]
            assert system.audit.events == []

    async def test_exhaustion_after_max_attempts_is_retry_exhausted_audited_once(self, tick):
        """max_attempts failures: RetryExhausted from the last error, max_attempts - 1 retry
        events and exactly one RETRY_EXHAUSTED event naming the last code and the count."""
        async with ActorSystem() as system:
            policy = RetryPolicy(max_attempts=4, initial=tick, factor=1.0, max_delay=tick)
            failures = always(ReasonCode.TIMEOUT_NATS_PUBLISH, 4)
            op = Script(system, *failures)
            with pytest.raises(RetryExhausted) as caught:
                await policy.run(op, system=system, key="intent-9", deadline=system.now() + 100 * tick, path="p")
            assert caught.value.code is ReasonCode.RETRY_EXHAUSTED
            assert caught.value.__cause__ is failures[-1]
            assert op.attempts == [1, 2, 3, 4]
            assert len(retry_events(system)) == 3
            (exhausted,) = system.audit.of(ReasonCode.RETRY_EXHAUSTED)
            assert exhausted.kind == "retry_exhausted" and exhausted.path == "p"
            assert "4 attempt(s)" in exhausted.detail and "TIMEOUT_NATS_PUBLISH" in exhausted.detail
            assert "intent-9" in exhausted.detail
            assert (exhausted.idempotency_key, exhausted.attempt) == ("intent-9", 4)
            assert len(system.audit.events) == 4

    async def test_a_wait_that_would_cross_the_deadline_ends_the_retry_early(self, tick):
        """Waits 1, 2, 4, ... ticks against a 5-tick deadline: attempts at 0, 1, 3, then the
        4-tick wait would cross it, so RETRY_EXHAUSTED at once, before the deadline."""
        async with ActorSystem() as system:
            policy = RetryPolicy(max_attempts=10, initial=tick, factor=2.0, max_delay=100 * tick, jitter=0)
            op = Script(system, *always(ReasonCode.TIMEOUT_KV_GET))
            deadline = system.now() + 5 * tick
            with pytest.raises(RetryExhausted) as caught:
                await policy.run(op, system=system, key="k", deadline=deadline)
            assert system.now() <= deadline
            assert op.attempts == [1, 2, 3]
            assert len(retry_events(system)) == 2
            assert "deadline" in caught.value.detail
            assert system.audit.counts()[ReasonCode.RETRY_EXHAUSTED] == 1

    async def test_an_attempt_still_running_at_the_deadline_is_cut_and_ends_the_retry(self, tick):
        """The attempt's cancel scope fires at the deadline: DEADLINE_EXCEEDED, then RETRY_EXHAUSTED."""
        async with ActorSystem() as system:
            attempts = []

            async def hang(attempt: int) -> None:
                attempts.append(attempt)
                await anyio.sleep_forever()

            deadline = system.now() + 3 * tick
            with anyio.fail_after(30 * tick):
                with pytest.raises(RetryExhausted) as caught:
                    await policy_for(tick).run(hang, system=system, key="k", deadline=deadline)
            assert system.now() >= deadline
            assert attempts == [1]
            assert isinstance(caught.value.__cause__, DeadlineExceeded)
            assert caught.value.__cause__.code is ReasonCode.DEADLINE_EXCEEDED
            assert "DEADLINE_EXCEEDED" in caught.value.detail
            assert system.audit.counts() == {ReasonCode.RETRY_EXHAUSTED: 1}

    async def test_cancellation_from_outside_is_not_swallowed(self, tick):
        """An enclosing scope cancelled mid-attempt or mid-wait wins; no exhaustion is reported."""
        async with ActorSystem() as system:
            policy = RetryPolicy(max_attempts=10, initial=4 * tick, factor=1.0, max_delay=4 * tick, jitter=0)
            op = Script(system, *always(ReasonCode.TIMEOUT_KV_GET))
            with anyio.move_on_after(6 * tick) as outer:  # during the second wait (attempts at 0, 4)
                await policy.run(op, system=system, key="k", deadline=system.now() + 50 * tick)
            assert outer.cancelled_caught
            assert op.attempts == [1, 2]
            assert system.audit.of(ReasonCode.RETRY_EXHAUSTED) == []

    async def test_deadline_already_past_makes_no_attempt(self, tick):
        """A retry that begins at its deadline fails DEADLINE_EXCEEDED, audited once, no attempt."""
        async with ActorSystem() as system:
            op = Script(system)
            with pytest.raises(DeadlineExceeded) as caught:
                await policy_for(tick).run(op, system=system, key="k", deadline=system.now())
            assert caught.value.code is ReasonCode.DEADLINE_EXCEEDED
            assert op.attempts == []
            assert system.audit.counts() == {ReasonCode.DEADLINE_EXCEEDED: 1}

    @pytest.mark.parametrize("key", ["", None])
    async def test_a_retry_without_an_idempotency_key_is_refused(self, key, tick):
        """Retries are protected by idempotency keys (rule R2): none, no attempt."""
        async with ActorSystem() as system:
            op = Script(system)
            with pytest.raises(InvalidInput) as caught:
                await policy_for(tick).run(op, system=system, key=key, deadline=system.now() + tick)
            assert caught.value.code is ReasonCode.ENVELOPE_INVALID
            assert op.attempts == []

    async def test_without_any_deadline_the_policy_default_bounds_the_retry(self, tick):
        """Outside a handler and without `deadline=`, now + the DEFAULT timeout is the bound."""
        timeouts = TimeoutPolicy.with_overrides({"default": 5 * tick})
        async with ActorSystem(timeouts=timeouts) as system:
            policy = RetryPolicy(max_attempts=1000, initial=tick, factor=1.0, max_delay=tick, jitter=0)
            op = Script(system, *always(ReasonCode.RATE_LIMITED))
            start = system.now()
            with anyio.fail_after(50 * tick):
                with pytest.raises(RetryExhausted):
                    await policy.run(op, system=system, key="k")
            assert system.now() <= start + 5 * tick
            assert 2 <= len(op.attempts) <= 5

    async def test_waits_between_attempts_follow_the_schedule(self, tick, anyio_backend_name):
        """The time between attempts is the schedule's delay: exact on trio's MockClock,
        never shorter on asyncio."""
        async with ActorSystem() as system:
            policy = RetryPolicy(max_attempts=5, initial=tick, factor=2.0, max_delay=5 * tick, jitter=0.5)
            op = Script(system, *always(ReasonCode.OVERLOAD_MAILBOX_FULL, 4))
            assert await policy.run(op, system=system, key="intent-7", deadline=system.now() + 100 * tick)
            gaps = [b - a for a, b in zip(op.times, op.times[1:])]
            expected = policy.delays("intent-7")
            if anyio_backend_name == "trio":
                assert gaps == pytest.approx(expected, abs=1e-9)
            else:
                assert all(gap >= delay - 1e-3 for gap, delay in zip(gaps, expected, strict=True))


@message("test.retry.flaky")
class Flaky:
    deadline_offset: float | None  # seconds after now for an explicit `deadline=`, or None


class Retrier(Actor):
    """Retries an always-timing-out operation inside its handler; reports how it ended."""

    def __init__(self, *, policy: RetryPolicy) -> None:
        self.policy = policy

    @handles(Flaky)
    async def flaky(self, message: Flaky) -> tuple[float, float, int, str]:
        system = self.context.system
        envelope = self.context.envelope
        attempts: list[int] = []

        async def op(attempt: int) -> None:
            attempts.append(attempt)
            raise error_for(ReasonCode.TIMEOUT_KV_GET)

        deadline = None if message.deadline_offset is None else system.now() + message.deadline_offset
        try:
            await self.policy.run(op, system=system, key="intent-h", deadline=deadline)
        except RetryExhausted as exc:
            return envelope.deadline, system.now(), len(attempts), exc.detail
        raise AssertionError("the retry should have been exhausted")


class TestInsideAHandler:
    @pytest.mark.parametrize("offset_ticks", [None, 1000])
    async def test_retry_stops_by_the_handlers_envelope_deadline(self, offset_ticks, tick):
        """No `deadline=` (or a later one): the envelope's deadline bounds the retry, which
        ends with RETRY_EXHAUSTED, audited under the handler's path, before the ask times out."""
        async with ActorSystem() as system:
            policy = RetryPolicy(max_attempts=100, initial=tick, factor=2.0, max_delay=100 * tick, jitter=0)
            ref = await system.spawn(Retrier, name="retrier", kwargs={"policy": policy})
            offset = None if offset_ticks is None else offset_ticks * tick
            deadline, ended, attempts, detail = await ref.ask(Flaky(offset), timeout=10 * tick)
            assert ended <= deadline
            assert attempts == 4  # at 0, 1, 3 and 7 ticks; the 8-tick wait would cross 10
            assert "TIMEOUT_KV_GET" in detail
            (exhausted,) = system.audit.of(ReasonCode.RETRY_EXHAUSTED)
            assert exhausted.path == "retrier"
            assert [e.path for e in retry_events(system)] == ["retrier"] * 3


def policy_for(tick: float) -> RetryPolicy:
    return RetryPolicy(max_attempts=5, initial=tick, factor=2.0, max_delay=8 * tick)
