"""The messages of a supervisor: the signals it gets from its children and
its timers (through its instance's inbox, ahead of any mail), and the asks it
answers (OTP's start_child, terminate_child; a description of its subtree).

The signals are for the runtime alone: none is exported for remote use, so no
gateway delivers one from the wire.
"""

from __future__ import annotations

from exoarmur.runtime import ReasonCode, message
from exoarmur.supervisors.spec import ChildSpec

__all__ = [
    "BreakerDue",
    "ChildDown",
    "ChildExited",
    "DependencyFailed",
    "Describe",
    "Escalate",
    "ProbeDone",
    "RestartDue",
    "RestartGroup",
    "StartChild",
    "TerminateChild",
]


@message("exoarmur.supervisor.child_down")
class ChildDown:
    """Signal: the child `name` crashed with `code` and is suspended."""

    name: str
    code: ReasonCode
    detail: str


@message("exoarmur.supervisor.child_exited")
class ChildExited:
    """Signal: the child `name` stopped."""

    name: str


@message("exoarmur.supervisor.dependency_failed")
class DependencyFailed:
    """Signal: the child `name` reported a failed dependency and runs on."""

    name: str
    code: ReasonCode


@message("exoarmur.supervisor.probe_done")
class ProbeDone:
    """Signal: a HALF_OPEN probe to `name` ended (ok True/False, None: expired)."""

    name: str
    ok: bool | None


@message("exoarmur.supervisor.breaker_due")
class BreakerDue:
    """Signal: the cooldown of `name`'s breaker may be over."""

    name: str


@message("exoarmur.supervisor.restart_group")
class RestartGroup:
    """Signal to itself: wind down and restart the children of `ticket`."""

    ticket: int
    failed: str
    delay: float


@message("exoarmur.supervisor.escalate")
class Escalate:
    """Signal to itself: too many restarts; shut everything down and fail."""

    last: str


@message("exoarmur.supervisor.restart_due")
class RestartDue:
    """Signal: the backoff of restart `ticket` is over."""

    ticket: int


@message("exoarmur.supervisor.start_child")
class StartChild:
    """Ask: start a child from `spec` (OTP's start_child); answers its ActorRef.
    Local only: a ChildSpec names a class, so it does not go on the wire."""

    spec: ChildSpec


@message("exoarmur.supervisor.terminate_child")
class TerminateChild:
    """Ask: shut the child `name` down (within its shutdown timeout) and forget it."""

    name: str


@message("exoarmur.supervisor.describe")
class Describe:
    """Ask: this supervisor's subtree as data (a `Node`)."""
