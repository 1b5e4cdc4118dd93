"""Backoff between restarts: exponential, capped, with downward jitter.

The n-th consecutive restart of a child (attempt 1, 2, ...) waits

    base = min(max_delay, initial * factor ** (attempt - 1))
    delay = base * u,  u uniform in (1 - jitter, 1]

Jitter only shortens the wait, so `max_delay` is a hard cap and a restart is
never later than the undithered schedule; with `jitter=1` it is "full jitter"
(anywhere in (0, base]). The draw comes from a `random.Random` the caller
passes in, one draw per call whatever the policy, so the n-th delay of a child
depends only on its generator's seed and n: tests and replays agree.
`jitter_rng(seed, name=child)` gives each child its own generator derived from
the system seed with a stable hash (not Python's salted `hash()`).

When the attempt counter goes back to 1 (e.g. after a child ran long enough)
is the supervisor's decision, not the policy's.
"""

from __future__ import annotations

import hashlib
import math
import random

import attrs

from exoarmur.supervisors import _checks


@attrs.frozen(kw_only=True)
class BackoffPolicy:
    """Seconds to wait before a restart; `NO_BACKOFF` restarts at once (OTP)."""

    initial: float = attrs.field(default=1.0, converter=_checks.real(minimum=0.0, inclusive=True))
    factor: float = attrs.field(default=2.0, converter=_checks.real(minimum=1.0, inclusive=True))
    max_delay: float = attrs.field(
        default=30.0, converter=_checks.real(minimum=0.0, inclusive=True)
    )
    jitter: float = attrs.field(
        default=0.2, converter=_checks.real(minimum=0.0, inclusive=True, maximum=1.0)
    )

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.initial:
            raise _checks.invalid(
                "BackoffPolicy",
                "max_delay",
                f"must be >= initial ({self.initial!r}), got {self.max_delay!r}",
            )

    def base_delay(self, attempt: int) -> float:
        """The capped exponential delay before jitter (attempt 1 waits `initial`)."""
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise ValueError(f"attempt must be an int >= 1, got {_checks.shown(attempt)}")
        try:
            raw = self.initial * self.factor ** (attempt - 1)
        except OverflowError:  # factor ** huge: far past any cap
            raw = math.inf
        return min(self.max_delay, raw)

    def delay(self, attempt: int, *, rng: random.Random) -> float:
        """Seconds to wait before restart number `attempt` (1-based). Draws exactly
        one value from `rng`, so replays with the same generator agree."""
        base = self.base_delay(attempt)
        return base * (1.0 - self.jitter * rng.random())


NO_BACKOFF = BackoffPolicy(initial=0.0, factor=1.0, max_delay=0.0, jitter=0.0)


def jitter_rng(seed: int, *, name: str) -> random.Random:
    """A generator for one child, the same for the same (seed, name) in every
    process and Python version: seeded from a BLAKE2b digest of both."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {_checks.shown(seed)}")
    if not isinstance(name, str):
        raise ValueError(f"name must be a str, got {_checks.shown(name)}")
    digest = hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))
