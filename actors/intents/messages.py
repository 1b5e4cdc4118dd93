"""What the intents side tells the actors above it (tenants)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exoarmur.runtime import TimeoutCategory, message

if TYPE_CHECKING:
    from exoarmur.actors.intents.record import IntentRecord

__all__ = ["Activate", "Admit", "FirstRead", "Recheck", "Released", "intent_actor_name", "intent_actor_path"]


def intent_actor_name(intent_id: str) -> str:
    """The name of an intent's actor, under its tenant's supervisor
    (`<tenants>/<tenant>/<name>`: actors/tenants/router.py)."""
    return f"intent.{intent_id}"


def intent_actor_path(tenants: str, tenant: str, intent_id: str) -> str:
    """Where an intent's actor runs: under its tenant's supervisor, under
    the tenants' supervisor at `tenants`."""
    return f"{tenants}/{tenant}/{intent_actor_name(intent_id)}"


class FirstRead:
    """The record as its submitter just wrote it, for the intent's first
    actor instance only (one KV read fewer per intent): a restarted
    instance finds it taken and reads KV. A record that moved on meanwhile
    costs one refused compare-and-set, never a wrong write."""

    __slots__ = ("_record",)

    def __init__(self, record: IntentRecord | None) -> None:
        self._record = record

    def take(self) -> IntentRecord | None:
        record, self._record = self._record, None
        return record


@message("exoarmur.intent.activate", timeout=TimeoutCategory.EXECUTION_INTENT)
class Activate:
    """To the tenants actor: have an intent actor for this intent running
    (started if there is none; an existing one is left alone). Answers True
    if this call started it. `take_over`: the intent's owner is another
    process whose lease has lapsed; the actor makes it this process's (and
    drops that owner's index entry once the record is no longer its)."""

    tenant: str
    intent_id: str
    take_over: bool = False
    entry_owner: str = ""  # whose index entry led here ("": none)
    record: IntentRecord | None = None  # as just written by the asker, if it has it


@message("exoarmur.intent.recheck", timeout=TimeoutCategory.KV_GET)
class Recheck:
    """A decision an intent may wait for has changed (an approval stored, a
    kill switch set): to the router, which tells the live intent actors it
    names (`intent_id` "": every one of `tenant`; `tenant` "": every one),
    and to each of those, which looks at its gates again now rather than at
    its next poll. Lost or late, it costs only that wait."""

    tenant: str = ""
    intent_id: str = ""


@message("exoarmur.intent.admit", timeout=TimeoutCategory.KV_GET)
class Admit:
    """To the tenants' desk (actors/tenants/desk.py), before a submission
    creates an intent: answers "" if this process owns the tenant and its
    limits admit one more (counted until `Released`), else the owner's id
    (the submission is forwarded there). Refused with RATE_LIMITED or
    OVERLOAD_TENANT_QUOTA. `forwarded`: sent here by another process that
    took this one for the owner: admitted here (never forwarded again)."""

    tenant: str
    forwarded: bool = False


@message("exoarmur.intent.released", timeout=TimeoutCategory.KV_GET)
class Released:
    """To the tenants' desk: an intent it admitted settled (or was never
    created: a duplicate, a failed create)."""

    tenant: str
