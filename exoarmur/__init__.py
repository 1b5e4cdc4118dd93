"""exoarmur: an actor runtime with supervision trees, end-to-end deadlines and
coded failures.

The everyday surface is here; everything else lives in its layer:

- `exoarmur.runtime`: the kernel (envelopes, mailboxes, actors, refs, the
  actor system, reason codes, timeouts, audit, codec). Imports nothing above it.
- `exoarmur.supervisors`: supervision trees and circuit breakers, on the kernel.
- `exoarmur.actors`: the system's actors by subject (NATS, remote refs, the
  main process in `exoarmur.actors.app`).
- `exoarmur.benchmarks`: the benchmark and load scripts (`exoarmur bench NAME`).
"""

from exoarmur.runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    ExoarmurError,
    Overflow,
    ReasonCode,
    TimeoutCategory,
    handles,
    message,
)
from exoarmur.supervisors import (
    BackoffPolicy,
    BreakerPolicy,
    ChildSpec,
    Restart,
    RestartIntensity,
    Strategy,
    Supervisor,
    SupervisorSpec,
)

__all__ = [
    "Actor",
    "ActorRef",
    "ActorSystem",
    "BackoffPolicy",
    "BreakerPolicy",
    "ChildSpec",
    "ExoarmurError",
    "Overflow",
    "ReasonCode",
    "Restart",
    "RestartIntensity",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "TimeoutCategory",
    "handles",
    "message",
]
