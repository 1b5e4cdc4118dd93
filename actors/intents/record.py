"""The intent record: what is stored in KV, one key per (tenant, intent id).

    {"v": 1, "id": "i-1", "tenant": "acme", "type": "ledger", "params": {...},
     "state": "EXECUTING", "code": "", "detail": "", "key": "acme/i-1",
     "owner": "p-3f2a", "attempts": 1, "created": 1796000000.12,
     "updated": 1796000000.31, "deadline": 1796000030.12,
     "ttl": 3600.0, "revert_at": 0.0}

Times are wall-clock seconds since the epoch: a record outlives the process
(and the host) that wrote it. `key` is the idempotency key an execution type
is handed with every apply, reconcile and revert of this intent; `owner` is
the process whose lease covers the intent (actors/intents/leases.py);
`revision` is the KV revision the record was read or written at (not stored:
KV keeps it). `moved` is the only way to a new state, and it checks the
transition table (actors/intents/states.py). `ttl` (0: none) asks for a
revert that long after SUCCEEDED: `moved` to SUCCEEDED sets `revert_at`,
durable with it, and the intent's actor reverts it then (intent.py).

Decoding is strict, as every input from outside is: a record that is not
exactly this shape (a hand-edited or tampered value) is INTENT_INVALID, never
half-read. The same checks validate a submission's fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import orjson

from exoarmur.actors.intents.states import IntentState, allowed
from exoarmur.runtime import Conflict, InvalidInput, ReasonCode

__all__ = [
    "FORMAT",
    "IntentRecord",
    "Param",
    "check_id",
    "check_params",
    "check_tenant",
    "check_type",
    "intent_key",
]

FORMAT = 1
ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")
TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_PARAMS = 32
MAX_PARAM_TEXT = 1024
MAX_PARAMS_BYTES = 8192
MAX_DETAIL = 2048

Param = str | int | float | bool
_FIELDS = (
    "v", "id", "tenant", "type", "params", "state", "code", "detail",
    "key", "owner", "attempts", "created", "updated", "deadline", "ttl", "revert_at",
)  # fmt: skip


def _invalid(problem: str) -> InvalidInput:
    return InvalidInput(ReasonCode.INTENT_INVALID, problem)


def check_id(value: object) -> str:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise _invalid(f"id must be 1-128 characters of A-Z a-z 0-9 _ -, got {_shown(value)}")
    return value


def check_tenant(value: object) -> str:
    if not isinstance(value, str) or not TENANT.fullmatch(value):
        raise _invalid(f"tenant must be 1-64 characters of A-Z a-z 0-9 _ -, got {_shown(value)}")
    return value


def check_type(value: object) -> str:
    if not isinstance(value, str) or not TYPE.fullmatch(value):
        raise _invalid(f"type must be a lowercase name (a-z 0-9 _, 1-64), got {_shown(value)}")
    return value


def check_params(value: object) -> Mapping[str, Param]:
    """Parameters: at most MAX_PARAMS names, each a string, an integer, a
    finite float or a boolean, MAX_PARAMS_BYTES in all once encoded."""
    if not isinstance(value, Mapping):
        raise _invalid(f"params must be an object, got {_shown(value)}")
    if len(value) > MAX_PARAMS:
        raise _invalid(f"at most {MAX_PARAMS} params, got {len(value)}")
    for name, item in value.items():
        if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
            raise _invalid(f"param name {_shown(name)}: letters, digits, _ . - (1-64, not starting with a digit)")
        if isinstance(item, str):
            if len(item) > MAX_PARAM_TEXT:
                raise _invalid(f"param {name}: at most {MAX_PARAM_TEXT} characters")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _invalid(f"param {name}: must be finite")
        elif not isinstance(item, int | bool):
            raise _invalid(f"param {name}: must be a string, number or boolean, got {type(item).__name__}")
        elif not -(2**63) <= item < 2**63:
            raise _invalid(f"param {name}: an integer must fit in 64 bits")
    if len(orjson.dumps(dict(value))) > MAX_PARAMS_BYTES:
        raise _invalid(f"params take more than {MAX_PARAMS_BYTES} bytes")
    return MappingProxyType(dict(value))


def intent_key(tenant: str, intent_id: str) -> str:
    """The record's KV key (also the intent's idempotency key and its actor's name)."""
    return f"{tenant}.{intent_id}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _time(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _invalid(f"{name} must be a finite time in seconds, got {_shown(value)}")
    return float(value)


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _invalid(f"{name} must be a string of at most {limit} characters")
    return value


@attrs.frozen(kw_only=True)
class IntentRecord:
    id: str
    tenant: str
    type: str
    params: Mapping[str, Param] = attrs.field(factory=dict, converter=lambda p: MappingProxyType(dict(p)))
    state: IntentState = IntentState.RECEIVED
    code: str = ""
    detail: str = ""
    key: str = ""
    owner: str = ""
    attempts: int = 0
    created: float = 0.0
    updated: float = 0.0
    deadline: float = 0.0
    ttl: float = 0.0  # seconds after SUCCEEDED it is reverted (types with revert); 0: never
    revert_at: float = 0.0  # when, set as SUCCEEDED is written (0: no revert due)
    revision: int = attrs.field(default=0, eq=False)

    @classmethod
    def received(
        cls,
        *,
        intent_id: str,
        tenant: str,
        type: str,
        params: Mapping[str, Param],
        owner: str,
        now: float,
        deadline: float,
        ttl: float = 0.0,
    ) -> IntentRecord:
        """A new intent, its fields checked."""
        return cls(
            id=check_id(intent_id),
            tenant=check_tenant(tenant),
            type=check_type(type),
            params=check_params(params),
            key=f"{tenant}/{intent_id}",
            owner=owner,
            created=now,
            updated=now,
            deadline=_time(deadline, "deadline"),
            ttl=_time(ttl, "ttl"),
        )

    @property
    def kv_key(self) -> str:
        return intent_key(self.tenant, self.id)

    def moved(
        self,
        to: IntentState,
        *,
        now: float,
        code: str = "",
        detail: str = "",
        owner: str | None = None,
        attempt: bool = False,
    ) -> IntentRecord:
        """This record in state `to` (INTENT_STATE_INVALID if the table has no
        such edge); `attempt` counts a new apply or revert."""
        if not allowed(self.state, to):
            raise Conflict(ReasonCode.INTENT_STATE_INVALID, f"{self.kv_key}: {self.state} cannot move to {to}")
        updated = max(now, self.updated)
        return attrs.evolve(
            self,
            state=to,
            code=code,
            detail=detail[:MAX_DETAIL],
            owner=self.owner if owner is None else owner,
            attempts=self.attempts + 1 if attempt else self.attempts,
            updated=updated,
            revert_at=updated + self.ttl if to is IntentState.SUCCEEDED and self.ttl else self.revert_at,
        )

    def owned_by(self, owner: str, *, now: float) -> IntentRecord:
        """The same state under another owner (a takeover: not a transition)."""
        return attrs.evolve(self, owner=owner, updated=max(now, self.updated))

    def at(self, revision: int) -> IntentRecord:
        return attrs.evolve(self, revision=revision)

    # ---- encoding ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": FORMAT,
            "id": self.id,
            "tenant": self.tenant,
            "type": self.type,
            "params": dict(self.params),
            "state": self.state.value,
            "code": self.code,
            "detail": self.detail,
            "key": self.key,
            "owner": self.owner,
            "attempts": self.attempts,
            "created": self.created,
            "updated": self.updated,
            "deadline": self.deadline,
            "ttl": self.ttl,
            "revert_at": self.revert_at,
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: object, *, revision: int = 0) -> IntentRecord:
        if not isinstance(data, Mapping):
            raise _invalid(f"an intent record must be an object, got {_shown(data)}")
        if tuple(sorted(data)) != tuple(sorted(_FIELDS)):
            raise _invalid(f"an intent record has exactly the fields {', '.join(_FIELDS)}")
        if data["v"] != FORMAT or isinstance(data["v"], bool):
            raise _invalid(f"unknown record format {_shown(data['v'])}")
        try:
            state = IntentState(data["state"])
        except ValueError:
            raise _invalid(f"unknown state {_shown(data['state'])}") from None
        attempts = data["attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise _invalid(f"attempts must be an integer >= 0, got {_shown(attempts)}")
        return cls(
            id=check_id(data["id"]),
            tenant=check_tenant(data["tenant"]),
            type=check_type(data["type"]),
            params=check_params(data["params"]),
            state=state,
            code=_text(data["code"], "code", 64),
            detail=_text(data["detail"], "detail", MAX_DETAIL),
            key=_text(data["key"], "key", 256),
            owner=_text(data["owner"], "owner", 128),
            attempts=attempts,
            created=_time(data["created"], "created"),
            updated=_time(data["updated"], "updated"),
            deadline=_time(data["deadline"], "deadline"),
            ttl=_time(data["ttl"], "ttl"),
            revert_at=_time(data["revert_at"], "revert_at"),
            revision=revision,
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, revision: int = 0) -> IntentRecord:
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _invalid(f"an intent record is not JSON: {exc}") from None
        return cls.from_dict(decoded, revision=revision)
