"""What an operator writes with a decision (a kill switch set or cleared, an
intent approved or denied): who, why, when; read strictly both ways.

    who_and_why(body, code=...)     -> (who, reason) of a request, or one coded refusal
    stored_fields(data, fields)     -> a stored value's JSON object, exactly those fields, "v": 1
    stored_note(value)              -> (who, reason, at) of a stored value

The stored forms raise ValueError for anything else: each caller turns that
into its fail-closed reading (an active switch, a denial).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["MAX_REASON", "MAX_WHO", "stored_fields", "stored_note", "who_and_why"]

MAX_REASON = 1000
MAX_WHO = 200


def who_and_why(body: dict[str, Any], *, code: ReasonCode) -> tuple[str, str]:
    who, reason = body.get("who", ""), body.get("reason", "")
    if not isinstance(who, str) or len(who) > MAX_WHO:
        raise InvalidInput(code, f"who must be a string of at most {MAX_WHO} characters")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise InvalidInput(code, f"reason must be a string of at most {MAX_REASON} characters")
    return who, reason


def stored_fields(data: bytes, fields: frozenset[str]) -> dict[str, Any]:
    value = orjson.loads(data)  # JSONDecodeError is a ValueError
    if not isinstance(value, dict) or set(value) != fields or type(value["v"]) is not int or value["v"] != 1:
        raise ValueError(f"not exactly the fields {', '.join(sorted(fields))}")
    return value


def stored_note(value: dict[str, Any]) -> tuple[str, str, float]:
    who, reason, at = value["who"], value["reason"], value["at"]
    if not (isinstance(who, str) and isinstance(reason, str)):
        raise ValueError("who and reason must be strings")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError("`at` is not a time")
    return who, reason, float(at)
