"""The `Kernel` protocol: what an actor's cell, its parts and its refs use of
the actor system (runtime/system.py's ActorSystem implements it). Declared
apart from the system so the kernel's parts depend on this contract, not on
the class that hosts them (the import graph of runtime/ has no cycle)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from exoarmur.runtime.audit import AuditSink
    from exoarmur.runtime.backend import Backend
    from exoarmur.runtime.codes import ReasonCode
    from exoarmur.runtime.envelope import Envelope
    from exoarmur.runtime.errors import ExoarmurError
    from exoarmur.runtime.timeouts import TimeoutPolicy

__all__ = ["Kernel"]


class Kernel(Protocol):
    now: Callable[[], float]  # the runtime clock: the event loop's own
    backend: Backend
    timeouts: TimeoutPolicy
    audit: AuditSink
    stop_timeout: float
    eager_depth: int  # eager dispatches nested in the running stack (runtime/eager.py)
    late_replies: int  # answers that came after their asker had one
    default_timeouts: dict[type, float]  # message type -> its default seconds, as `default_seconds` found it

    def failure(
        self,
        kind: str,
        code: ReasonCode,
        *,
        path: str | None = None,
        envelope: Envelope | None = None,
        detail: str = "",
        idempotency_key: str | None = None,
        attempt: int | None = None,
    ) -> ExoarmurError:
        """The coded error for a failure, its one audit event emitted."""

    def audit_error(self, error: ExoarmurError, *, kind: str, path: str, envelope: Envelope | None) -> None:
        """The one audit event of an error built elsewhere, unless it has one."""

    def record_dead_letter(self, path: str, env: Envelope, code: ReasonCode) -> None: ...

    def default_seconds(self, message_type: type) -> float:
        """The timeout policy's default for a message type."""

    def unregister(self, cell: Any) -> None:
        """A stopped cell leaves the registry."""
