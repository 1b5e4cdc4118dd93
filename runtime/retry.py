"""RetryPolicy: bounded attempts, capped exponential backoff, jitter that is a
pure function of (idempotency key, attempt), and a deadline no retry outlives.

    policy = RetryPolicy(max_attempts=4, initial=0.1, factor=2.0, max_delay=2.0)
    value = await policy.run(
        lambda attempt: kv.ask(KvGet(name), idempotency_key=key),
        system=system,
        key=key,
    )

The schedule. The wait after failed attempt n (n = 1 .. max_attempts - 1) is

    base(n)  = min(max_delay, initial * factor ** (n - 1))
    delay(n) = base(n) * (1 - jitter * u(key, n))      u in [0, 1)

where u is read off blake2b(f"{key}:{n}"), never Python's salted hash(): two
processes and a replay compute the same waits, and different keys spread out
(no thundering herd). Every delay lies in ((1 - jitter) * base(n), base(n)],
so within (0, max_delay]. jitter=0.5 is "equal jitter", 1.0 is "full jitter".

What is retried (bounded, and only under an idempotency key: docs/rules.md,
R2): an ExoarmurError whose code is in `retryable`. The default, DEFAULT_RETRYABLE:
- every TIMEOUT_<category> code: the callee started and its dependency was
  slow; a later attempt may be faster.
- OVERLOAD_MAILBOX_FULL, OVERLOAD_SHED, RATE_LIMITED: the receiver said "not
  now" (the Overloaded family); backing off is what it asks for.
Not retried by default, but a policy may list them:
- DEADLINE_EXCEEDED: the deadline of that call is gone. Only worth listing when
  the operation sets a shorter deadline of its own than the retry's.
- BREAKER_OPEN: the supervisor chose to fail fast for a cooldown that is usually
  longer than a sub-second backoff; retrying would burn the attempts against the
  breaker and race other callers for its HALF_OPEN probes. List it with a
  max_delay beyond the cooldown if waiting the breaker out is wanted.
- ACTOR_CRASHED, ACTOR_STOPPED, ESCALATED, KV_CONFLICT: more often a bug, a
  poison input or a lost race that needs a fresh read than a passing fault.
Never (refused at construction), NEVER_RETRYABLE: bad input, tenant mismatch,
unknown actor, gates (kill switch, approval), a duplicate (the work already
happened), shutdown, FATAL, and RETRY_EXHAUSTED itself (a retry of a retry
multiplies the bound).

The deadline: `deadline=` if given, else the running handler's envelope
deadline, else now + the DEFAULT timeout of the system's policy; inside a
handler never later than the handler's own (deadlines only shrink). Every
attempt runs in a cancel scope at that deadline, and no wait is begun that
would end at or past it. A retry that begins at or after its deadline makes no
attempt and fails DEADLINE_EXCEEDED; one without an idempotency key, or with a
non-finite deadline, fails ENVELOPE_INVALID.

Audit: each failed attempt that will be retried emits one "retry" event (its
code, attempt number, idempotency key, path); giving up emits one
RETRY_EXHAUSTED through `system.failure`. A non-retryable coded error passes
through as is (it was audited where it was raised), an uncoded exception
propagates unchanged (the kernel reports crashes), and cancellation from
outside is never caught.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs

from exoarmur.runtime.audit import AuditEvent
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.errors import ExoarmurError, InvalidInput, error_for
from exoarmur.runtime.timeouts import TimeoutCategory

if TYPE_CHECKING:
    from exoarmur.runtime.system import ActorSystem

T = TypeVar("T")

DEFAULT_RETRYABLE: frozenset[ReasonCode] = frozenset(
    c for c in ReasonCode if c.startswith("TIMEOUT_")
) | {ReasonCode.OVERLOAD_MAILBOX_FULL, ReasonCode.OVERLOAD_SHED, ReasonCode.RATE_LIMITED}

NEVER_RETRYABLE: frozenset[ReasonCode] = frozenset(
    {
        ReasonCode.ENVELOPE_INVALID,
        ReasonCode.CONFIG_INVALID,
        ReasonCode.ACTOR_NAME_TAKEN,
        ReasonCode.TENANT_MISMATCH,
        ReasonCode.ACTOR_NOT_FOUND,
        ReasonCode.KILL_SWITCH_ACTIVE,
        ReasonCode.APPROVAL_REQUIRED,
        ReasonCode.DUPLICATE_SUPPRESSED,
        ReasonCode.SHUTTING_DOWN,
        ReasonCode.RETRY_EXHAUSTED,
        ReasonCode.FATAL,
    }
)


def _invalid(detail: str) -> InvalidInput:
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"retry policy: {detail}")


def _codes(value: Iterable[ReasonCode | str]) -> frozenset[ReasonCode]:
    if isinstance(value, str):
        raise _invalid(f"retryable must be a collection of codes, got {value!r}")
    try:
        return frozenset(ReasonCode(c) for c in value)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"retryable: {exc}") from None


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(f"{name} must be a finite number, got {value!r}")
    return float(value)


# Validators run in field order, after every field is set.
def _check_max_attempts(_policy: RetryPolicy, _attribute: Any, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"max_attempts must be an int >= 1, got {value!r}")


def _check_initial(_policy: RetryPolicy, _attribute: Any, value: object) -> None:
    if _finite(value, "initial") <= 0:
        raise _invalid(f"initial must be > 0, got {value!r}")


def _check_factor(_policy: RetryPolicy, _attribute: Any, value: object) -> None:
    if _finite(value, "factor") < 1:
        raise _invalid(f"factor must be >= 1, got {value!r}")


def _check_max_delay(policy: RetryPolicy, _attribute: Any, value: object) -> None:
    if _finite(value, "max_delay") < policy.initial:
        raise _invalid(f"max_delay ({value!r}) must be >= initial ({policy.initial!r})")


def _check_jitter(_policy: RetryPolicy, _attribute: Any, value: object) -> None:
    if not 0 <= _finite(value, "jitter") <= 1:
        raise _invalid(f"jitter must be within [0, 1], got {value!r}")


def _check_retryable(_policy: RetryPolicy, _attribute: Any, value: frozenset[ReasonCode]) -> None:
    never = value & NEVER_RETRYABLE
    if never:
        raise _invalid(f"never retryable: {', '.join(sorted(never))}")


def _unit(key: str, attempt: int) -> float:
    """A number in [0, 1) that depends only on (key, attempt)."""
    digest = hashlib.blake2b(f"{key}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@attrs.frozen(kw_only=True)
class RetryPolicy:
    max_attempts: int = attrs.field(default=3, validator=_check_max_attempts)  # >= 1, the first included
    initial: float = attrs.field(default=0.1, validator=_check_initial)  # seconds > 0: base of the first wait
    factor: float = attrs.field(default=2.0, validator=_check_factor)  # >= 1: growth of the base per attempt
    max_delay: float = attrs.field(default=5.0, validator=_check_max_delay)  # >= initial: caps every wait
    jitter: float = attrs.field(default=0.5, validator=_check_jitter)  # within [0, 1]: share randomised
    retryable: frozenset[ReasonCode] = attrs.field(
        default=DEFAULT_RETRYABLE,
        converter=_codes,
        validator=_check_retryable,
        repr=lambda codes: "{" + ", ".join(sorted(codes)) + "}",
    )  # disjoint from NEVER_RETRYABLE

    # ---- the schedule (pure) ---------------------------------------------

    def delay(self, *, key: str, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (>= 1) of the work `key`."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be an int >= 1, got {attempt!r}")
        steps = attempt - 1
        # Compared in log space: factor ** steps overflows a float long before
        # an int attempt count runs out.
        if steps * math.log(self.factor) >= math.log(self.max_delay / self.initial):
            base = self.max_delay
        else:
            base = min(self.initial * self.factor**steps, self.max_delay)
        return base * (1.0 - self.jitter * _unit(key, attempt))

    def delays(self, key: str) -> list[float]:
        """The whole schedule for `key`: max_attempts - 1 waits, in order."""
        return [self.delay(key=key, attempt=n) for n in range(1, self.max_attempts)]

    # ---- running ------------------------------------------------------------

    async def run(
        self,
        operation: Callable[[int], Awaitable[T]],
        *,
        system: ActorSystem,
        key: str,
        deadline: float | None = None,
        path: str | None = None,
    ) -> T:
        """`await operation(attempt)` for attempt = 1, 2, ... until it returns, raises
        something not retryable, or the attempts or the deadline run out
        (RetryExhausted, chained from the last error). `path` (default: the
        running handler's actor) names who retries in the audit events."""
        context = CURRENT.get()
        parent = context.envelope if context is not None else None
        if path is None and context is not None:
            path = context.path
        if not isinstance(key, str) or not key:
            raise system.failure(
                "rejected",
                ReasonCode.ENVELOPE_INVALID,
                path=path,
                detail=f"a retry needs a non-empty idempotency key, got {key!r}",
            )
        if parent is not None and (deadline is None or parent.deadline < deadline):
            deadline = parent.deadline  # deadlines only shrink as work nests
        elif deadline is None:
            deadline = system.now() + system.timeouts[TimeoutCategory.DEFAULT]
        if not math.isfinite(deadline):  # there is no "wait forever"
            raise system.failure(
                "rejected", ReasonCode.ENVELOPE_INVALID, path=path, detail=f"retry deadline {deadline!r}"
            )
        if deadline <= system.now():
            raise system.failure(
                "deadline",
                ReasonCode.DEADLINE_EXCEEDED,
                path=path,
                detail=f"retry of {key!r} began at or after its deadline; no attempt made",
            )

        attempt = 0
        while True:
            attempt += 1
            error: ExoarmurError | None = None
            with anyio.CancelScope(deadline=deadline) as scope:
                try:
                    result = await operation(attempt)
                except ExoarmurError as exc:
                    error = exc
            if scope.cancel_called:
                # Our deadline fired during the attempt: whatever it did after
                # that is void, as for a handler that overran.
                cut = error_for(ReasonCode.DEADLINE_EXCEEDED, f"attempt {attempt} cut at the retry deadline")
                cut.__cause__ = error
                raise self._exhausted(system, key, path, attempt, cut, "the deadline passed") from cut
            if error is None:
                return result
            if error.code not in self.retryable:
                raise error
            if attempt >= self.max_attempts:
                raise self._exhausted(system, key, path, attempt, error, "no attempts left") from error
            wait = self.delay(key=key, attempt=attempt)
            now = system.now()
            if now + wait >= deadline:
                why = f"waiting {wait:.6g}s would end at or past the deadline"
                raise self._exhausted(system, key, path, attempt, error, why) from error
            system.audit.emit(
                AuditEvent(
                    kind="retry",
                    code=error.code,
                    at=now,
                    path=path,
                    idempotency_key=key,
                    attempt=attempt,
                    detail=f"next attempt in {wait:.6g}s",
                )
            )
            await anyio.sleep(wait)

    @staticmethod
    def _exhausted(
        system: ActorSystem, key: str, path: str | None, attempts: int, last: ExoarmurError, why: str
    ) -> ExoarmurError:
        return system.failure(
            "retry_exhausted",
            ReasonCode.RETRY_EXHAUSTED,
            path=path,
            detail=f"key {key!r}: {attempts} attempt(s), last {last.code}; {why}",
            idempotency_key=key,
            attempt=attempts,
        )
