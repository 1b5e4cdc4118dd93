"""Checks shared by the supervision records: one coded error for bad settings.

A bad setting (a policy value from code or config) is `InvalidInput` with
`CONFIG_INVALID` and a detail naming the record and field, e.g.
`RestartIntensity.within: must be finite and > 0, got nan`. A bad *call*
argument (a `now` that is NaN or goes backwards, an attempt of 0) is a bug in
the caller and raises a plain `ValueError`.

The converters here plug into attrs fields (`attrs.field(converter=...)`) so a
record is checked when it is built and again when it is `attrs.evolve`d.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, TypeGuard

import attrs

from exoarmur.runtime import ReasonCode
from exoarmur.runtime import InvalidInput


def invalid(owner: str, field: str, problem: str) -> InvalidInput:
    """The error for a bad setting: `Owner.field: problem`."""
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"{owner}.{field}: {problem}")


def shown(value: object) -> str:
    """A value as a detail shows it: its type and repr."""
    return f"{type(value).__name__} {value!r}"


def is_real(value: object) -> TypeGuard[int | float]:
    """An int or float that is not a bool (True is not 1 second)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def converter(check: Callable[[Any, str, str], Any]) -> attrs.Converter[Any, Any]:
    """An attrs converter calling `check(value, owner, field)` (owner: the class name)."""

    def convert(value: Any, instance: Any, field: attrs.Attribute[Any]) -> Any:
        return check(value, type(instance).__name__, field.name)

    return attrs.Converter(convert, takes_self=True, takes_field=True)


def count(*, minimum: int) -> attrs.Converter[Any, Any]:
    """An attrs converter accepting an int (not a bool) >= `minimum`."""

    def check(value: Any, owner: str, field: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(owner, field, f"must be an int >= {minimum}, got {shown(value)}")
        if value < minimum:
            raise invalid(owner, field, f"must be >= {minimum}, got {value!r}")
        return value

    return converter(check)


def real(
    *, minimum: float, inclusive: bool, maximum: float | None = None
) -> attrs.Converter[Any, Any]:
    """An attrs converter accepting a finite int or float (not a bool) above
    `minimum` (or equal to it if `inclusive`) and at most `maximum`; stored as float."""
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    if maximum is not None:
        bound += f" and <= {maximum:g}"

    def check(value: Any, owner: str, field: str) -> float:
        if not is_real(value):
            raise invalid(owner, field, f"must be a number, got {shown(value)}")
        above = value >= minimum if inclusive else value > minimum
        if not (math.isfinite(value) and above and (maximum is None or value <= maximum)):
            raise invalid(owner, field, f"must be finite and {bound}, got {value!r}")
        return float(value)

    return converter(check)


def instance_of(cls: type) -> attrs.Converter[Any, Any]:
    """An attrs converter accepting only instances of `cls` (unchanged)."""

    def check(value: Any, owner: str, field: str) -> Any:
        if not isinstance(value, cls):
            raise invalid(owner, field, f"must be a {cls.__name__}, got {shown(value)}")
        return value

    return converter(check)


def choice(enum_type: type[enum.Enum]) -> attrs.Converter[Any, Any]:
    """An attrs converter accepting a member of `enum_type` or its value (e.g. "permanent")."""

    def check(value: Any, owner: str, field: str) -> enum.Enum:
        try:
            return enum_type(value)
        except ValueError:
            known = ", ".join(str(member.value) for member in enum_type)
            raise invalid(owner, field, f"must be one of {known}, got {shown(value)}") from None

    return converter(check)


def instant(now: object, *, not_before: float = -math.inf) -> float:
    """A reading of the runtime clock: finite, and not earlier than `not_before`
    (the clock is monotonic). Anything else is a bug in the caller: ValueError."""
    if type(now) is float and -math.inf < now < math.inf and now >= not_before:
        return now  # the common case, checked in one line (once per restart)
    if not (is_real(now) and math.isfinite(now)):
        raise ValueError(f"now must be a finite number of seconds, got {shown(now)}")
    if now < not_before:
        raise ValueError(f"now went backwards: {now!r} < {not_before!r}")
    return float(now)
