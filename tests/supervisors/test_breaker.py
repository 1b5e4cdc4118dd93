"""The supervisor's circuit breaker: policy checks, the transition table, each state's
rules, a full lifecycle with exact counts, and random schedules (hypothesis)."""

from __future__ import annotations

import itertools

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from exoarmur.runtime import ReasonCode
from exoarmur.supervisors.breaker import (
    AUDIT_KINDS,
    TRANSITIONS,
    Breaker,
    BreakerPolicy,
    BreakerState,
    BreakerStatistics,
    Transition,
    check_transition,
)
from tests.supervisors.support import (
    NON_FINITE,
    NOT_NUMBERS,
    raises_caller_bug,
    raises_config_invalid,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
CRASH = ReasonCode.ACTOR_CRASHED
KV = ReasonCode.TIMEOUT_KV_GET


def policy(**overrides) -> BreakerPolicy:
    """Threshold 3 in 10 s, cooldown 5 s doubling up to 12 s, one probe."""
    settings_ = {
        "threshold": 3,
        "window": 10.0,
        "cooldown": 5.0,
        "cooldown_factor": 2.0,
        "max_cooldown": 12.0,
        "half_open_probes": 1,
    }
    return BreakerPolicy(**{**settings_, **overrides})


def opened(at: float = 2.0, **overrides) -> Breaker:
    """A breaker that opened at `at` after `threshold` failures one second apart."""
    breaker = Breaker(policy(**overrides))
    threshold = breaker.policy.threshold
    for i in range(threshold):
        breaker.record_failure(now=at - (threshold - 1 - i), code=CRASH)
    assert breaker.state is OPEN
    return breaker


def half_open(**overrides) -> Breaker:
    """A breaker that opened at 2 s and went HALF_OPEN at 7 s."""
    breaker = opened(**overrides)
    assert breaker.poll(now=breaker.reopen_at) is not None
    return breaker


class TestBreakerPolicy:
    def test_defaults(self):
        """5 failures in 60 s open it for 10 s, doubling up to 300 s; one probe."""
        assert BreakerPolicy() == BreakerPolicy(
            threshold=5, window=60.0, cooldown=10.0, cooldown_factor=2.0, max_cooldown=300.0,
            half_open_probes=1,
        )  # fmt: skip

    def test_options_are_keyword_only(self):
        """Six same-typed settings are never passed by position."""
        with pytest.raises(TypeError):
            BreakerPolicy(5, 60.0)  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("field", "bad"),
        [
            *[("threshold", v) for v in [0, -1, 2.0, *NOT_NUMBERS, *NON_FINITE]],
            *[("window", v) for v in [0, -1.0, *NOT_NUMBERS, *NON_FINITE]],
            *[("cooldown", v) for v in [0, -1.0, *NOT_NUMBERS, *NON_FINITE]],
            *[("cooldown_factor", v) for v in [0.5, 0.999, *NOT_NUMBERS, *NON_FINITE]],
            *[("max_cooldown", v) for v in [0, -1.0, *NOT_NUMBERS, *NON_FINITE]],
            *[("half_open_probes", v) for v in [0, -1, 1.0, *NOT_NUMBERS, *NON_FINITE]],
        ],
    )
    def test_rejects_bad_values(self, field, bad):
        """Counts below 1, non-positive times, factor < 1, NaN, inf, bools: CONFIG_INVALID."""
        with raises_config_invalid(f"BreakerPolicy.{field}"):
            BreakerPolicy(**{field: bad})

    def test_max_cooldown_below_cooldown_is_rejected(self):
        """A cap below the first cooldown is a mistake, not a silent clamp."""
        with raises_config_invalid("BreakerPolicy.max_cooldown", "cooldown"):
            BreakerPolicy(cooldown=30.0, max_cooldown=10.0)

    def test_times_are_stored_as_floats(self):
        """Whole-second settings are kept as floats."""
        p = BreakerPolicy(window=60, cooldown=10, cooldown_factor=2, max_cooldown=300)
        times = (p.window, p.cooldown, p.cooldown_factor, p.max_cooldown)
        assert all(isinstance(v, float) for v in times)

    def test_is_frozen(self):
        """A built policy cannot be changed."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            policy().threshold = 1  # type: ignore[misc]


ALL_PAIRS = list(itertools.product(BreakerState, repeat=2))
LEGAL = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}


class TestTransitionTable:
    def test_table_is_exactly_the_documented_one(self):
        """CLOSED->OPEN, OPEN->HALF_OPEN, HALF_OPEN->CLOSED|OPEN, nothing else."""
        assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
        assert set(TRANSITIONS) == set(BreakerState)

    def test_table_cannot_be_changed(self):
        """The table is read-only."""
        with pytest.raises(TypeError):
            TRANSITIONS[CLOSED] = frozenset({HALF_OPEN})  # type: ignore[index]

    @pytest.mark.parametrize(("from_state", "to_state"), sorted(LEGAL))
    def test_a_legal_move_passes(self, from_state, to_state):
        """Every move in the table is allowed."""
        check_transition(from_state, to_state)

    @pytest.mark.parametrize(("from_state", "to_state"), sorted(set(ALL_PAIRS) - LEGAL))
    def test_an_illegal_move_is_a_bug(self, from_state, to_state):
        """Every move outside the table (self-loops included) raises RuntimeError."""
        with pytest.raises(RuntimeError, match="illegal breaker transition"):
            check_transition(from_state, to_state)

    @pytest.mark.parametrize(("from_state", "to_state"), sorted(set(ALL_PAIRS) - LEGAL))
    def test_a_transition_record_cannot_describe_an_illegal_move(self, from_state, to_state):
        """Transition itself refuses a move the table forbids."""
        with pytest.raises(RuntimeError):
            Transition(
                from_state=from_state, to_state=to_state, at=0.0, reason=CRASH,
                failures_in_window=0, cooldown=1.0,
            )  # fmt: skip

    @pytest.mark.parametrize(
        ("to_state", "kind"),
        [(OPEN, "BREAKER_OPENED"), (HALF_OPEN, "BREAKER_HALF_OPEN"), (CLOSED, "BREAKER_CLOSED")],
    )
    def test_kind_names_the_audit_event_of_the_state_entered(self, to_state, kind):
        """kind is BREAKER_OPENED / BREAKER_HALF_OPEN / BREAKER_CLOSED by the state entered."""
        from_state = next(a for a, b in LEGAL if b is to_state)
        transition = Transition(
            from_state=from_state, to_state=to_state, at=0.0, reason=CRASH,
            failures_in_window=0, cooldown=1.0,
        )  # fmt: skip
        assert transition.kind == kind == AUDIT_KINDS[to_state]

    def test_every_table_move_is_made_by_the_breaker(self):
        """Driving a breaker reaches each of the four moves, and only those."""
        breaker, seen = Breaker(policy(threshold=1)), []
        for step in (
            lambda: breaker.record_failure(now=0.0, code=CRASH),  # CLOSED -> OPEN
            lambda: breaker.poll(now=5.0),  # OPEN -> HALF_OPEN
            lambda: breaker.record_failure(now=6.0, code=CRASH),  # HALF_OPEN -> OPEN
            lambda: breaker.poll(now=16.0),  # OPEN -> HALF_OPEN
            lambda: breaker.record_success(now=17.0),  # HALF_OPEN -> CLOSED
        ):
            transition = step()
            assert transition is not None
            seen.append((transition.from_state, transition.to_state))
        assert set(seen) == LEGAL


class TestClosed:
    def test_starts_closed_and_admits_everything(self):
        """A new breaker is CLOSED with nothing counted, and admits every envelope."""
        breaker = Breaker(policy())
        assert breaker.state is CLOSED and breaker.reopen_at is None
        assert all(breaker.admit(now=float(t)) for t in range(100))
        assert breaker.statistics() == BreakerStatistics(
            state=CLOSED, failures_in_window=0, total_failures=0, opens=0, cooldown=5.0,
            probes_in_flight=0, probe_successes=0, reopen_at=None,
        )  # fmt: skip

    def test_opens_when_threshold_failures_fall_in_the_window(self):
        """Failures below the threshold change nothing; the threshold-th opens it."""
        breaker = Breaker(policy())
        assert breaker.record_failure(now=0.0, code=CRASH) is None
        assert breaker.record_failure(now=1.0, code=KV) is None
        transition = breaker.record_failure(now=2.0, code=KV)
        assert transition == Transition(
            from_state=CLOSED, to_state=OPEN, at=2.0, reason=KV, failures_in_window=3, cooldown=5.0
        )
        assert transition.kind == "BREAKER_OPENED"
        assert breaker.state is OPEN and breaker.reopen_at == 7.0

    def test_failures_older_than_the_window_do_not_count(self):
        """A failure more than `window` seconds old has left the count."""
        breaker = Breaker(policy(threshold=2))
        breaker.record_failure(now=0.0, code=CRASH)
        assert breaker.record_failure(now=10.5, code=CRASH) is None
        assert breaker.statistics().failures_in_window == 1

    def test_a_failure_exactly_window_seconds_old_still_counts(self):
        """The window is closed (now - t <= window), like restart intensity."""
        breaker = Breaker(policy(threshold=2))
        breaker.record_failure(now=0.0, code=CRASH)
        assert breaker.record_failure(now=10.0, code=CRASH) is not None

    def test_success_does_not_forgive_failures(self):
        """Successes in between do not reset the failure count."""
        breaker = Breaker(policy())
        breaker.record_failure(now=0.0, code=CRASH)
        assert breaker.record_success(now=0.5) is None
        breaker.record_failure(now=1.0, code=CRASH)
        assert breaker.record_success(now=1.5) is None
        assert breaker.record_failure(now=2.0, code=CRASH) is not None

    def test_poll_and_release_change_nothing(self):
        """Time alone never moves a CLOSED breaker."""
        breaker = Breaker(policy())
        breaker.record_failure(now=0.0, code=CRASH)
        before = breaker.statistics()
        assert breaker.poll(now=1.0) is None
        breaker.release_probe(now=1.0)
        assert breaker.statistics() == before

    def test_statistics_window_follows_the_latest_time_seen(self):
        """failures_in_window counts as of the latest `now` the breaker was given."""
        breaker = Breaker(policy())
        breaker.record_failure(now=0.0, code=CRASH)
        breaker.record_failure(now=4.0, code=CRASH)
        assert breaker.statistics().failures_in_window == 2
        breaker.poll(now=12.0)
        stats = breaker.statistics()
        assert (stats.failures_in_window, stats.total_failures) == (1, 2)


class TestOpen:
    def test_refuses_admission_even_past_the_cooldown_until_polled(self):
        """admit never moves the breaker: OPEN says no until poll moves it."""
        breaker = opened()
        assert not breaker.admit(now=3.0)
        assert not breaker.admit(now=100.0)
        assert breaker.state is OPEN

    def test_poll_before_reopen_at_does_nothing(self):
        """Until the cooldown ends, poll returns None and the breaker stays OPEN."""
        breaker = opened()
        assert breaker.poll(now=6.999) is None
        assert breaker.state is OPEN and breaker.reopen_at == 7.0

    def test_poll_at_reopen_at_goes_half_open(self):
        """At exactly reopen_at poll moves to HALF_OPEN, with the cooldown in force."""
        breaker = opened()
        transition = breaker.poll(now=7.0)
        assert transition == Transition(
            from_state=OPEN, to_state=HALF_OPEN, at=7.0, reason=ReasonCode.BREAKER_OPEN,
            failures_in_window=0, cooldown=5.0,
        )  # fmt: skip
        assert transition.kind == "BREAKER_HALF_OPEN"
        assert breaker.state is HALF_OPEN and breaker.reopen_at is None

    def test_a_late_poll_records_when_it_happened(self):
        """A poll after reopen_at still moves it; the transition is stamped with that poll's now."""
        transition = opened().poll(now=9.5)
        assert transition is not None and transition.at == 9.5

    def test_failures_while_open_are_counted_but_change_nothing(self):
        """Late failure reports while OPEN add to the counts; the cooldown and state stay."""
        breaker = opened()
        assert breaker.record_failure(now=3.0, code=KV) is None
        assert breaker.record_failure(now=4.0, code=KV) is None
        stats = breaker.statistics()
        assert (stats.state, stats.failures_in_window, stats.total_failures) == (OPEN, 2, 5)
        assert (stats.opens, stats.reopen_at, stats.cooldown) == (1, 7.0, 5.0)
        transition = breaker.poll(now=7.0)
        assert transition is not None and transition.failures_in_window == 2

    def test_successes_and_releases_while_open_are_ignored(self):
        """A late success or probe release does not close or move an OPEN breaker."""
        breaker = opened()
        before = breaker.statistics()
        assert breaker.record_success(now=3.0) is None
        breaker.release_probe(now=3.0)
        assert breaker.statistics() == before


class TestHalfOpen:
    def test_admits_at_most_half_open_probes_in_flight(self):
        """With 2 probes: two admissions, then refusals while both are in flight."""
        breaker = half_open(half_open_probes=2)
        assert [breaker.admit(now=7.0) for _ in range(4)] == [True, True, False, False]
        assert breaker.statistics().probes_in_flight == 2

    def test_a_success_frees_a_probe_slot(self):
        """After a probe succeeds another may go."""
        breaker = half_open(half_open_probes=2)
        breaker.admit(now=7.0), breaker.admit(now=7.0)
        assert breaker.record_success(now=8.0) is None
        assert breaker.admit(now=8.0)
        assert not breaker.admit(now=8.0)

    def test_release_frees_a_slot_without_counting_a_success(self):
        """A probe that ended without an outcome frees its slot; nothing is counted."""
        breaker = half_open()
        assert breaker.admit(now=7.0)
        breaker.release_probe(now=8.0)
        stats = breaker.statistics()
        assert (stats.probes_in_flight, stats.probe_successes, stats.state) == (0, 0, HALF_OPEN)
        assert breaker.admit(now=8.0)

    def test_release_without_probes_in_flight_does_nothing(self):
        """Releasing more than was admitted never drives the count below zero."""
        breaker = half_open()
        breaker.release_probe(now=8.0)
        assert breaker.statistics().probes_in_flight == 0

    def test_closes_after_half_open_probes_successes(self):
        """K successes close it; fewer do not."""
        breaker = half_open(half_open_probes=3)
        for now in (8.0, 9.0):
            breaker.admit(now=now)
            assert breaker.record_success(now=now) is None
        assert breaker.statistics().probe_successes == 2
        transition = breaker.record_success(now=10.0)
        assert transition == Transition(
            from_state=HALF_OPEN, to_state=CLOSED, at=10.0, reason=ReasonCode.BREAKER_OPEN,
            failures_in_window=0, cooldown=5.0,
        )  # fmt: skip
        assert transition.kind == "BREAKER_CLOSED"

    def test_a_success_counts_even_without_an_admitted_probe(self):
        """The supervisor decides what a success is (e.g. a clean restart); it counts."""
        breaker = half_open()
        transition = breaker.record_success(now=8.0)
        assert transition is not None and transition.to_state is CLOSED

    def test_a_failure_reopens_with_a_longer_cooldown(self):
        """One failure re-opens it; the cooldown is multiplied by cooldown_factor."""
        breaker = half_open()
        breaker.admit(now=7.0)
        transition = breaker.record_failure(now=8.0, code=KV)
        assert transition == Transition(
            from_state=HALF_OPEN, to_state=OPEN, at=8.0, reason=KV, failures_in_window=1,
            cooldown=10.0,
        )  # fmt: skip
        assert breaker.reopen_at == 18.0
        stats = breaker.statistics()
        assert (stats.probes_in_flight, stats.probe_successes, stats.opens) == (0, 0, 2)

    def test_a_failure_after_some_successes_still_reopens(self):
        """Successes short of K do not protect against a failing probe."""
        breaker = half_open(half_open_probes=2)
        breaker.record_success(now=8.0)
        transition = breaker.record_failure(now=9.0, code=CRASH)
        assert transition is not None and transition.to_state is OPEN

    def test_cooldown_growth_is_capped_at_max_cooldown(self):
        """Each failed probe multiplies the cooldown: 5 -> 10 -> 12 (capped) -> 12."""
        breaker, cooldowns, now = half_open(), [], 7.0
        for _ in range(3):
            now += 1.0
            transition = breaker.record_failure(now=now, code=CRASH)
            assert transition is not None
            cooldowns.append(transition.cooldown)
            now = breaker.reopen_at
            assert breaker.poll(now=now) is not None
        assert cooldowns == [10.0, 12.0, 12.0]


class TestLifecycle:
    def test_closed_open_half_open_closed_and_open_again_with_exact_counts(self):
        """The full cycle: counts, cooldown growth and cap, reset on close, and re-opening."""
        breaker = Breaker(policy())
        log = []

        def note(transition):
            assert transition is not None
            t = transition
            log.append((t.kind, t.at, t.failures_in_window, t.cooldown))
            return breaker.statistics()

        breaker.record_failure(now=0.0, code=CRASH)
        breaker.record_failure(now=1.0, code=KV)
        s = note(breaker.record_failure(now=2.0, code=CRASH))
        assert (s.state, s.opens, s.total_failures) == (OPEN, 1, 3)
        assert (s.reopen_at, s.cooldown) == (7.0, 5.0)

        s = note(breaker.poll(now=7.0))
        assert breaker.admit(now=7.0) and not breaker.admit(now=7.0)
        s = note(breaker.record_failure(now=8.0, code=KV))
        assert (s.state, s.opens, s.total_failures) == (OPEN, 2, 4)
        assert (s.reopen_at, s.cooldown) == (18.0, 10.0)

        note(breaker.poll(now=18.0))
        breaker.admit(now=18.0)
        s = note(breaker.record_failure(now=19.0, code=KV))
        assert (s.opens, s.reopen_at, s.cooldown) == (3, 31.0, 12.0)  # 20 capped at 12

        note(breaker.poll(now=31.0))
        breaker.admit(now=31.0)
        s = note(breaker.record_failure(now=32.0, code=KV))
        assert (s.opens, s.reopen_at, s.cooldown) == (4, 44.0, 12.0)  # stays at the cap

        note(breaker.poll(now=44.0))
        breaker.admit(now=44.0)
        s = note(breaker.record_success(now=45.0))
        assert (s.state, s.cooldown) == (CLOSED, 5.0)  # the cooldown resets on close
        assert (s.failures_in_window, s.probes_in_flight) == (0, 0)
        assert breaker.admit(now=45.0)

        assert breaker.record_failure(now=46.0, code=CRASH) is None
        assert breaker.record_failure(now=47.0, code=CRASH) is None
        s = note(breaker.record_failure(now=48.0, code=CRASH))
        assert (s.state, s.opens, s.total_failures) == (OPEN, 5, 9)
        assert (s.reopen_at, s.cooldown) == (53.0, 5.0)

        assert log == [
            ("BREAKER_OPENED", 2.0, 3, 5.0),
            ("BREAKER_HALF_OPEN", 7.0, 0, 5.0),
            ("BREAKER_OPENED", 8.0, 1, 10.0),
            ("BREAKER_HALF_OPEN", 18.0, 0, 10.0),
            ("BREAKER_OPENED", 19.0, 1, 12.0),
            ("BREAKER_HALF_OPEN", 31.0, 0, 12.0),
            ("BREAKER_OPENED", 32.0, 1, 12.0),
            ("BREAKER_HALF_OPEN", 44.0, 0, 12.0),
            ("BREAKER_CLOSED", 45.0, 0, 5.0),
            ("BREAKER_OPENED", 48.0, 3, 5.0),
        ]

    def test_failures_before_opening_do_not_count_after_closing(self):
        """A closed breaker starts afresh: old failures still inside the window are forgotten."""
        breaker = half_open(window=100.0)
        breaker.record_success(now=8.0)
        assert breaker.record_failure(now=9.0, code=CRASH) is None
        assert breaker.statistics().failures_in_window == 1


class TestStatistics:
    def test_is_a_frozen_snapshot(self):
        """The snapshot does not follow later events and cannot be changed."""
        breaker = Breaker(policy())
        snapshot = breaker.statistics()
        breaker.record_failure(now=0.0, code=CRASH)
        assert snapshot.total_failures == 0
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            snapshot.opens = 1  # type: ignore[misc]

    def test_window_count_saturates_at_threshold_while_open(self):
        """Only the newest `threshold` failures are kept; total_failures counts them all."""
        breaker = opened()
        for t in range(3, 10):
            breaker.record_failure(now=float(t), code=KV)
        stats = breaker.statistics()
        assert (stats.failures_in_window, stats.total_failures) == (3, 10)


class TestArguments:
    @pytest.mark.parametrize(
        "call",
        [
            lambda b, now: b.record_failure(now=now, code=CRASH),
            lambda b, now: b.record_success(now=now),
            lambda b, now: b.release_probe(now=now),
            lambda b, now: b.poll(now=now),
            lambda b, now: b.admit(now=now),
        ],
        ids=["record_failure", "record_success", "release_probe", "poll", "admit"],
    )
    @pytest.mark.parametrize("bad", [4.0, *NON_FINITE, True, None, "5"])
    def test_now_must_be_finite_and_never_go_backwards(self, call, bad):
        """Each method refuses a `now` before the latest seen, NaN, inf or a non-number."""
        breaker = Breaker(policy())
        breaker.poll(now=5.0)
        with raises_caller_bug():
            call(breaker, bad)

    def test_the_same_now_twice_is_fine(self):
        """Several events at one instant are allowed."""
        breaker = Breaker(policy())
        for _ in range(3):
            breaker.record_failure(now=1.0, code=CRASH)
        assert breaker.state is OPEN

    def test_code_is_a_reason_code(self):
        """A code's string value is accepted; anything else is a ValueError."""
        breaker = Breaker(policy(threshold=1))
        code = "TIMEOUT_KV_PUT"
        transition = breaker.record_failure(now=0.0, code=code)  # type: ignore[arg-type]
        assert transition is not None and transition.reason is ReasonCode.TIMEOUT_KV_PUT
        with pytest.raises(ValueError):
            breaker.record_failure(now=1.0, code="NOT_A_CODE")  # type: ignore[arg-type]

    def test_options_are_keyword_only(self):
        """`now` and `code` are named at every call site."""
        breaker = Breaker(policy())
        with pytest.raises(TypeError):
            breaker.record_failure(1.0, CRASH)  # type: ignore[misc]
        with pytest.raises(TypeError):
            breaker.admit(1.0)  # type: ignore[misc]

    def test_needs_a_breaker_policy(self):
        """A Breaker is built from a BreakerPolicy, nothing else."""
        with pytest.raises(TypeError):
            Breaker({"threshold": 1})  # type: ignore[arg-type]


# ---- random schedules ------------------------------------------------------------

policies = st.builds(
    BreakerPolicy,
    threshold=st.integers(min_value=1, max_value=4),
    window=st.sampled_from([1.0, 5.0, 30.0]),
    cooldown=st.sampled_from([1.0, 2.0, 5.0]),
    cooldown_factor=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
    max_cooldown=st.sampled_from([5.0, 12.0, 40.0]),
    half_open_probes=st.integers(min_value=1, max_value=3),
)
codes = st.sampled_from([CRASH, KV, ReasonCode.TIMEOUT_NATS_PUBLISH])


class BreakerMachine(RuleBasedStateMachine):
    """A breaker under random failures, successes, polls, admissions and releases at
    non-decreasing times, checked against the table and a model of its probes."""

    @initialize(breaker_policy=policies)
    def start(self, breaker_policy):
        self.breaker = Breaker(breaker_policy)
        self.now = 0.0
        self.state = CLOSED
        self.failures = 0
        self.opens = 0
        self.in_flight = 0  # the model's count of admitted, unfinished probes

    @rule(dt=st.one_of(st.sampled_from([0.0, 1.0, 5.0, 12.0]), st.floats(0.0, 50.0)))
    def advance(self, dt):
        self.now += dt

    def _check(self, transition):
        if transition is None:
            assert self.breaker.state is self.state
            return
        assert (transition.from_state, transition.to_state) in LEGAL
        assert transition.from_state is self.state
        assert transition.to_state is self.breaker.state
        assert transition.at == self.now
        assert transition.kind == AUDIT_KINDS[transition.to_state]
        self.state = transition.to_state
        self.in_flight = 0
        if transition.to_state is OPEN:
            self.opens += 1
            assert self.breaker.reopen_at == self.now + transition.cooldown

    @rule(code=codes)
    def fail(self, code):
        self.failures += 1
        state = self.state
        transition = self.breaker.record_failure(now=self.now, code=code)
        if state is HALF_OPEN:
            assert transition is not None and transition.to_state is OPEN
        elif state is OPEN:
            assert transition is None
        if transition is not None:
            assert transition.reason is code
        self._check(transition)

    @rule()
    def succeed(self):
        state = self.state
        transition = self.breaker.record_success(now=self.now)
        if state is HALF_OPEN and transition is None:
            self.in_flight = max(0, self.in_flight - 1)
        if state is not HALF_OPEN:
            assert transition is None
        self._check(transition)

    @rule()
    def release(self):
        self.breaker.release_probe(now=self.now)
        if self.state is HALF_OPEN:
            self.in_flight = max(0, self.in_flight - 1)

    @rule()
    def poll(self):
        reopen_at = self.breaker.reopen_at
        transition = self.breaker.poll(now=self.now)
        expected = self.state is OPEN and reopen_at is not None and self.now >= reopen_at
        assert (transition is not None) == expected
        self._check(transition)

    @precondition(lambda self: self.state is HALF_OPEN)
    @rule()
    def probe(self):
        admitted = self.breaker.admit(now=self.now)
        assert admitted == (self.in_flight < self.breaker.policy.half_open_probes)
        self.in_flight += admitted

    @precondition(lambda self: self.state is not HALF_OPEN)
    @rule()
    def send(self):
        assert self.breaker.admit(now=self.now) == (self.state is CLOSED)

    @invariant()
    def counts_and_bounds_hold(self):
        if not hasattr(self, "breaker"):
            return
        stats = self.breaker.statistics()
        p = self.breaker.policy
        assert stats.state is self.state
        assert stats.total_failures == self.failures
        assert stats.opens == self.opens
        assert stats.probes_in_flight == self.in_flight <= p.half_open_probes
        assert self.state is HALF_OPEN or stats.probes_in_flight == stats.probe_successes == 0
        assert p.cooldown <= stats.cooldown <= p.max_cooldown
        assert (stats.reopen_at is not None) == (self.state is OPEN)
        assert 0 <= stats.failures_in_window <= p.threshold


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


class TestBreakerProperties(BreakerMachine.TestCase):
    """Random schedules: moves only along the table, probes bounded, cooldown within its cap."""
