"""Kill switches: one global, one per tenant, in the KV bucket `exoarmur_controls`.

    kill.global          the global switch
    kill.tenant.<T>      tenant T's
    value                {"v": 1, "active": bool, "who": str, "reason": str, "at": float}

A key never written is a switch never set. Setting and clearing both write
the value (a clear keeps who cleared it and why); each change is audited on
the `controls` chain (actors/controls/killswitch.py).

Reads that decide are leader reads (`Get`: never a direct get, which a stale
replica may answer), and a value that is not exactly the shape above counts
as active: a switch that cannot be read fails closed.

Why no apply starts after `exoarmur killswitch set` has answered: the set
is answered KILL_CHECK_FRESH after its write was acknowledged, and an apply
starts only within KILL_CHECK_FRESH of the moment the reads that cleared it
were sent (the intent actor reads again otherwise, and the type's actor
refuses a call past that: actors/intents/gates.py). So an apply that starts
after the answer was cleared by reads sent after the write was durable,
which saw it. Only durations are compared, never two processes' clocks.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from exoarmur.actors.intents.kills import kill_detail
from exoarmur.actors.intents.notes import stored_fields, stored_note, who_and_why
from exoarmur.actors.intents.record import check_tenant
from exoarmur.actors.nats import Get, KvEntry
from exoarmur.runtime import ActorRef, InvalidInput, ReasonCode, ask_all

__all__ = ["Switch", "invalid", "parse_change", "read_switches", "switch_key"]

_FIELDS = frozenset({"v", "active", "who", "reason", "at"})


def switch_key(tenant: str | None) -> str:
    """The key of `tenant`'s switch (None: the global one)."""
    return "kill.global" if tenant is None else f"kill.tenant.{tenant}"


@attrs.frozen(kw_only=True)
class Switch:
    tenant: str | None  # None: the global switch
    active: bool = False
    who: str = ""
    reason: str = ""
    at: float = 0.0  # wall clock of the last change (0: never set)
    revision: int = 0  # its KV revision (0: never set)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": 1, "active": self.active, "who": self.who, "reason": self.reason, "at": self.at})

    @classmethod
    def from_entry(cls, tenant: str | None, entry: KvEntry | None) -> Switch:
        """The switch as stored; an unreadable value is active (fail closed)."""
        if entry is None:
            return cls(tenant=tenant)
        try:
            value = stored_fields(entry.value, _FIELDS)
            who, reason, at = stored_note(value)
            active = value["active"]
            if not isinstance(active, bool):
                raise ValueError("`active` must be true or false")
        except ValueError as exc:
            return cls(tenant=tenant, active=True, reason=f"its stored value is unreadable ({exc}): failing closed",
                       revision=entry.revision)  # fmt: skip
        return cls(tenant=tenant, active=active, who=who, reason=reason, at=at, revision=entry.revision)

    def view(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "active": self.active, "who": self.who, "reason": self.reason,
                "at": self.at, "revision": self.revision}  # fmt: skip

    def says(self) -> str:
        """Why it stops an intent, for the intent's detail (replay reads the
        revision back: actors/intents/kills.py)."""
        return kill_detail(self.tenant, who=self.who, reason=self.reason, revision=self.revision)


async def read_switches(bucket: ActorRef, tenant: str, *, deadline: float | None = None) -> tuple[Switch, Switch]:
    """The global switch and `tenant`'s, read from the leader at once."""
    asks = [(bucket, Get(switch_key(None))), (bucket, Get(switch_key(tenant)))]
    every, own = await ask_all(asks, deadline=deadline)
    return Switch.from_entry(None, every), Switch.from_entry(tenant, own)


def parse_change(body: Any) -> tuple[str | None, str, str]:
    """A set or clear request's (tenant or None for the global switch, who,
    reason), checked strictly."""
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    unknown = sorted(set(body) - {"tenant", "who", "reason"})
    if unknown:
        raise invalid(f"unknown field {str(unknown[0])[:80]!r} (allowed: tenant, who, reason)")
    tenant = body.get("tenant")
    try:
        tenant = None if tenant is None else check_tenant(tenant)
    except InvalidInput as exc:
        raise invalid(exc.detail) from None
    who, reason = who_and_why(body, code=ReasonCode.CONTROL_INVALID)
    return tenant, who, reason


def invalid(detail: str) -> InvalidInput:
    return InvalidInput(ReasonCode.CONTROL_INVALID, detail)
