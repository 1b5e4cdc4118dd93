"""Approving or denying an intent that waits for it (the service's
`approve` and `deny`): one decision per intent, stored once.

    decide(...) -> (the intent, the decision that stands, its code)

- the intent must exist (INTENT_NOT_FOUND) and its type must ask for an
  approval of it (INTENT_STATE_INVALID otherwise);
- the decision is created by compare-and-set on an absent key, so it is
  made once: the same decision again is DUPLICATE_SUPPRESSED and changes
  nothing; the other one (approving what was denied) is INTENT_STATE_INVALID;
- an intent past waiting (executed, expired, killed) with no decision
  stored takes none: INTENT_STATE_INVALID.

The intent learns of it from its gates (actors/controls/gates.py), at once
when the process's watch tells it (actors/controls/watch.py), else at its
next look (APPROVAL_POLL).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from exoarmur.actors.intents.approvals import Approval, Decision, parse_decision
from exoarmur.actors.intents.effects import TypeInfo
from exoarmur.actors.intents.record import IntentRecord, intent_key
from exoarmur.actors.intents.states import IntentState
from exoarmur.actors.intents.store import IntentStore
from exoarmur.actors.nats import Create, Get, KvEntry
from exoarmur.runtime import ActorRef, Conflict, ExoarmurError, ReasonCode, error_for

__all__ = ["decide"]

WAITING = frozenset({IntentState.RECEIVED, IntentState.AWAITING_APPROVAL})


async def decide(
    *,
    store: IntentStore,
    approvals: ActorRef,
    types: Mapping[str, TypeInfo],
    tenant: str,
    body: dict[str, Any],
    decision: Decision,
) -> tuple[IntentRecord, Approval, str]:
    intent_id, who, reason = parse_decision(body)
    record = await store.load(tenant, intent_id)
    if record is None:
        raise error_for(ReasonCode.INTENT_NOT_FOUND, f"no intent {intent_id!r} in tenant {tenant!r}")
    info = types.get(record.type)
    if info is None or not info.asks_approval(record)[0]:
        raise Conflict(ReasonCode.INTENT_STATE_INVALID, f"intent {intent_id} does not wait for an approval")
    key = intent_key(tenant, intent_id)
    if record.state not in WAITING:
        return record, *_again(await _stored(approvals, key), decision, record)
    approval = Approval(decision=decision, who=who, reason=reason, at=time.time())
    try:
        revision = await approvals.ask(Create(key, approval.to_bytes()))
    except ExoarmurError as exc:
        if exc.code is not ReasonCode.KV_CONFLICT:
            raise
        return record, *_again(await _stored(approvals, key), decision, record)
    return record, attrs.evolve(approval, revision=revision), ""


async def _stored(approvals: ActorRef, key: str) -> Approval | None:
    entry: KvEntry | None = await approvals.ask(Get(key))
    return None if entry is None else Approval.from_entry(entry)


def _again(stored: Approval | None, decision: Decision, record: IntentRecord) -> tuple[Approval, str]:
    """A decision asked for where one stands (or none can be taken any more)."""
    if stored is None:
        raise Conflict(
            ReasonCode.INTENT_STATE_INVALID, f"intent {record.id} is {record.state}: it no longer waits for an approval"
        )
    if stored.decision is not decision:
        raise Conflict(ReasonCode.INTENT_STATE_INVALID, f"intent {record.id} was already {stored.says()}")
    return stored, ReasonCode.DUPLICATE_SUPPRESSED.value
