"""exoarmur's kernel: envelopes, mailboxes, actors, refs and the actor system.

Imports nothing above it (tests/test_layers.py): the layers above use these
public names, never its modules' insides.
"""

from exoarmur.runtime.actor import Actor, handles
from exoarmur.runtime.audit import AuditEvent, AuditSink, JsonlAuditSink, MemoryAuditSink, read_jsonl
from exoarmur.runtime.codec import decode, decode_message, encode, encode_message
from exoarmur.runtime.codes import TIMEOUT_CODES, ReasonCode
from exoarmur.runtime.context import ActorContext
from exoarmur.runtime.contracts import ActorInfo, Parent, Supervised, System
from exoarmur.runtime.current import detached
from exoarmur.runtime.totals import ActorTotals
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
    ExecutionFailed,
    ExoarmurError,
    Fatal,
    InvalidInput,
    Overloaded,
    RetryExhausted,
    TenantMismatch,
    error_for,
)
from exoarmur.runtime.host import Host
from exoarmur.runtime.inbox import Inbox
from exoarmur.runtime.lifecycle import CellState
from exoarmur.runtime.mailbox import MailboxConfig, MailboxStatistics, Overflow, validate_capacity
from exoarmur.runtime.margins import MARGINS, Margin
from exoarmur.runtime.messages import MESSAGES, MessageRegistry, message, timeout_category, wire_name
from exoarmur.runtime.shared_calls import SharedCalls
from exoarmur.runtime.together import ask_all, together
from exoarmur.runtime.ref import ActorRef, deadline_refusal, outgoing_envelope
from exoarmur.runtime.retry import RetryPolicy
from exoarmur.runtime.system import ActorSystem, SystemStatistics
from exoarmur.runtime.timeouts import TimeoutCategory, TimeoutPolicy, valid_seconds

__all__ = [
    "Actor",
    "ActorContext",
    "ActorCrashed",
    "ActorInfo",
    "ActorTotals",
    "ActorNotFound",
    "ActorRef",
    "ActorSystem",
    "ActorUnavailable",
    "AuditEvent",
    "AuditSink",
    "BreakerOpen",
    "CellState",
    "Conflict",
    "DeadLetter",
    "DeadLetters",
    "DeadlineExceeded",
    "Deferred",
    "Denied",
    "DependencyFailed",
    "DuplicateSuppressed",
    "Envelope",
    "ExecutionFailed",
    "ExoarmurError",
    "Fatal",
    "Host",
    "Inbox",
    "InvalidInput",
    "JsonlAuditSink",
    "MARGINS",
    "MESSAGES",
    "MailboxConfig",
    "MailboxStatistics",
    "Margin",
    "MemoryAuditSink",
    "MessageRegistry",
    "Overflow",
    "Overloaded",
    "Parent",
    "ReasonCode",
    "RetryExhausted",
    "RetryPolicy",
    "SharedCalls",
    "Supervised",
    "System",
    "SystemStatistics",
    "TIMEOUT_CODES",
    "TenantMismatch",
    "TimeoutCategory",
    "TimeoutPolicy",
    "ask_all",
    "decode",
    "deadline_refusal",
    "decode_message",
    "encode",
    "encode_message",
    "error_for",
    "handles",
    "detached",
    "message",
    "outgoing_envelope",
    "read_jsonl",
    "timeout_category",
    "together",
    "valid_seconds",
    "validate_capacity",
    "wire_name",
]
