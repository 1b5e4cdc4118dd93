"""Restart intensity: OTP's "more than MaxR restarts in MaxT seconds" as a pure function."""

from __future__ import annotations

import itertools

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.supervisors.intensity import DEFAULT_INTENSITY, RestartIntensity, RestartWindow, add_restart
from tests.supervisors.support import (
    NON_FINITE,
    NOT_NUMBERS,
    raises_caller_bug,
    raises_config_invalid,
)


def replay(times, intensity):
    """Feed restart times one by one; the (history, exceeded) after each."""
    history: tuple[float, ...] = ()
    results = []
    for now in times:
        history, exceeded = add_restart(history, now=now, intensity=intensity)
        results.append((history, exceeded))
    return results


class TestRestartIntensity:
    def test_holds_max_restarts_and_within(self):
        """The two settings are kept as given, `within` as a float."""
        intensity = RestartIntensity(3, 5)
        assert intensity.max_restarts == 3
        assert intensity.within == 5.0 and isinstance(intensity.within, float)

    def test_default_is_three_restarts_in_five_seconds(self):
        """The default is Elixir's 3 in 5 s (OTP's is 1 in 5 s)."""
        assert DEFAULT_INTENSITY == RestartIntensity(3, 5.0)

    def test_zero_restarts_is_a_valid_setting(self):
        """max_restarts=0 is allowed: the supervisor tolerates no restart at all."""
        assert RestartIntensity(0, 1.0).max_restarts == 0

    @pytest.mark.parametrize("bad", [-1, 1.0, 2.5, *NOT_NUMBERS, *NON_FINITE])
    def test_max_restarts_must_be_a_non_negative_int(self, bad):
        """Negative, float, bool, NaN, inf or non-number max_restarts is CONFIG_INVALID."""
        with raises_config_invalid("RestartIntensity.max_restarts"):
            RestartIntensity(bad, 5.0)

    @pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, *NOT_NUMBERS, *NON_FINITE])
    def test_within_must_be_finite_and_positive(self, bad):
        """Zero, negative, NaN, inf, bool or non-number `within` is CONFIG_INVALID."""
        with raises_config_invalid("RestartIntensity.within"):
            RestartIntensity(3, bad)

    def test_is_frozen(self):
        """A built intensity cannot be changed."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            DEFAULT_INTENSITY.max_restarts = 10  # type: ignore[misc]

    def test_evolve_is_checked_too(self):
        """attrs.evolve goes through the same checks as construction."""
        with raises_config_invalid("RestartIntensity.within"):
            attrs.evolve(DEFAULT_INTENSITY, within=-1.0)


class TestAddRestart:
    def test_first_restart_exceeds_when_no_restart_is_tolerated(self):
        """With max_restarts=0 the very first restart exceeds the intensity."""
        history, exceeded = add_restart((), now=10.0, intensity=RestartIntensity(0, 5.0))
        assert history == (10.0,)
        assert exceeded is True

    def test_first_restart_is_within_an_intensity_of_one(self):
        """With max_restarts=1 one restart is fine, a second inside the window is not."""
        (h1, e1), (h2, e2) = replay([0.0, 4.0], RestartIntensity(1, 5.0))
        assert (h1, e1) == ((0.0,), False)
        assert (h2, e2) == ((0.0, 4.0), True)

    def test_fourth_restart_within_five_seconds_exceeds_three_in_five(self):
        """MaxR=3 in 5 s: three restarts are tolerated, the fourth inside 5 s exceeds."""
        results = replay([0.0, 1.0, 2.0, 3.0], RestartIntensity(3, 5.0))
        assert [exceeded for _, exceeded in results] == [False, False, False, True]
        assert results[-1][0] == (0.0, 1.0, 2.0, 3.0)

    def test_restarts_spaced_wider_than_the_window_never_exceed(self):
        """One restart every 5.5 s never exceeds 1 in 5 s: each older one has left the window."""
        results = replay([i * 5.5 for i in range(20)], RestartIntensity(1, 5.0))
        assert not any(exceeded for _, exceeded in results)
        assert all(len(history) == 1 for history, _ in results)

    def test_a_restart_exactly_within_seconds_ago_still_counts(self):
        """The window is closed, as in OTP (R >= Now - Period): now - t == within is inside."""
        (_, _), (history, exceeded) = replay([0.0, 5.0], RestartIntensity(1, 5.0))
        assert history == (0.0, 5.0)
        assert exceeded is True

    def test_a_restart_just_over_within_seconds_ago_is_dropped(self):
        """A restart more than `within` seconds before now leaves the history."""
        (_, _), (history, exceeded) = replay([0.0, 5.001], RestartIntensity(1, 5.0))
        assert history == (5.001,)
        assert exceeded is False

    def test_history_keeps_only_restarts_in_the_window_oldest_first(self):
        """Old restarts are dropped; the kept ones stay in time order with now last."""
        results = replay([0.0, 1.0, 7.0, 8.0], RestartIntensity(5, 5.0))
        assert [history for history, _ in results] == [
            (0.0,),
            (0.0, 1.0),
            (7.0,),
            (7.0, 8.0),
        ]

    def test_history_is_bounded_to_max_restarts_plus_one(self):
        """However many restarts fall in the window, only the newest max_restarts+1 are kept."""
        results = replay([float(i) for i in range(10)], RestartIntensity(2, 100.0))
        assert results[-1] == ((7.0, 8.0, 9.0), True)
        assert max(len(history) for history, _ in results) == 3

    def test_simultaneous_restarts_each_count(self):
        """Restarts at the same instant are distinct restarts."""
        results = replay([1.0, 1.0, 1.0], RestartIntensity(2, 5.0))
        assert [exceeded for _, exceeded in results] == [False, False, True]
        assert results[-1][0] == (1.0, 1.0, 1.0)

    def test_stays_exceeded_while_restarts_keep_coming(self):
        """Once exceeded, every further restart inside the window is exceeded too."""
        results = replay([0.0, 1.0, 2.0, 3.0, 4.0], RestartIntensity(1, 5.0))
        assert [exceeded for _, exceeded in results] == [False, True, True, True, True]

    def test_recovers_after_a_quiet_window(self):
        """After more than `within` seconds without restarts the count starts afresh."""
        results = replay([0.0, 1.0, 6.5], RestartIntensity(1, 5.0))
        assert [exceeded for _, exceeded in results] == [False, True, False]
        assert results[-1][0] == (6.5,)

    def test_is_pure(self):
        """The same arguments always give the same answer; the given history is untouched."""
        history = (1.0, 2.0)
        intensity = RestartIntensity(3, 5.0)
        first = add_restart(history, now=3.0, intensity=intensity)
        second = add_restart(history, now=3.0, intensity=intensity)
        assert first == second == ((1.0, 2.0, 3.0), False)
        assert history == (1.0, 2.0)

    def test_int_now_is_recorded_as_float(self):
        """A whole-second `now` goes into the history as a float."""
        history, _ = add_restart((), now=3, intensity=DEFAULT_INTENSITY)
        assert history == (3.0,) and isinstance(history[0], float)

    def test_now_before_the_newest_restart_is_a_caller_bug(self):
        """The clock is monotonic: a `now` earlier than the history is a ValueError."""
        with raises_caller_bug():
            add_restart((5.0,), now=4.0, intensity=DEFAULT_INTENSITY)

    @pytest.mark.parametrize("bad", [*NON_FINITE, True, None, "1"])
    def test_non_finite_or_non_number_now_is_a_caller_bug(self, bad):
        """NaN, inf, bool or a non-number `now` is a ValueError, not a silent drop."""
        with raises_caller_bug():
            add_restart((), now=bad, intensity=DEFAULT_INTENSITY)

    def test_now_and_intensity_are_keyword_only(self):
        """Only the history is positional."""
        with pytest.raises(TypeError):
            add_restart((), 1.0, DEFAULT_INTENSITY)  # type: ignore[misc]


# Gaps that hit the window's edge exactly, mixed with arbitrary ones.
gaps = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0]),
    st.floats(min_value=0.0, max_value=12.0, allow_nan=False, allow_infinity=False),
)
intensities = st.builds(
    RestartIntensity,
    st.integers(min_value=0, max_value=6),
    st.one_of(
        st.sampled_from([0.5, 1.0, 2.5, 5.0]),
        st.floats(min_value=0.01, max_value=20.0, allow_nan=False),
    ),
)
schedules = st.lists(gaps, min_size=1, max_size=60).map(lambda g: list(itertools.accumulate(g)))


class TestAddRestartProperties:
    @settings(max_examples=300, deadline=None)
    @given(times=schedules, intensity=intensities)
    def test_history_is_sorted_in_the_window_and_bounded(self, times, intensity):
        """After every restart: sorted, every entry within `within` of now, now last,
        at most max_restarts + 1 entries."""
        for now, (history, _) in zip(times, replay(times, intensity), strict=True):
            assert list(history) == sorted(history)
            assert all(now - t <= intensity.within for t in history)
            assert history[-1] == now
            assert len(history) <= intensity.max_restarts + 1

    @settings(max_examples=300, deadline=None)
    @given(times=schedules, intensity=intensities)
    def test_exceeded_iff_more_than_max_restarts_in_the_window_ending_now(self, times, intensity):
        """`exceeded` agrees with counting every restart so far whose age is <= within,
        and the history is exactly the newest of those."""
        for i, (history, exceeded) in enumerate(replay(times, intensity)):
            now = times[i]
            in_window = [t for t in times[: i + 1] if now - t <= intensity.within]
            assert exceeded == (len(in_window) > intensity.max_restarts)
            assert history == tuple(in_window[-(intensity.max_restarts + 1) :])


class TestRestartWindow:
    @settings(max_examples=300, deadline=None)
    @given(times=schedules, intensity=intensities)
    def test_agrees_with_add_restart_after_every_restart(self, times, intensity):
        """The supervisor's in-place window gives add_restart's answer and history."""
        window = RestartWindow(intensity)
        for now, (history, exceeded) in zip(times, replay(times, intensity), strict=True):
            assert window.add(now) == exceeded
            assert window.history == history

    def test_refuses_a_clock_that_goes_back(self):
        window = RestartWindow(DEFAULT_INTENSITY)
        window.add(5.0)
        with pytest.raises(ValueError):
            window.add(4.0)
