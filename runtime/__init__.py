"""exoarmur's kernel: envelopes, mailboxes, actors, refs and the actor system.

Imports nothing from supervisors/ or actors/.
"""

from runtime.actor import Actor, handles
from runtime.audit import AuditEvent, AuditSink, JsonlAuditSink, MemoryAuditSink, read_jsonl
from runtime.cell import CellState
from runtime.context import ActorContext, Parent
from runtime.codes import ReasonCode
from runtime.deadletters import DeadLetter, DeadLetters
from runtime.deferred import Deferred
from runtime.envelope import Envelope
from runtime.errors import (
    ActorCrashed,
    ActorNotFound,
    ActorUnavailable,
    BreakerOpen,
    Conflict,
    DependencyFailed,
    DeadlineExceeded,
    Denied,
    DuplicateSuppressed,
    ExoarmurError,
    Fatal,
    InvalidInput,
    Overloaded,
    RetryExhausted,
    TenantMismatch,
    error_for,
)
from runtime.mailbox import MailboxConfig, MailboxStatistics, Overflow
from runtime.messages import MESSAGES, MessageRegistry, message, wire_name
from runtime.ref import ActorRef
from runtime.retry import RetryPolicy
from runtime.system import ActorSystem, SystemStatistics
from runtime.timeouts import TimeoutCategory, TimeoutPolicy

__all__ = [
    "MESSAGES",
    "Actor",
    "ActorContext",
    "ActorCrashed",
    "ActorNotFound",
    "ActorRef",
    "ActorSystem",
    "ActorUnavailable",
    "AuditEvent",
    "AuditSink",
    "BreakerOpen",
    "CellState",
    "Conflict",
    "DependencyFailed",
    "DeadLetter",
    "DeadLetters",
    "DeadlineExceeded",
    "Deferred",
    "Denied",
    "DuplicateSuppressed",
    "Envelope",
    "ExoarmurError",
    "Fatal",
    "InvalidInput",
    "JsonlAuditSink",
    "MailboxConfig",
    "MailboxStatistics",
    "MemoryAuditSink",
    "MessageRegistry",
    "Overflow",
    "Overloaded",
    "Parent",
    "ReasonCode",
    "RetryExhausted",
    "RetryPolicy",
    "SystemStatistics",
    "TenantMismatch",
    "TimeoutCategory",
    "TimeoutPolicy",
    "error_for",
    "handles",
    "message",
    "read_jsonl",
    "wire_name",
]
