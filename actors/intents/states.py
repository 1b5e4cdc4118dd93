"""An intent's states and the transitions between them: one table.

    RECEIVED ──> AWAITING_APPROVAL ──> APPROVED ──> EXECUTING ──> SUCCEEDED ──> REVERTING ──> REVERTED
        │               │                 │             │             (types with revert)  │
        └───────────────┴─────────────────┴──> DENIED | EXPIRED | KILLED   └──> FAILED <───┘

Every write of an intent's record moves it along one edge of `TRANSITIONS`
(actors/intents/record.py checks it), as a compare-and-set on its KV revision
made before the step takes effect. The gates that come before EXECUTING
(kill switches, tenant limits, approval, the type's breaker) refuse with
DENIED, KILLED or FAILED from the states before it; EXPIRED is the intent's
deadline passing there. EXECUTING -> KILLED is the kill switches checked
again right before an apply (actors/intents/gates.py): only the actor that
wrote that EXECUTING and has not called apply writes it; one found
EXECUTING after a crash is reconciled first. An edge from a state to itself is a new attempt:
EXECUTING again after the type said the last apply did NOT take effect
(`attempts` grows by one), REVERTING again likewise.

`IN_EFFECT` states are the windows an effect may have happened without being
recorded: an intent found there after a crash is reconciled (the type is
asked), never applied again blindly.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["BEFORE_EFFECT", "CODES", "IN_EFFECT", "TERMINAL", "TRANSITIONS", "IntentState", "allowed", "code_allowed"]


class IntentState(enum.StrEnum):
    RECEIVED = "RECEIVED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    APPROVED = "APPROVED"
    EXECUTING = "EXECUTING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"
    KILLED = "KILLED"
    REVERTING = "REVERTING"
    REVERTED = "REVERTED"


S = IntentState

TRANSITIONS: Mapping[IntentState, frozenset[IntentState]] = MappingProxyType(
    {
        S.RECEIVED: frozenset({S.AWAITING_APPROVAL, S.APPROVED, S.DENIED, S.EXPIRED, S.KILLED, S.FAILED}),
        S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.DENIED, S.EXPIRED, S.KILLED, S.FAILED}),
        S.APPROVED: frozenset({S.EXECUTING, S.DENIED, S.EXPIRED, S.KILLED, S.FAILED}),
        S.EXECUTING: frozenset({S.EXECUTING, S.SUCCEEDED, S.FAILED, S.KILLED}),
        S.SUCCEEDED: frozenset({S.REVERTING}),
        S.REVERTING: frozenset({S.REVERTING, S.REVERTED, S.FAILED}),
        S.FAILED: frozenset(),
        S.DENIED: frozenset(),
        S.EXPIRED: frozenset(),
        S.KILLED: frozenset(),
        S.REVERTED: frozenset(),
    }
)

# Where the actor's work is done: nothing more happens unless asked (a revert).
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.DENIED, S.EXPIRED, S.KILLED, S.REVERTED})
# Before any effect: the gates and the deadline still decide.
BEFORE_EFFECT = frozenset({S.RECEIVED, S.AWAITING_APPROVAL, S.APPROVED})
# An effect may have happened and not been recorded: reconcile on start.
IN_EFFECT = frozenset({S.EXECUTING, S.REVERTING})


# The codes a record in each state may carry (None: any; FAILED carries the
# type's own reasons too). A gate's refusal carries its gate's code
# (docs/gates.md); replay holds every record to this (replay_problems.py).
CODES: Mapping[IntentState, frozenset[str] | None] = MappingProxyType(
    {
        S.RECEIVED: frozenset({""}),
        S.AWAITING_APPROVAL: frozenset({"APPROVAL_REQUIRED"}),
        S.APPROVED: frozenset({""}),
        S.EXECUTING: frozenset({""}),
        S.SUCCEEDED: frozenset({""}),
        S.FAILED: None,
        S.DENIED: frozenset({"APPROVAL_DENIED"}),
        S.EXPIRED: frozenset({"DEADLINE_EXCEEDED", "APPROVAL_EXPIRED"}),
        S.KILLED: frozenset({"KILL_SWITCH_ACTIVE"}),
        S.REVERTING: frozenset({""}),
        S.REVERTED: frozenset({""}),
    }
)


def code_allowed(state: IntentState, code: str) -> bool:
    codes = CODES[state]
    return codes is None or code in codes


def allowed(before: IntentState | None, after: IntentState) -> bool:
    """Whether a record may move from `before` to `after` (None: it does not
    exist yet, and only RECEIVED starts one)."""
    if before is None:
        return after is S.RECEIVED
    return after in TRANSITIONS[before]
