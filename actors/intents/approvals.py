"""Approvals: an operator's decision on an intent that waits for one, in KV.

    bucket   exoarmur_approvals
    key      <tenant>.<id> (the intent's own key)
    value    {"v": 1, "decision": "approved" | "denied", "who": str, "reason": str, "at": float}

A decision is created once, by compare-and-set on an absent key: approving
twice, or approving what was denied, finds the key taken and changes
nothing (the service answers DUPLICATE_SUPPRESSED or INTENT_STATE_INVALID).
The gates read it from the leader (actors/controls/gates.py); a value that is
not exactly this shape counts as a denial: an unreadable decision never
approves.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import orjson

from exoarmur.actors.intents.notes import stored_fields, stored_note, who_and_why
from exoarmur.actors.intents.record import check_id
from exoarmur.actors.nats import KvEntry
from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["Approval", "Decision", "parse_decision"]

_FIELDS = frozenset({"v", "decision", "who", "reason", "at"})


class Decision(enum.StrEnum):
    APPROVED = "approved"
    DENIED = "denied"


@attrs.frozen(kw_only=True)
class Approval:
    decision: Decision
    who: str = ""
    reason: str = ""
    at: float = 0.0  # wall clock
    revision: int = 0

    def to_bytes(self) -> bytes:
        value = {"v": 1, "decision": self.decision.value, "who": self.who, "reason": self.reason, "at": self.at}
        return orjson.dumps(value)

    @classmethod
    def from_entry(cls, entry: KvEntry) -> Approval:
        """The decision as stored; an unreadable value is a denial (fail closed)."""
        try:
            value = stored_fields(entry.value, _FIELDS)
            who, reason, at = stored_note(value)
            decision = Decision(value["decision"])  # ValueError for any other
        except ValueError as exc:
            return cls(decision=Decision.DENIED, reason=f"its stored value is unreadable ({exc})", revision=entry.revision)
        return cls(decision=decision, who=who, reason=reason, at=at, revision=entry.revision)

    def says(self) -> str:
        by = f" by {self.who}" if self.who else ""
        return f"{self.decision.value}{by}: {self.reason or 'no reason given'}"

    def view(self) -> dict[str, Any]:
        return {"decision": self.decision.value, "who": self.who, "reason": self.reason, "at": self.at,
                "revision": self.revision}  # fmt: skip


def parse_decision(body: dict[str, Any]) -> tuple[str, str, str]:
    """An approve or deny request's (intent id, who, reason), checked strictly."""
    unknown = sorted(set(body) - {"id", "tenant", "who", "reason"})
    if unknown:
        raise _invalid(f"unknown field {str(unknown[0])[:80]!r} (allowed: id, who, reason)")
    intent_id = check_id(body.get("id"))
    who, reason = who_and_why(body, code=ReasonCode.INTENT_INVALID)
    return intent_id, who, reason


def _invalid(detail: str) -> InvalidInput:
    return InvalidInput(ReasonCode.INTENT_INVALID, detail)
