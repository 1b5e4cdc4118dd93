"""One root exception, one subclass per family of codes.

Each subclass also subclasses the builtin it resembles (a deadline is a
`TimeoutError`, a missing actor a `LookupError`), carries exactly one `code`,
and accepts only the codes of its family. `error_for(code, ...)` builds the right
class for a code, so a code read off the wire becomes the same exception a local
caller would have seen.
"""

from __future__ import annotations

from typing import ClassVar

from exoarmur.runtime.codes import TIMEOUT_CODES, ReasonCode


class ExoarmurError(Exception):
    """Root of every coded failure. `code` is stable; `detail` is for humans."""

    codes: ClassVar[frozenset[ReasonCode]] = frozenset()

    def __init__(self, code: ReasonCode, detail: str = "") -> None:
        if type(code) is not ReasonCode:
            code = ReasonCode(code)
        if code not in self.codes:
            raise ValueError(f"{type(self).__name__} cannot carry code {code}")
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        # Set once its audit event is emitted (ActorSystem.failure), so the
        # runtime never audits the same failure twice.
        self.audited = False

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else str(self.code)

    def __reduce__(self):  # picklable with its code, like attrs' exceptions
        return (type(self), (self.code, self.detail))


class DeadlineExceeded(ExoarmurError, TimeoutError):
    """The envelope's deadline passed (queued, waiting for room, or while handled)."""

    codes = TIMEOUT_CODES


class Overloaded(ExoarmurError):
    """The receiver has no room: the sender must slow down or retry later."""

    codes = frozenset(
        {
            ReasonCode.OVERLOAD_MAILBOX_FULL,
            ReasonCode.OVERLOAD_SHED,
            ReasonCode.RATE_LIMITED,
            ReasonCode.OVERLOAD_TENANT_QUOTA,
            ReasonCode.OVERLOAD_AUDIT_BUFFER,
            ReasonCode.NATS_SLOW_CONSUMER,
        }
    )


class BreakerOpen(ExoarmurError, ConnectionError):
    """The supervisor's circuit breaker for the target is open."""

    codes = frozenset({ReasonCode.BREAKER_OPEN})


class RetryExhausted(ExoarmurError):
    """Every attempt a retry policy allowed has failed."""

    codes = frozenset({ReasonCode.RETRY_EXHAUSTED})


class ActorCrashed(ExoarmurError, RuntimeError):
    """The handler raised while handling this envelope."""

    codes = frozenset({ReasonCode.ACTOR_CRASHED, ReasonCode.ESCALATED})


class ActorNotFound(ExoarmurError, LookupError):
    """No actor lives at that path."""

    codes = frozenset({ReasonCode.ACTOR_NOT_FOUND, ReasonCode.KV_BUCKET_NOT_FOUND, ReasonCode.INTENT_NOT_FOUND})


class ActorUnavailable(ExoarmurError):
    """The actor (or the whole system) stopped, or is stopping, and takes no more mail."""

    codes = frozenset({ReasonCode.ACTOR_STOPPED, ReasonCode.SHUTTING_DOWN})


class InvalidInput(ExoarmurError, ValueError):
    """The input itself is wrong: no retry can fix it."""

    codes = frozenset(
        {
            ReasonCode.ENVELOPE_INVALID,
            ReasonCode.ACTOR_NAME_TAKEN,
            ReasonCode.CONFIG_INVALID,
            ReasonCode.AUDIT_CHAIN_BROKEN,
            ReasonCode.REPLAY_DIVERGED,
            ReasonCode.INTENT_INVALID,
            ReasonCode.EXECUTION_TYPE_UNKNOWN,
            ReasonCode.CONTROL_INVALID,
        }
    )


class TenantMismatch(ExoarmurError, PermissionError):
    """The envelope's tenant is not the receiving actor's tenant."""

    codes = frozenset({ReasonCode.TENANT_MISMATCH})


class DuplicateSuppressed(ExoarmurError):
    """An envelope with this idempotency key was already accepted."""

    codes = frozenset({ReasonCode.DUPLICATE_SUPPRESSED})


class Denied(ExoarmurError, PermissionError):
    """A gate refused the work."""

    codes = frozenset(
        {
            ReasonCode.KILL_SWITCH_ACTIVE,
            ReasonCode.APPROVAL_REQUIRED,
            ReasonCode.APPROVAL_DENIED,
            ReasonCode.APPROVAL_EXPIRED,
            ReasonCode.NATS_PERMISSION_DENIED,
            ReasonCode.NOT_EXPORTED,
        }
    )


class Conflict(ExoarmurError):
    """A compare-and-set lost against a newer revision."""

    codes = frozenset({ReasonCode.KV_CONFLICT, ReasonCode.LEASE_LOST, ReasonCode.INTENT_STATE_INVALID})


class DependencyFailed(ExoarmurError, ConnectionError):
    """A dependency (NATS, JetStream) is unreachable or answered with an error."""

    codes = frozenset(
        {
            ReasonCode.NATS_DISCONNECTED,
            ReasonCode.NATS_NO_RESPONDERS,
            ReasonCode.LEASE_LAPSING,
            ReasonCode.JETSTREAM_UNAVAILABLE,
            ReasonCode.NATS_API_ERROR,
        }
    )


class ExecutionFailed(ExoarmurError):
    """An execution type's apply or revert failed, or it could not say whether it took effect."""

    codes = frozenset({ReasonCode.EXECUTION_FAILED, ReasonCode.RECONCILE_UNKNOWN})


class Fatal(ExoarmurError):
    """The process cannot go on (or, STATE_LOCKED, cannot start: another owns its state)."""

    codes = frozenset({ReasonCode.FATAL, ReasonCode.STATE_LOCKED})


_FAMILIES: tuple[type[ExoarmurError], ...] = (
    DeadlineExceeded,
    Overloaded,
    BreakerOpen,
    RetryExhausted,
    ActorCrashed,
    ActorNotFound,
    ActorUnavailable,
    InvalidInput,
    TenantMismatch,
    DuplicateSuppressed,
    Denied,
    Conflict,
    ExecutionFailed,
    DependencyFailed,
    Fatal,
)
_CLASS_OF_CODE: dict[ReasonCode, type[ExoarmurError]] = {
    code: family for family in _FAMILIES for code in family.codes
}


def error_for(code: ReasonCode | str, detail: str = "") -> ExoarmurError:
    """The exception a caller sees for `code` (every code has exactly one class)."""
    if type(code) is not ReasonCode:
        code = ReasonCode(code)
    return _CLASS_OF_CODE[code](code, detail)
