"""A request to the intent service, read strictly: no I/O here, so every
way a request can be wrong is tested (and fuzzed) without a server.

    parse_request(subject, data)  -> (tenant, operation, body)
    new_record(tenant, body, ...) -> the RECEIVED record a submit would create
    wait_of(body)                 -> the seconds a submit or get waits for the end, or None

Every refusal is one coded error: INTENT_INVALID, TENANT_MISMATCH or
EXECUTION_TYPE_UNKNOWN, its detail naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


from exoarmur.actors.intents.record import IntentRecord, check_id, check_tenant
from exoarmur.actors.nats.json_replies import json_body
from exoarmur.runtime import InvalidInput, ReasonCode, TenantMismatch

__all__ = [
    "GET_FIELDS",
    "MAX_REQUEST",
    "MAX_TIMEOUT",
    "MAX_TTL",
    "MAX_WAIT",
    "OPERATIONS",
    "PREFIX",
    "new_record",
    "only",
    "parse_request",
    "wait_of",
]

PREFIX = "exoarmur.intents"
OPERATIONS = ("submit", "get", "list", "revert", "approve", "deny")
MAX_REQUEST = 64 * 1024
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_WAIT = 300.0  # seconds a submit or get may wait for its intent's end
SUBMIT_FIELDS = ("id", "type", "params", "timeout", "tenant", "wait", "ttl")
MAX_TTL = 30 * 24 * 3600.0  # a revert at most this long after SUCCEEDED
GET_FIELDS = ("id", "tenant", "wait")


def parse_request(subject: str, data: bytes) -> tuple[str, str, dict[str, Any]]:
    tenant, operation = _route(subject)
    body = json_body(data, limit=MAX_REQUEST, code=ReasonCode.INTENT_INVALID)
    if "tenant" in body and body["tenant"] != tenant:
        raise TenantMismatch(
            ReasonCode.TENANT_MISMATCH, f"the body names tenant {str(body['tenant'])[:80]!r}, the subject {tenant!r}"
        )
    return tenant, operation, body


def new_record(
    tenant: str,
    body: Mapping[str, Any],
    *,
    types: Mapping[str, object],
    owner: str,
    now: float,
    default_timeout: float,
) -> IntentRecord:
    only(body, SUBMIT_FIELDS)
    intent_id = check_id(body.get("id"))
    kind = body.get("type")
    if isinstance(kind, str) and kind not in types:
        raise InvalidInput(
            ReasonCode.EXECUTION_TYPE_UNKNOWN,
            f"no execution type {kind[:80]!r} (known: {', '.join(sorted(types))})",
        )
    return IntentRecord.received(
        intent_id=intent_id,
        tenant=tenant,
        type=kind,  # type: ignore[arg-type]  # checked by `received`
        params=body.get("params", {}),
        owner=owner,
        now=now,
        deadline=now + _seconds(body.get("timeout", default_timeout), "timeout", MAX_TIMEOUT),
        ttl=ttl_of(body),
    )


def ttl_of(body: Mapping[str, Any]) -> float:
    """`ttl`: seconds after SUCCEEDED the intent is reverted (0 < ttl <=
    MAX_TTL); 0.0 when the body has none."""
    value = body.get("ttl")
    return 0.0 if value is None else _seconds(value, "ttl", MAX_TTL)


def wait_of(body: Mapping[str, Any]) -> float | None:
    """`wait`: seconds to hold the reply until the intent is terminal
    (0 < wait <= MAX_WAIT); None when the body has none."""
    value = body.get("wait")
    return None if value is None else _seconds(value, "wait", MAX_WAIT)


def only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(ReasonCode.INTENT_INVALID, f"unknown field {unknown[0][:80]!r} (allowed: {', '.join(allowed)})")


def _route(subject: str) -> tuple[str, str]:
    parts = subject.split(".")
    if len(parts) != 4 or parts[3] not in OPERATIONS:
        raise InvalidInput(ReasonCode.INTENT_INVALID, f"subject must be {PREFIX}.<tenant>.<{'|'.join(OPERATIONS)}>")
    return check_tenant(parts[2]), parts[3]


def _seconds(value: object, name: str, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(ReasonCode.INTENT_INVALID, f"{name} must be a number of seconds, got {str(value)[:80]}")
    if not 0 < value <= most:
        raise InvalidInput(ReasonCode.INTENT_INVALID, f"{name} must be > 0 and at most {most:g} s")
    return float(value)
