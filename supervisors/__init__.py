"""Supervision trees (child specs, strategies, restart intensity, breakers),
built on the kernel's public names only (`exoarmur.runtime`)."""

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
from exoarmur.supervisors.children import ChildState
from exoarmur.supervisors.describe import Node, describe_system
from exoarmur.supervisors.messages import Describe, StartChild, TerminateChild
from exoarmur.supervisors.supervisor import Supervisor

__all__ = [
    "AUDIT_KINDS",
    "BREAKER_TRANSITIONS",
    "BRUTAL",
    "BackoffPolicy",
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatistics",
    "Brutal",
    "ChildSpec",
    "ChildState",
    "DEFAULT_INTENSITY",
    "Describe",
    "NO_BACKOFF",
    "Node",
    "Restart",
    "RestartHistory",
    "RestartIntensity",
    "RestartWindow",
    "StartChild",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "TerminateChild",
    "Transition",
    "add_restart",
    "check_transition",
    "describe_system",
    "jitter_rng",
    "should_restart",
    "shutdown_order",
    "to_restart",
]
