"""Supervision trees (child specs, strategies, restart intensity, breakers). Built on runtime/."""

from supervisors.backoff import NO_BACKOFF, BackoffPolicy, jitter_rng
from supervisors.breaker import (
    AUDIT_KINDS,
    TRANSITIONS,
    Breaker,
    BreakerPolicy,
    BreakerState,
    BreakerStatistics,
    Transition,
    check_transition,
)
from supervisors.intensity import DEFAULT_INTENSITY, RestartHistory, RestartIntensity, add_restart
from supervisors.spec import (
    BRUTAL,
    Brutal,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorSpec,
    should_restart,
    shutdown_order,
    to_restart,
)

__all__ = [
    "AUDIT_KINDS",
    "BRUTAL",
    "DEFAULT_INTENSITY",
    "NO_BACKOFF",
    "TRANSITIONS",
    "BackoffPolicy",
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatistics",
    "Brutal",
    "ChildSpec",
    "Restart",
    "RestartHistory",
    "RestartIntensity",
    "Strategy",
    "SupervisorSpec",
    "Transition",
    "add_restart",
    "check_transition",
    "jitter_rng",
    "should_restart",
    "shutdown_order",
    "to_restart",
]
