"""The circuit breaker a supervisor keeps for one child spec.

It counts the child's crashes and the dependency failures the child reports
(`record_failure`), and decides whether work may reach the child (`admit`).
The supervisor owns it, so its state survives the child's restarts. Every state
change is returned as a `Transition`, which the supervisor turns into one audit
event (`Transition.kind`: BREAKER_OPENED, BREAKER_HALF_OPEN, BREAKER_CLOSED).

States (a transition table; anything else is a bug, RuntimeError):

    CLOSED    -> OPEN       `threshold` failures within `window` seconds
    OPEN      -> HALF_OPEN  `poll` at or after `reopen_at` (the cooldown ended)
    HALF_OPEN -> CLOSED     `half_open_probes` successes
    HALF_OPEN -> OPEN       any failure; the cooldown grows by `cooldown_factor`,
                            capped at `max_cooldown`

Further rules of this breaker:
- Time only moves the breaker in `poll`: `admit` never changes state, so every
  transition is returned to the supervisor (and audited). The supervisor calls
  `poll` when its `reopen_at` timer fires, and may call it before `admit`.
- The failure window belongs to the current state: it is emptied at every
  transition, so `failures_in_window` of a transition counts the failures seen
  in the state it leaves (the one that caused it included) and a closed breaker
  starts afresh. A failure is in the window while `now - t <= window`, the same
  closed window as restart intensity.
- While OPEN, failures (late reports) are counted but change nothing; successes
  and probe releases are ignored. While CLOSED, a success changes nothing.
- HALF_OPEN admits at most `half_open_probes` probes in flight; each
  `record_success` or `release_probe` frees one slot. Any success counts
  towards closing (the supervisor decides what a success is).
- Closing resets the cooldown to the policy's `cooldown`.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from exoarmur.runtime import ReasonCode
from exoarmur.supervisors import _checks


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """When a child's breaker opens, and for how long."""

    threshold: int = attrs.field(default=5, converter=_checks.count(minimum=1))
    window: float = attrs.field(default=60.0, converter=_checks.real(minimum=0.0, inclusive=False))
    cooldown: float = attrs.field(
        default=10.0, converter=_checks.real(minimum=0.0, inclusive=False)
    )
    cooldown_factor: float = attrs.field(
        default=2.0, converter=_checks.real(minimum=1.0, inclusive=True)
    )
    max_cooldown: float = attrs.field(
        default=300.0, converter=_checks.real(minimum=0.0, inclusive=False)
    )
    half_open_probes: int = attrs.field(default=1, converter=_checks.count(minimum=1))

    def __attrs_post_init__(self) -> None:
        if self.max_cooldown < self.cooldown:
            raise _checks.invalid(
                "BreakerPolicy",
                "max_cooldown",
                f"must be >= cooldown ({self.cooldown!r}), got {self.max_cooldown!r}",
            )


class BreakerState(enum.StrEnum):
    CLOSED = "closed"  # work goes through; failures are counted
    OPEN = "open"  # work fails fast with BREAKER_OPEN; the child is not restarted
    HALF_OPEN = "half_open"  # a bounded number of probes go through


TRANSITIONS: Mapping[BreakerState, frozenset[BreakerState]] = MappingProxyType(
    {
        BreakerState.CLOSED: frozenset({BreakerState.OPEN}),
        BreakerState.OPEN: frozenset({BreakerState.HALF_OPEN}),
        BreakerState.HALF_OPEN: frozenset({BreakerState.CLOSED, BreakerState.OPEN}),
    }
)

# The audit event kind of a transition, by the state it enters (a string, not a code).
AUDIT_KINDS: Mapping[BreakerState, str] = MappingProxyType(
    {
        BreakerState.OPEN: "BREAKER_OPENED",
        BreakerState.HALF_OPEN: "BREAKER_HALF_OPEN",
        BreakerState.CLOSED: "BREAKER_CLOSED",
    }
)


def check_transition(from_state: BreakerState, to_state: BreakerState) -> None:
    """Raise RuntimeError (a bug) unless the table allows `from_state -> to_state`."""
    if to_state not in TRANSITIONS[BreakerState(from_state)]:
        raise RuntimeError(f"illegal breaker transition {from_state} -> {to_state}")


@attrs.frozen(kw_only=True)
class Transition:
    """One state change, with what caused it; the supervisor audits it as `kind`.

    `reason` is the code of the failure that opened the breaker (e.g.
    ACTOR_CRASHED, TIMEOUT_KV_GET); for HALF_OPEN and CLOSED it is BREAKER_OPEN,
    the code the breaker stops (or starts) failing sends with. `cooldown` is the
    cooldown in force after the transition."""

    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: ReasonCode
    failures_in_window: int
    cooldown: float

    def __attrs_post_init__(self) -> None:
        check_transition(self.from_state, self.to_state)

    @property
    def kind(self) -> str:
        return AUDIT_KINDS[self.to_state]


@attrs.frozen(kw_only=True)
class BreakerStatistics:
    state: BreakerState
    failures_in_window: int  # in the current state, as of the latest `now` seen
    total_failures: int  # every failure ever recorded, in any state
    opens: int  # transitions into OPEN (first openings and re-openings)
    cooldown: float  # the cooldown in force (the next opening's, when CLOSED)
    probes_in_flight: int
    probe_successes: int  # successes in the current HALF_OPEN period
    reopen_at: float | None


class Breaker:
    """Mutable; one per child spec that asks for it, owned by one supervisor."""

    __slots__ = (
        "policy",
        "_state",
        "_failures",
        "_total_failures",
        "_opens",
        "_cooldown",
        "_reopen_at",
        "_probes_in_flight",
        "_probe_successes",
        "_latest",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        if not isinstance(policy, BreakerPolicy):
            raise TypeError(f"Breaker needs a BreakerPolicy, got {_checks.shown(policy)}")
        self.policy = policy
        self._state = BreakerState.CLOSED
        # Failure times in the current state, oldest first; emptied at every
        # transition. Invariant: len <= threshold (CLOSED opens when it gets there;
        # OPEN keeps only the newest `threshold`).
        self._failures: deque[float] = deque(maxlen=policy.threshold)
        self._total_failures = 0
        self._opens = 0
        # Invariant: policy.cooldown <= _cooldown <= policy.max_cooldown.
        self._cooldown = policy.cooldown
        # Invariant: not None iff the state is OPEN.
        self._reopen_at: float | None = None
        # Invariant: 0 <= _probes_in_flight <= half_open_probes; both are 0
        # unless the state is HALF_OPEN.
        self._probes_in_flight = 0
        self._probe_successes = 0
        # The latest `now` seen: the clock never goes backwards.
        self._latest = -math.inf

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def reopen_at(self) -> float | None:
        """When OPEN: the time the cooldown ends (`poll` then moves to HALF_OPEN)."""
        return self._reopen_at

    # ---- events ---------------------------------------------------------------

    def record_failure(self, *, now: float, code: ReasonCode) -> Transition | None:
        """The child crashed, or reported a dependency failure with `code`."""
        code = ReasonCode(code)
        now = self._advance(now)
        self._total_failures += 1
        self._failures.append(now)
        if self._state is BreakerState.CLOSED:
            if self._in_window(now) >= self.policy.threshold:
                return self._open(now, code)
        elif self._state is BreakerState.HALF_OPEN:
            self._cooldown = min(
                self._cooldown * self.policy.cooldown_factor, self.policy.max_cooldown
            )
            return self._open(now, code)
        return None

    def record_success(self, *, now: float) -> Transition | None:
        """Work the child did succeeded. In HALF_OPEN it frees a probe slot and,
        at the `half_open_probes`-th success, closes the breaker."""
        now = self._advance(now)
        if self._state is not BreakerState.HALF_OPEN:
            return None
        self._probes_in_flight = max(0, self._probes_in_flight - 1)
        self._probe_successes += 1
        if self._probe_successes < self.policy.half_open_probes:
            return None
        self._cooldown = self.policy.cooldown
        return self._move(BreakerState.CLOSED, now, ReasonCode.BREAKER_OPEN)

    def release_probe(self, *, now: float) -> None:
        """An admitted probe ended without success or failure (e.g. its deadline
        passed before the child took it): free its slot, count nothing."""
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    def poll(self, *, now: float) -> Transition | None:
        """Let time act: an OPEN breaker whose cooldown ended goes HALF_OPEN."""
        now = self._advance(now)
        if self._state is not BreakerState.OPEN:
            return None
        assert self._reopen_at is not None
        if now < self._reopen_at:
            return None
        return self._move(BreakerState.HALF_OPEN, now, ReasonCode.BREAKER_OPEN)

    def admit(self, *, now: float) -> bool:
        """May one envelope go to the child? CLOSED: yes. OPEN: no (even past
        `reopen_at`, until `poll`). HALF_OPEN: yes while fewer than
        `half_open_probes` probes are in flight; a yes takes a slot."""
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            return False
        if self._probes_in_flight < self.policy.half_open_probes:
            self._probes_in_flight += 1
            return True
        return False

    def statistics(self) -> BreakerStatistics:
        """A snapshot, with the window as of the latest `now` the breaker was given."""
        return BreakerStatistics(
            state=self._state,
            failures_in_window=sum(
                1 for t in self._failures if self._latest - t <= self.policy.window
            ),
            total_failures=self._total_failures,
            opens=self._opens,
            cooldown=self._cooldown,
            probes_in_flight=self._probes_in_flight,
            probe_successes=self._probe_successes,
            reopen_at=self._reopen_at,
        )

    # ---- internals --------------------------------------------------------------

    def _advance(self, now: float) -> float:
        now = _checks.instant(now, not_before=self._latest)
        self._latest = now
        return now

    def _in_window(self, now: float) -> int:
        window = self.policy.window
        failures = self._failures
        while failures and now - failures[0] > window:
            failures.popleft()
        return len(failures)

    def _open(self, now: float, code: ReasonCode) -> Transition:
        transition = self._move(BreakerState.OPEN, now, code)
        self._opens += 1
        self._reopen_at = now + self._cooldown
        return transition

    def _move(self, to_state: BreakerState, now: float, reason: ReasonCode) -> Transition:
        transition = Transition(  # raises RuntimeError for a move the table forbids
            from_state=self._state,
            to_state=to_state,
            at=now,
            reason=reason,
            failures_in_window=self._in_window(now),
            cooldown=self._cooldown,
        )
        self._state = to_state
        self._failures.clear()
        self._reopen_at = None
        self._probes_in_flight = 0
        self._probe_successes = 0
        return transition
