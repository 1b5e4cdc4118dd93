"""Backoff between restarts: exponential, capped, jittered downwards from a seeded generator."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.supervisors.backoff import NO_BACKOFF, BackoffPolicy, jitter_rng
from tests.supervisors.support import (
    NON_FINITE,
    NOT_NUMBERS,
    raises_caller_bug,
    raises_config_invalid,
)

ROOT = Path(__file__).resolve().parents[2]


class FixedRandom(random.Random):
    """A generator whose every draw is `value`, counting the draws."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.value


def steady(**overrides: float) -> BackoffPolicy:
    """A policy without jitter, so delays are exact."""
    options = {"initial": 0.5, "factor": 2.0, "max_delay": 10.0, "jitter": 0.0}
    return BackoffPolicy(**{**options, **overrides})


class TestBackoffPolicy:
    def test_defaults(self):
        """The defaults: 1 s, doubling, capped at 30 s, up to 20 % shorter."""
        assert BackoffPolicy() == BackoffPolicy(initial=1.0, factor=2.0, max_delay=30.0, jitter=0.2)

    def test_options_are_keyword_only(self):
        """Four same-typed numbers are never passed by position."""
        with pytest.raises(TypeError):
            BackoffPolicy(1.0, 2.0, 30.0, 0.2)  # type: ignore[misc]

    def test_whole_numbers_are_stored_as_floats(self):
        """Ints are accepted and kept as floats."""
        policy = BackoffPolicy(initial=1, factor=3, max_delay=9, jitter=0)
        assert attrs.astuple(policy) == (1.0, 3.0, 9.0, 0.0)
        assert all(isinstance(v, float) for v in attrs.astuple(policy))

    @pytest.mark.parametrize(
        ("field", "bad"),
        [
            *[("initial", v) for v in [-0.1, *NOT_NUMBERS, *NON_FINITE]],
            *[("factor", v) for v in [0.0, 0.5, 0.999, *NOT_NUMBERS, *NON_FINITE]],
            *[("max_delay", v) for v in [-1.0, *NOT_NUMBERS, *NON_FINITE]],
            *[("jitter", v) for v in [-0.01, 1.01, *NOT_NUMBERS, *NON_FINITE]],
        ],
    )
    def test_rejects_bad_values(self, field, bad):
        """Negative delays, factor < 1, jitter outside [0, 1], NaN, inf, bools: CONFIG_INVALID."""
        with raises_config_invalid(f"BackoffPolicy.{field}"):
            BackoffPolicy(**{"initial": 0.0, "max_delay": 100.0, field: bad})

    def test_max_delay_below_initial_is_rejected(self):
        """A cap below the first delay is a mistake, not a silent clamp."""
        with raises_config_invalid("BackoffPolicy.max_delay", "initial"):
            BackoffPolicy(initial=5.0, max_delay=1.0)

    def test_edge_values_are_accepted(self):
        """factor 1, jitter 0 and 1, and a zero delay are valid settings."""
        BackoffPolicy(initial=0.0, factor=1.0, max_delay=0.0, jitter=0.0)
        BackoffPolicy(initial=1.0, factor=1.0, max_delay=1.0, jitter=1.0)

    def test_is_frozen(self):
        """A built policy cannot be changed."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            NO_BACKOFF.initial = 1.0  # type: ignore[misc]


class TestDelay:
    def test_first_attempt_waits_initial(self):
        """Attempt 1 waits `initial`."""
        assert steady().delay(1, rng=random.Random(0)) == 0.5

    def test_each_attempt_multiplies_by_factor(self):
        """Attempt n waits initial * factor**(n-1) until the cap."""
        rng = random.Random(0)
        assert [steady().delay(n, rng=rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]

    def test_is_capped_at_max_delay(self):
        """Past the cap every attempt waits max_delay."""
        rng = random.Random(0)
        assert [steady().delay(n, rng=rng) for n in range(5, 9)] == [8.0, 10.0, 10.0, 10.0]

    def test_a_huge_attempt_is_capped_without_overflow(self):
        """factor**attempt overflowing a float still gives max_delay."""
        assert steady().delay(10**6, rng=random.Random(0)) == 10.0

    def test_factor_one_is_a_constant_delay(self):
        """With factor 1 every attempt waits `initial`."""
        policy = steady(factor=1.0)
        assert {policy.delay(n, rng=random.Random(n)) for n in range(1, 50)} == {0.5}

    def test_no_backoff_is_always_zero(self):
        """NO_BACKOFF restarts at once, whatever the attempt (OTP's behaviour)."""
        rng = random.Random(0)
        assert {NO_BACKOFF.delay(n, rng=rng) for n in [1, 2, 10, 10**6]} == {0.0}

    def test_jitter_scales_by_one_minus_jitter_times_the_draw(self):
        """delay = base * (1 - jitter * u) for the generator's draw u."""
        policy = steady(jitter=0.5)
        assert policy.delay(2, rng=FixedRandom(0.0)) == 1.0
        assert policy.delay(2, rng=FixedRandom(0.5)) == 0.75
        assert policy.delay(4, rng=FixedRandom(0.25)) == 3.5

    @settings(max_examples=200, deadline=None)
    @given(
        jitter=st.floats(min_value=0.0, max_value=1.0),
        attempt=st.integers(min_value=1, max_value=200),
        seed=st.integers(),
    )
    def test_jitter_only_shortens_and_never_passes_the_cap(self, jitter, attempt, seed):
        """(1 - jitter) * base <= delay <= base <= max_delay for any draw."""
        policy = steady(jitter=jitter)
        base = policy.base_delay(attempt)
        delay = policy.delay(attempt, rng=random.Random(seed))
        assert (1.0 - jitter) * base <= delay <= base <= policy.max_delay

    def test_full_jitter_can_go_near_zero_but_not_below(self):
        """With jitter 1 a draw near 1 gives a delay near 0, never negative."""
        delay = steady(jitter=1.0).delay(3, rng=FixedRandom(0.999))
        assert 0.0 < delay < 0.01

    @pytest.mark.parametrize("policy", [NO_BACKOFF, steady(), steady(jitter=0.3)])
    def test_each_call_draws_exactly_one_value(self, policy):
        """One draw per delay, whatever the policy, so replays stay in step."""
        rng = FixedRandom(0.5)
        for attempt in range(1, 6):
            policy.delay(attempt, rng=rng)
        assert rng.draws == 5

    def test_same_generator_seed_gives_the_same_delays(self):
        """Two generators with one seed give one sequence of delays."""
        policy = BackoffPolicy(jitter=0.5)
        first = [policy.delay(n, rng=r) for r in [jitter_rng(7, name="db")] for n in range(1, 8)]
        second = [policy.delay(n, rng=r) for r in [jitter_rng(7, name="db")] for n in range(1, 8)]
        assert first == second

    @pytest.mark.parametrize("bad", [0, -1, 1.0, True, "1", None])
    def test_attempt_must_be_a_positive_int(self, bad):
        """Attempts count from 1; anything else is a caller bug (ValueError)."""
        with raises_caller_bug():
            steady().delay(bad, rng=random.Random(0))

    def test_rng_is_keyword_only(self):
        """The generator is named at the call site."""
        with pytest.raises(TypeError):
            steady().delay(1, random.Random(0))  # type: ignore[misc]


class TestJitterRng:
    def test_same_seed_and_name_give_the_same_sequence(self):
        """A child's generator depends only on (seed, name)."""
        a, b = jitter_rng(3, name="db"), jitter_rng(3, name="db")
        assert [a.random() for _ in range(5)] == [b.random() for _ in range(5)]

    def test_different_names_give_different_sequences(self):
        """Siblings under one seed do not back off in lockstep."""
        assert jitter_rng(3, name="db").random() != jitter_rng(3, name="kv").random()

    def test_different_seeds_give_different_sequences(self):
        """A different system seed gives a child a different sequence."""
        assert jitter_rng(3, name="db").random() != jitter_rng(4, name="db").random()

    def test_seed_and_name_do_not_run_together(self):
        """(1, "2x") and (12, "x") are different children, not one string "12x"."""
        assert jitter_rng(1, name="2x").random() != jitter_rng(12, name="x").random()

    def test_first_draws_are_pinned(self):
        """The derivation is fixed: these values change only if the hash does."""
        rng = jitter_rng(0, name="db")
        assert rng.random() == 0.9481600875662408
        assert rng.random() == 0.4992523427087021
        assert jitter_rng(42, name="kv").random() == 0.8498483990514034

    def test_is_stable_across_processes_with_different_hash_seeds(self):
        """Python's salted hash() is not involved: other processes agree."""
        code = (
            "from supervisors import jitter_rng; "
            "print(repr(jitter_rng(5, name='tenant-a').random()))"
        )
        expected = repr(jitter_rng(5, name="tenant-a").random())
        for hash_seed in ["1", "2"]:
            out = subprocess.run(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env={**os.environ, "PYTHONHASHSEED": hash_seed},
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            assert out.stdout.strip() == expected

    @pytest.mark.parametrize(
        ("seed", "name"), [(1.0, "db"), (True, "db"), ("1", "db"), (1, 2), (1, None)]
    )
    def test_rejects_a_non_int_seed_or_non_str_name(self, seed, name):
        """The seed is an int and the name a str (a caller bug otherwise)."""
        with raises_caller_bug():
            jitter_rng(seed, name=name)

    def test_name_is_keyword_only(self):
        """The child's name is named at the call site."""
        with pytest.raises(TypeError):
            jitter_rng(1, "db")  # type: ignore[misc]
