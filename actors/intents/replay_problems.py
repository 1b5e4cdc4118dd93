"""What replay finds wrong: one kind per finding, and a sentence for a person.

Every problem names where it is, as far as it is known: the chain and the
position in it, the stream sequence, the intent (tenant and id) and its
revision. `kind` is stable (scripts match on it); `message` is for people.

    the stream      record_unreadable     a message that is not an audit record
                    record_misplaced      a record on another chain's subject
    a chain         record_altered        its hash is not the hash of its content
                    chain_broken          its prev is not the hash of the record before
                    records_missing       positions absent (deleted, or never stored)
                    record_out_of_order   stored after records that follow it
                    position_repeated     a second record at a position (a fork)
    an intent's     event_invalid         an intent event that is not one
    trail           tenant_mismatch       an intent's record on another tenant's chain
                    first_not_received    an intent's first record is not RECEIVED
                    transition_invalid    a state the table does not allow next
                    code_invalid          a code its state never carries (a gate's refusal
                                          with another gate's code, a code on a success)
                    takeover_invalid      same state, more changed than owner and time
                    field_changed         a field fixed at submission changed
                    revision_conflict     one revision, two different records
                    revision_regressed    a lower revision, never seen, after a higher
    the gates       kill_unrecorded       KILLED by a switch revision no audited set has
                                          (actors/intents/kills.py)
    against KV      kv_unreadable         a KV entry that is not an intent record
                    missing_from_audit    in KV, never audited
                    missing_from_kv       audited, absent from KV
                    audit_behind          KV holds a later revision than the audit
                    kv_behind             the audit had a later revision before KV was read
                    revision_not_audited  KV's revision is not in the audit, later ones are
                    record_differs        same revision, different fields (both values)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

__all__ = ["Problem", "ProblemKind"]


class ProblemKind(enum.StrEnum):
    RECORD_UNREADABLE = "record_unreadable"
    RECORD_MISPLACED = "record_misplaced"
    RECORD_ALTERED = "record_altered"
    CHAIN_BROKEN = "chain_broken"
    RECORDS_MISSING = "records_missing"
    RECORD_OUT_OF_ORDER = "record_out_of_order"
    POSITION_REPEATED = "position_repeated"
    EVENT_INVALID = "event_invalid"
    TENANT_MISMATCH = "tenant_mismatch"
    FIRST_NOT_RECEIVED = "first_not_received"
    TRANSITION_INVALID = "transition_invalid"
    CODE_INVALID = "code_invalid"
    TAKEOVER_INVALID = "takeover_invalid"
    FIELD_CHANGED = "field_changed"
    REVISION_CONFLICT = "revision_conflict"
    REVISION_REGRESSED = "revision_regressed"
    KILL_UNRECORDED = "kill_unrecorded"
    KV_UNREADABLE = "kv_unreadable"
    MISSING_FROM_AUDIT = "missing_from_audit"
    MISSING_FROM_KV = "missing_from_kv"
    AUDIT_BEHIND = "audit_behind"
    KV_BEHIND = "kv_behind"
    REVISION_NOT_AUDITED = "revision_not_audited"
    RECORD_DIFFERS = "record_differs"


@attrs.frozen(kw_only=True)
class Problem:
    """One finding. The location fields are None where they do not apply;
    `details` holds the rest (the fields that differ, with both values)."""

    kind: ProblemKind
    message: str
    chain: str | None = None
    position: int | None = None
    seq: int | None = None
    tenant: str | None = None
    intent: str | None = None
    revision: int | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=lambda d: MappingProxyType(dict(d)))

    def to_dict(self) -> dict[str, Any]:
        """As JSON: `kind` and `message`, then each location field that applies."""
        out: dict[str, Any] = {"kind": self.kind.value, "message": self.message}
        for name in ("chain", "position", "seq", "tenant", "intent", "revision"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.details:
            out["details"] = dict(self.details)
        return out
