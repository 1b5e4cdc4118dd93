"""Supervision trees (child specs, strategies, restart intensity, breakers). Built on runtime/."""

from exoarmur.supervisors.backoff import NO_BACKOFF, BackoffPolicy, jitter_rng
from exoarmur.supervisors.breaker import TRANSITIONS as BREAKER_TRANSITIONS
from exoarmur.supervisors.breaker import (
    AUDIT_KINDS,
    Breaker,
    BreakerPolicy,
    BreakerState,
    BreakerStatistics,
    Transition,
    check_transition,
)
from exoarmur.supervisors.intensity import DEFAULT_INTENSITY, RestartHistory, RestartIntensity, RestartWindow, add_restart
from exoarmur.supervisors.spec import (
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
from exoarmur.supervisors.supervisor import ChildDown, ChildState, RestartDue, Supervisor

__all__ = [
    "AUDIT_KINDS",
    "BRUTAL",
    "DEFAULT_INTENSITY",
    "NO_BACKOFF",
    "BREAKER_TRANSITIONS",
    "BackoffPolicy",
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatistics",
    "Brutal",
    "ChildDown",
    "ChildSpec",
    "ChildState",
    "Restart",
    "RestartDue",
    "RestartHistory",
    "RestartIntensity",
    "RestartWindow",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "Transition",
    "add_restart",
    "check_transition",
    "jitter_rng",
    "should_restart",
    "shutdown_order",
    "to_restart",
]
