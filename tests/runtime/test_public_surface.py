"""The public surface of each package is pinned: changing it is a decision."""

from __future__ import annotations

from exoarmur import runtime


def test_runtime_exports_exactly_its_public_names():
    """runtime.__all__ is the documented surface, and every name resolves."""
    assert sorted(runtime.__all__) == sorted(
        [
            "MARGINS", "MESSAGES", "TIMEOUT_CODES",
            "Actor", "ActorContext", "ActorCrashed", "ActorInfo", "ActorNotFound", "ActorRef",
            "ActorSystem", "ActorTotals", "ActorUnavailable", "AuditEvent", "AuditSink", "BreakerOpen",
            "CellState", "Conflict", "DeadLetter", "DependencyFailed", "DeadLetters", "DeadlineExceeded", "Deferred", "Denied",
            "DuplicateSuppressed", "Envelope", "ExecutionFailed", "ExoarmurError", "Fatal", "Host", "Inbox", "InvalidInput",
            "JsonlAuditSink", "MailboxConfig", "MailboxStatistics", "Margin", "MemoryAuditSink",
            "MessageRegistry", "Overflow", "Overloaded", "Parent", "ReasonCode", "RetryExhausted", "RetryPolicy",
            "SharedCalls", "Supervised", "System", "SystemStatistics", "TenantMismatch", "TimeoutCategory", "TimeoutPolicy",
            "deadline_refusal", "decode", "decode_message", "detached", "encode", "encode_message",
            "error_for", "handles", "message", "outgoing_envelope", "read_jsonl", "timeout_category",
            "valid_seconds", "validate_capacity", "wire_name", "ask_all", "together",
        ]
    )  # fmt: skip
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None
