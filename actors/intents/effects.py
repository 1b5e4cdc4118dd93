"""What an intent asks of its execution type, and what it is answered.

The intent actor (actors/intents/intent.py) asks the actor of its type
(actors/execution/) at the path `TypeInfo.path`:

    Apply(intent, key)       -> Effect   make the effect, once
    Reconcile(intent, key)   -> Reconciled   did the apply (or, while the intent
                                is REVERTING, the revert) with this key take effect?
    Revert(intent, key)      -> Effect   undo it (types with revert only)

An `Effect` says what is known afterwards: APPLIED (it took effect), FAILED
(it certainly did not: one of the type's declared reasons, or refused before
it started) or UNCERTAIN (a timeout, a crash, an undeclared error: only
`reconcile` can tell); NOT_STARTED is an apply that waited its turn past
its `not_after` and was not started (the intent checks its gates again).
The intent actor writes what follows from it and never applies again
without asking `Reconcile` first.

These messages are local only: they carry the record itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.runtime import TimeoutCategory, message

__all__ = ["Apply", "Effect", "Outcome", "Reconcile", "Reconciled", "Revert", "TypeInfo"]


class Reconciled(enum.StrEnum):
    APPLIED = "APPLIED"
    NOT_APPLIED = "NOT_APPLIED"
    UNKNOWN = "UNKNOWN"


class Outcome(enum.StrEnum):
    APPLIED = "APPLIED"
    FAILED = "FAILED"
    UNCERTAIN = "UNCERTAIN"
    NOT_STARTED = "NOT_STARTED"  # refused before it started (`not_after` passed): ask again


@attrs.frozen
class Effect:
    outcome: Outcome
    code: str = ""  # FAILED and UNCERTAIN: the reason (the type's own, or a ReasonCode)
    detail: str = ""


@message("exoarmur.effect.apply", timeout=TimeoutCategory.EXECUTION_INTENT)
class Apply:
    """`not_after`: the runtime time after which the apply must not start
    (its kill-switch check would be stale); None: no such bound."""

    intent: IntentRecord
    key: str
    not_after: float | None = None


@message("exoarmur.effect.revert", timeout=TimeoutCategory.EXECUTION_INTENT)
class Revert:
    intent: IntentRecord
    key: str


@message("exoarmur.effect.reconcile", timeout=TimeoutCategory.EXECUTION_INTENT)
class Reconcile:
    intent: IntentRecord
    key: str


@attrs.frozen(kw_only=True)
class TypeInfo:
    """What an intent needs to know of its type: where its actor is, how long
    one call may take, whether it can revert, and whether an intent of it
    waits for an operator's approval (`needs_approval(intent)`; None: never),
    for how long from its creation at most, and how it meets an open breaker."""

    name: str
    path: str
    timeout: float
    revertible: bool = False
    needs_approval: Callable[[IntentRecord], bool] | None = None
    approval_timeout: float = 3600.0
    # While its breaker is open, an intent about to execute looks again after
    # this many seconds (its breaker's cooldown); 0: it ends FAILED at once.
    breaker_pause: float = 0.0

    def asks_approval(self, intent: IntentRecord) -> tuple[bool, str]:
        """Whether `intent` waits for an approval, and the problem if the
        type's predicate raised ("" if not): one that raises asks (fail closed)."""
        if self.needs_approval is None:
            return False, ""
        try:
            return bool(self.needs_approval(intent)), ""
        except Exception as exc:  # the type's bug: the intent waits for a person
            return True, f"{self.name}.needs_approval raised {exc!r}"

    def approval_deadline(self, intent: IntentRecord) -> float:
        """When an intent of this type stops waiting for approval (wall clock)."""
        return min(intent.deadline, intent.created + self.approval_timeout)
