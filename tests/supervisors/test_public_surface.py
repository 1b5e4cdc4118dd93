"""The public surface of supervisors/ is pinned."""

from __future__ import annotations

from exoarmur import supervisors


def test_supervisors_exports_exactly_its_public_names():
    """supervisors.__all__ is the documented surface, and every name resolves."""
    assert sorted(supervisors.__all__) == sorted(
        [
            "AUDIT_KINDS", "BRUTAL", "DEFAULT_INTENSITY", "NO_BACKOFF", "BREAKER_TRANSITIONS",
            "BackoffPolicy", "Breaker", "BreakerPolicy", "BreakerState", "BreakerStatistics",
            "Brutal", "ChildSpec", "ChildState", "Describe", "Node", "Restart", "StartChild", "TerminateChild",
            "RestartHistory", "RestartIntensity", "RestartWindow", "Strategy", "Supervisor", "SupervisorSpec",
            "Transition", "add_restart", "check_transition", "jitter_rng", "should_restart",
            "describe_system", "shutdown_order", "to_restart",
        ]
    )  # fmt: skip
    for name in supervisors.__all__:
        assert getattr(supervisors, name) is not None
