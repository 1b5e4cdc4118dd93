"""A supervisor's children as it keeps them: each child's state as the
supervisor sees it, its breaker (owned here, so it survives the child's
restarts), and the link that is the child's parent in the kernel."""

from __future__ import annotations

import enum

from exoarmur.runtime import AuditEvent, ExoarmurError, Inbox, ReasonCode, Supervised, System
from exoarmur.supervisors.backoff import jitter_rng
from exoarmur.supervisors.breaker import Breaker
from exoarmur.supervisors.intensity import RestartHistory, in_window_from
from exoarmur.supervisors.messages import ChildDown, ChildExited, DependencyFailed, ProbeDone
from exoarmur.supervisors.spec import BRUTAL, ChildSpec, Restart

__all__ = ["Child", "ChildState", "Link"]

# Restarts of one child remembered for its backoff's attempt number: 2**63
# times any initial delay is past every sensible cap.
BACKOFF_ATTEMPTS_KEPT = 64


class ChildState(enum.StrEnum):
    RUNNING = "running"
    BACKING_OFF = "backing_off"  # down, waiting for its restart
    BREAKER_OPEN = "breaker_open"  # failing fast; not restarted during the cooldown
    STOPPING = "stopping"  # being shut down by this supervisor
    STOPPED = "stopped"


class Child:
    __slots__ = ("spec", "handle", "state", "restart_times", "rng", "breaker", "temporary", "at_once")

    def __init__(self, spec: ChildSpec, *, seed: int, breaker: Breaker | None, one_for_one: bool) -> None:
        self.spec = spec
        # Owned here, not by the child: it survives the child's restarts.
        self.breaker = breaker
        self.temporary = spec.restart is Restart.TEMPORARY
        # Resumed by the crash's own decision: alone (one_for_one), with no
        # backoff to wait and no envelope to hand back first.
        self.at_once = one_for_one and spec.backoff.max_delay == 0.0 and spec.retry is None
        self.handle: Supervised | None = None  # what the kernel lets a parent do
        self.state = ChildState.STOPPED
        self.restart_times: RestartHistory = ()  # for the backoff's attempt number
        self.rng = jitter_rng(seed, name=spec.name)

    @property
    def shutdown_seconds(self) -> float:
        return 0.0 if self.spec.shutdown is BRUTAL else float(self.spec.shutdown)

    def backoff_delay(self, *, now: float, within: float) -> float:
        """This child's next backoff: its attempt is the number of its restarts
        within the intensity window (a child that ran quietly starts over)."""
        backoff = self.spec.backoff
        if backoff.max_delay == 0.0:
            return 0.0  # no backoff (OTP's default): no history needed
        times = self.restart_times
        times = times[in_window_from(times, now=now, within=within) :]
        # Past BACKOFF_ATTEMPTS_KEPT attempts the delay sits at its cap anyway.
        self.restart_times = (*times[-BACKOFF_ATTEMPTS_KEPT + 1 :], now)
        return backoff.delay(len(self.restart_times), rng=self.rng)

    def retry_delay(self, system: System, *, now: float) -> float:
        """Hand the crashed envelope back to the child if its spec has a retry
        policy and the envelope an idempotency key, attempts and time remain.
        The retry's delay (0 if none): the restart waits at least that long.
        Each retry is audited ("retry"); running out is one RETRY_EXHAUSTED."""
        policy, handle = self.spec.retry, self.handle
        env = handle.take_crashed_on() if handle is not None and policy is not None else None
        if policy is None or handle is None or env is None or env.idempotency_key is None:
            return 0.0
        path = handle.path
        key = env.idempotency_key
        delay = policy.delay(key=key, attempt=env.attempt) if env.attempt < policy.max_attempts else None
        if delay is None or now + delay >= env.deadline:
            detail = f"key {key!r}: {env.attempt} attempt(s), last ACTOR_CRASHED"
            system.failure("retry_exhausted", ReasonCode.RETRY_EXHAUSTED, path=path, envelope=env, detail=detail)
            return 0.0
        again = env._replace(attempt=env.attempt + 1, reply_to=None)  # its asker was told
        if not handle.redeliver(again):
            system.failure("retry_exhausted", ReasonCode.RETRY_EXHAUSTED, path=path, envelope=env, detail="mailbox full")
            return 0.0
        system.audit.emit(
            AuditEvent(
                kind="retry",
                code=ReasonCode.ACTOR_CRASHED,
                at=now,
                path=path,
                idempotency_key=key,
                attempt=again.attempt,
                detail=f"redelivered after {delay:.6g}s",
            )
        )
        return delay


class Link:
    """A child's parent (the kernel's `Parent`): forwards what happens to the
    child to the inbox of the supervisor instance that started it."""

    __slots__ = ("_inbox", "_name")

    def __init__(self, inbox: Inbox, name: str) -> None:
        self._inbox = inbox
        self._name = name

    def child_crashed(self, child: Supervised, error: ExoarmurError) -> None:
        # Decided at once when the supervisor is idle (on_child_down never
        # awaits): the crashed child's own drain goes on to its fresh instance.
        self._inbox.signal_now(ChildDown(self._name, error.code, error.detail))

    def child_exited(self, child: Supervised) -> None:
        self._inbox.signal(ChildExited(self._name))

    def child_reported(self, child: Supervised, code: ReasonCode, detail: str) -> None:
        self._inbox.signal(DependencyFailed(self._name, code))

    def child_probed(self, child: Supervised, ok: bool | None) -> None:
        self._inbox.signal(ProbeDone(self._name, ok))
