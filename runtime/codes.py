"""Stable reason codes.

Every failure a caller can see carries exactly one of these codes, and the same
code appears in the audit event that records it. Codes are serialised by value;
the value of a member never changes once released (the same input and the same
faults give the same codes: docs/rules.md, R7). Every code, its error class and
when a caller sees it: docs/reason-codes.md.
"""

from __future__ import annotations

import enum


class ReasonCode(enum.StrEnum):
    # Timeout categories (docs/rules.md, "Timeouts"). A handler that starts and then runs out of
    # time fails with its message's category code.
    TIMEOUT_NATS_CONNECT = "TIMEOUT_NATS_CONNECT"
    TIMEOUT_NATS_PUBLISH = "TIMEOUT_NATS_PUBLISH"
    TIMEOUT_NATS_SUBSCRIBE = "TIMEOUT_NATS_SUBSCRIBE"
    TIMEOUT_NATS_REQUEST = "TIMEOUT_NATS_REQUEST"
    TIMEOUT_NATS_STREAM_CREATE = "TIMEOUT_NATS_STREAM_CREATE"
    TIMEOUT_KV_CREATE = "TIMEOUT_KV_CREATE"
    TIMEOUT_KV_GET = "TIMEOUT_KV_GET"
    TIMEOUT_KV_PUT = "TIMEOUT_KV_PUT"
    TIMEOUT_KV_DELETE = "TIMEOUT_KV_DELETE"
    TIMEOUT_EXECUTION_INTENT = "TIMEOUT_EXECUTION_INTENT"
    TIMEOUT_EXECUTION_CONTAINMENT = "TIMEOUT_EXECUTION_CONTAINMENT"
    TIMEOUT_EXECUTION_EXPIRATION = "TIMEOUT_EXECUTION_EXPIRATION"
    TIMEOUT_APPROVAL_CHECK = "TIMEOUT_APPROVAL_CHECK"
    TIMEOUT_APPROVAL_GRANT = "TIMEOUT_APPROVAL_GRANT"
    TIMEOUT_REPLAY_PROCESSING = "TIMEOUT_REPLAY_PROCESSING"
    TIMEOUT_REPLAY_VALIDATION = "TIMEOUT_REPLAY_VALIDATION"
    TIMEOUT_API_REQUEST = "TIMEOUT_API_REQUEST"
    TIMEOUT_API_VALIDATION = "TIMEOUT_API_VALIDATION"
    # The deadline passed before a handler started (queued, or waiting for room),
    # or a message without a timeout category ran out of time.
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"

    # Load.
    OVERLOAD_MAILBOX_FULL = "OVERLOAD_MAILBOX_FULL"
    OVERLOAD_SHED = "OVERLOAD_SHED"
    RATE_LIMITED = "RATE_LIMITED"
    # A tenant has as many intents not yet settled as its quota allows.
    OVERLOAD_TENANT_QUOTA = "OVERLOAD_TENANT_QUOTA"
    # The audit events emitted before the audit stream is up fill their buffer.
    OVERLOAD_AUDIT_BUFFER = "OVERLOAD_AUDIT_BUFFER"

    # Supervision and retries.
    BREAKER_OPEN = "BREAKER_OPEN"
    RETRY_EXHAUSTED = "RETRY_EXHAUSTED"
    ESCALATED = "ESCALATED"

    # Actors.
    ACTOR_CRASHED = "ACTOR_CRASHED"
    ACTOR_NOT_FOUND = "ACTOR_NOT_FOUND"
    ACTOR_STOPPED = "ACTOR_STOPPED"
    ACTOR_NAME_TAKEN = "ACTOR_NAME_TAKEN"
    SHUTTING_DOWN = "SHUTTING_DOWN"

    # Input.
    ENVELOPE_INVALID = "ENVELOPE_INVALID"
    TENANT_MISMATCH = "TENANT_MISMATCH"
    DUPLICATE_SUPPRESSED = "DUPLICATE_SUPPRESSED"
    CONFIG_INVALID = "CONFIG_INVALID"
    # A message from the wire that its target does not export for remote use
    # (`@handles(..., remote=True)`): supervision and control signals never are.
    NOT_EXPORTED = "NOT_EXPORTED"

    # Gates and stores (used by actors/).
    KILL_SWITCH_ACTIVE = "KILL_SWITCH_ACTIVE"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    # An operator denied the intent's approval (it ends DENIED).
    APPROVAL_DENIED = "APPROVAL_DENIED"
    # Nobody approved or denied it before its approval deadline (it ends EXPIRED).
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    # A kill-switch or approval request with a field that is wrong.
    CONTROL_INVALID = "CONTROL_INVALID"
    KV_CONFLICT = "KV_CONFLICT"
    # A write under an ownership lease that has moved on to another process (fenced).
    LEASE_LOST = "LEASE_LOST"
    # This process's own lease was not renewed recently enough to cover an
    # apply: it waits until the store answers again.
    LEASE_LAPSING = "LEASE_LAPSING"
    KV_BUCKET_NOT_FOUND = "KV_BUCKET_NOT_FOUND"
    AUDIT_CHAIN_BROKEN = "AUDIT_CHAIN_BROKEN"
    # Replay rebuilt the intents from the audit trail and they differ from KV.
    REPLAY_DIVERGED = "REPLAY_DIVERGED"

    # NATS (used by actors/): the connection is down or cannot deliver.
    NATS_DISCONNECTED = "NATS_DISCONNECTED"
    NATS_NO_RESPONDERS = "NATS_NO_RESPONDERS"
    # JetStream answered "no responders" (503): no stream leader (a failover),
    # JetStream down, or no stream for the subject. A failed dependency, where
    # a core request's NATS_NO_RESPONDERS only says nobody listens there.
    JETSTREAM_UNAVAILABLE = "JETSTREAM_UNAVAILABLE"
    NATS_PERMISSION_DENIED = "NATS_PERMISSION_DENIED"
    NATS_SLOW_CONSUMER = "NATS_SLOW_CONSUMER"
    NATS_API_ERROR = "NATS_API_ERROR"

    # Intents and execution types (used by actors/intents, actors/execution).
    INTENT_INVALID = "INTENT_INVALID"
    INTENT_NOT_FOUND = "INTENT_NOT_FOUND"
    # The intent's record is in a state the table does not allow this step from.
    INTENT_STATE_INVALID = "INTENT_STATE_INVALID"
    EXECUTION_TYPE_UNKNOWN = "EXECUTION_TYPE_UNKNOWN"
    # An apply or revert raised something its type did not declare.
    EXECUTION_FAILED = "EXECUTION_FAILED"
    # After a crash, the execution type could not say whether the apply took
    # effect: the intent ends FAILED for an operator to decide.
    RECONCILE_UNKNOWN = "RECONCILE_UNKNOWN"

    # Another live process holds the state directory's lock.
    STATE_LOCKED = "STATE_LOCKED"

    # The process could not go on (printed by `exoarmur run` before a non-zero exit).
    FATAL = "FATAL"


TIMEOUT_CODES = frozenset(c for c in ReasonCode if c.startswith("TIMEOUT_")) | {
    ReasonCode.DEADLINE_EXCEEDED
}
