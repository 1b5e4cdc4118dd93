"""exoarmur's kernel: envelopes, mailboxes, actors, refs and the actor system.

Imports nothing from supervisors/ or actors/.
"""

from exoarmur.runtime.actor import Actor, handles
from exoarmur.runtime.audit import AuditEvent, AuditSink, JsonlAuditSink, MemoryAuditSink, read_jsonl
from exoarmur.runtime.cell import CellState
from exoarmur.runtime.context import ActorContext, Parent
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.deadletters import DeadLetter, DeadLetters
from exoarmur.runtime.deferred import Deferred
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import (
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
from exoarmur.runtime.mailbox import MailboxConfig, MailboxStatistics, Overflow
from exoarmur.runtime.messages import MESSAGES, MessageRegistry, message, wire_name
from exoarmur.runtime.ref import ActorRef, outgoing_envelope
from exoarmur.runtime.retry import RetryPolicy
from exoarmur.runtime.system import ActorSystem, SystemStatistics
from exoarmur.runtime.timeouts import TimeoutCategory, TimeoutPolicy

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
    "outgoing_envelope",
    "read_jsonl",
    "wire_name",
]
