"""Restart intensity: how many restarts a supervisor tolerates before it gives up.

As in OTP's supervisor: if more than `max_restarts` restarts happen within
`within` seconds, the supervisor stops restarting, terminates its children and
fails to its parent (`ESCALATED`). Restarts are counted per supervisor, over all
its children.

- `max_restarts=0`: the first restart already exceeds (no restart is tolerated).
- `RestartIntensity(3, 5.0)`: three restarts within 5 s are fine; a fourth
  inside the same 5 s exceeds.
- The window is closed: a restart exactly `within` seconds before `now` still
  counts (`now - t <= within`). This is OTP's rule: `supervisor:add_restart/3`
  keeps `R >= Now - Period` (older OTP: `Now =< Then + Period`). OTP reads whole
  seconds (`erlang:monotonic_time(1)`); we use the runtime clock's float seconds.

`add_restart` is pure: it states the rule. `RestartWindow` is the same rule
with a deque, O(1) amortised per restart, which is what a supervisor keeps:
copying a tuple of every restart in the window costs O(n) per crash, and a
permissive intensity lets n reach thousands (tested to agree with `add_restart`).
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import attrs

from exoarmur.supervisors import _checks

RestartHistory = tuple[float, ...]
"""Restart times, oldest first, as `add_restart` returns them."""


@attrs.frozen
class RestartIntensity:
    """More than `max_restarts` restarts within `within` seconds is too many."""

    max_restarts: int = attrs.field(converter=_checks.count(minimum=0))
    within: float = attrs.field(converter=_checks.real(minimum=0.0, inclusive=False))


# OTP's default is 1 restart in 5 s; Elixir's Supervisor uses 3 in 5 s, which
# lets a child survive a short burst (a dependency flapping) without escalating.
DEFAULT_INTENSITY = RestartIntensity(3, 5.0)


def add_restart(
    history: RestartHistory, *, now: float, intensity: RestartIntensity
) -> tuple[RestartHistory, bool]:
    """Record a restart at `now`.

    Returns the new history (restart times in the window ending at `now`, oldest
    first, `now` last; at most `max_restarts + 1` of them, the newest) and whether
    the intensity is exceeded, i.e. more than `max_restarts` restarts in the window.
    `history` is what the previous call returned (empty at first); `now` must not
    be earlier than its newest entry (ValueError: the clock is monotonic).
    """
    now = _checks.instant(now, not_before=history[-1] if history else -float("inf"))
    kept = history[in_window_from(history, now=now, within=intensity.within) :]
    # Invariant: len(history) <= max_restarts + 1. Dropping older entries never
    # changes a later answer: a later window that still holds a dropped restart
    # also holds the max_restarts + 1 newer ones, so it is exceeded anyway.
    new = (*kept, now)[-(intensity.max_restarts + 1) :]
    return new, len(new) > intensity.max_restarts


def in_window_from(history: RestartHistory, *, now: float, within: float) -> int:
    """Index of the oldest entry of sorted `history` still in the window
    (`now - t <= within`): a bisection, then the exact test at the boundary,
    so float rounding cannot move a restart across it."""
    start = bisect.bisect_left(history, now - within)
    while start > 0 and now - history[start - 1] <= within:
        start -= 1
    while start < len(history) and now - history[start] > within:
        start += 1
    return start


class RestartWindow:
    """`add_restart`'s history, kept in place: `add(now)` answers as
    `add_restart` would for the same sequence of calls."""

    __slots__ = ("intensity", "_times")

    def __init__(self, intensity: RestartIntensity) -> None:
        self.intensity = intensity
        # Invariant: sorted, all within the window of the last add, at most
        # max_restarts + 1 entries (the deque's maxlen drops the oldest).
        self._times: deque[float] = deque(maxlen=intensity.max_restarts + 1)

    def add(self, now: float) -> bool:
        """Record a restart at `now`; True if the intensity is exceeded."""
        times = self._times
        if not (type(now) is float and (times[-1] if times else -math.inf) <= now < math.inf):
            # Not a plain reading: converted (an int) or refused, with its reason.
            now = _checks.instant(now, not_before=times[-1] if times else -math.inf)
        within = self.intensity.within
        while times and now - times[0] > within:
            times.popleft()
        times.append(now)
        return len(times) > self.intensity.max_restarts

    @property
    def history(self) -> RestartHistory:
        return tuple(self._times)
