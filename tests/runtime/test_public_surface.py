"""The public surface of each package is pinned: changing it is a decision."""

from __future__ import annotations

import ast
import pathlib

from exoarmur import runtime

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_runtime_exports_exactly_its_public_names():
    """runtime.__all__ is the documented surface, and every name resolves."""
    assert sorted(runtime.__all__) == sorted(
        [
            "MESSAGES", "Actor", "ActorContext", "ActorCrashed", "ActorNotFound", "ActorRef",
            "ActorSystem", "ActorUnavailable", "AuditEvent", "AuditSink", "BreakerOpen",
            "CellState", "Conflict", "DeadLetter", "DependencyFailed", "DeadLetters", "DeadlineExceeded", "Deferred", "Denied",
            "DuplicateSuppressed", "Envelope", "ExoarmurError", "Fatal", "InvalidInput",
            "JsonlAuditSink", "MailboxConfig", "MailboxStatistics", "MemoryAuditSink",
            "MessageRegistry", "Overflow", "Overloaded", "Parent", "ReasonCode", "RetryExhausted", "RetryPolicy",
            "SystemStatistics", "TenantMismatch", "TimeoutCategory", "TimeoutPolicy",
            "error_for", "handles", "message", "outgoing_envelope", "read_jsonl", "wire_name",
        ]
    )  # fmt: skip
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None


def test_runtime_never_imports_supervisors_or_actors():
    """runtime/ stays at the bottom: no module in it imports supervisors/ or actors/."""
    for path in (ROOT / "runtime").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(("exoarmur.supervisors", "exoarmur.actors")), f"{path.name} imports {name}"
