"""nats-py's exceptions as reason codes: the one place that knows their classes.

`coded(exc, timeout=...)` gives the coded error a caller sees, or None for an
exception that is not NATS's (a bug: the actor crashes). Which codes count as a
failed dependency (for the supervisor's breaker) is `DEPENDENCY_CODES`.
"""

from __future__ import annotations

from nats import errors as nats_errors
from nats.js import errors as js_errors

from exoarmur.runtime import TIMEOUT_CODES, ExoarmurError, ReasonCode, error_for

__all__ = ["DEPENDENCY_CODES", "coded"]

# JetStream's "wrong last sequence" API error codes: a lost compare-and-set
# (10164: the same, for an expected sequence given as a constant).
WRONG_LAST_SEQUENCE = frozenset({10071, 10164})

DEPENDENCY_CODES = frozenset({ReasonCode.NATS_DISCONNECTED, ReasonCode.JETSTREAM_UNAVAILABLE}) | TIMEOUT_CODES

_DISCONNECTED = (
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.ConnectionDrainingError,
    nats_errors.OutboundBufferLimitError,
    nats_errors.StaleConnectionError,
    nats_errors.NoServersError,
    nats_errors.UnexpectedEOF,
    ConnectionError,
)


def coded(exc: BaseException, *, timeout: ReasonCode) -> ExoarmurError | None:
    """The coded error for a nats-py exception; `timeout` is the operation's
    timeout code (TIMEOUT_KV_PUT for a put)."""
    code: ReasonCode | None = None
    if isinstance(exc, ExoarmurError):
        return exc
    if isinstance(exc, js_errors.KeyWrongLastSequenceError):
        code = ReasonCode.KV_CONFLICT
    elif isinstance(exc, js_errors.APIError) and exc.err_code in WRONG_LAST_SEQUENCE:
        code = ReasonCode.KV_CONFLICT
    elif isinstance(exc, js_errors.BucketNotFoundError):
        code = ReasonCode.KV_BUCKET_NOT_FOUND
    elif isinstance(exc, (js_errors.ServiceUnavailableError, js_errors.NoStreamResponseError)):
        # JetStream's 503 (its API, or a publish no stream took): no leader in a
        # failover, JetStream down, or no stream for the subject.
        code = ReasonCode.JETSTREAM_UNAVAILABLE
    elif isinstance(exc, nats_errors.NoRespondersError):
        code = ReasonCode.NATS_NO_RESPONDERS  # a core request nobody listens to
    elif isinstance(exc, TimeoutError):  # nats' TimeoutError and FlushTimeoutError included
        code = timeout
    elif isinstance(exc, _DISCONNECTED):
        code = ReasonCode.NATS_DISCONNECTED
    elif isinstance(exc, js_errors.APIError):
        code = ReasonCode.NATS_API_ERROR
    elif isinstance(exc, nats_errors.Error):
        code = ReasonCode.NATS_PERMISSION_DENIED if "permissions violation" in str(exc) else ReasonCode.NATS_API_ERROR
    if code is None:
        return None
    return error_for(code, f"{type(exc).__name__}: {exc}")
