"""The timeout policy table: one default deadline per category (docs/rules.md, "Timeouts").

Every envelope gets its deadline from here unless the sender gives one. A
category also names the code a handler fails with when it starts and then runs
out of time (`TIMEOUT_KV_GET` for a KV get); the uncategorised DEFAULT fails
with `DEADLINE_EXCEEDED`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.errors import InvalidInput


class TimeoutCategory(enum.Enum):
    NATS_CONNECT = ReasonCode.TIMEOUT_NATS_CONNECT
    NATS_PUBLISH = ReasonCode.TIMEOUT_NATS_PUBLISH
    NATS_SUBSCRIBE = ReasonCode.TIMEOUT_NATS_SUBSCRIBE
    NATS_REQUEST = ReasonCode.TIMEOUT_NATS_REQUEST
    NATS_STREAM_CREATE = ReasonCode.TIMEOUT_NATS_STREAM_CREATE
    KV_CREATE = ReasonCode.TIMEOUT_KV_CREATE
    KV_GET = ReasonCode.TIMEOUT_KV_GET
    KV_PUT = ReasonCode.TIMEOUT_KV_PUT
    KV_DELETE = ReasonCode.TIMEOUT_KV_DELETE
    EXECUTION_INTENT = ReasonCode.TIMEOUT_EXECUTION_INTENT
    EXECUTION_CONTAINMENT = ReasonCode.TIMEOUT_EXECUTION_CONTAINMENT
    EXECUTION_EXPIRATION = ReasonCode.TIMEOUT_EXECUTION_EXPIRATION
    APPROVAL_CHECK = ReasonCode.TIMEOUT_APPROVAL_CHECK
    APPROVAL_GRANT = ReasonCode.TIMEOUT_APPROVAL_GRANT
    REPLAY_PROCESSING = ReasonCode.TIMEOUT_REPLAY_PROCESSING
    REPLAY_VALIDATION = ReasonCode.TIMEOUT_REPLAY_VALIDATION
    API_REQUEST = ReasonCode.TIMEOUT_API_REQUEST
    API_VALIDATION = ReasonCode.TIMEOUT_API_VALIDATION
    DEFAULT = ReasonCode.DEADLINE_EXCEEDED

    @property
    def code(self) -> ReasonCode:
        """The code of a handler that started and ran out of time."""
        return self.value


# Seconds, as docs/rules.md's timeout table lists them (tests/test_docs.py holds
# the two equal). NATS_REQUEST: a publish plus the wait for its reply; DEFAULT:
# a message declared without a category.
DEFAULT_SECONDS: Mapping[TimeoutCategory, float] = MappingProxyType(
    {
        TimeoutCategory.NATS_CONNECT: 10.0,
        TimeoutCategory.NATS_PUBLISH: 5.0,
        TimeoutCategory.NATS_SUBSCRIBE: 5.0,
        TimeoutCategory.NATS_REQUEST: 5.0,
        TimeoutCategory.NATS_STREAM_CREATE: 15.0,
        TimeoutCategory.KV_CREATE: 10.0,
        TimeoutCategory.KV_GET: 5.0,
        TimeoutCategory.KV_PUT: 5.0,
        TimeoutCategory.KV_DELETE: 5.0,
        TimeoutCategory.EXECUTION_INTENT: 30.0,
        TimeoutCategory.EXECUTION_CONTAINMENT: 60.0,
        TimeoutCategory.EXECUTION_EXPIRATION: 120.0,
        TimeoutCategory.APPROVAL_CHECK: 5.0,
        TimeoutCategory.APPROVAL_GRANT: 10.0,
        TimeoutCategory.REPLAY_PROCESSING: 300.0,
        TimeoutCategory.REPLAY_VALIDATION: 60.0,
        TimeoutCategory.API_REQUEST: 30.0,
        TimeoutCategory.API_VALIDATION: 10.0,
        TimeoutCategory.DEFAULT: 30.0,
    }
)


def valid_seconds(value: object, *, what: str) -> float:
    """`value` as a number of seconds for a setting named `what`: CONFIG_INVALID
    unless it is a finite number > 0 (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(ReasonCode.CONFIG_INVALID, f"{what}: not a number: {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(ReasonCode.CONFIG_INVALID, f"{what}: must be finite and > 0, got {value!r}")
    return float(value)


@attrs.frozen
class TimeoutPolicy:
    """Seconds per category. Build with `TimeoutPolicy.with_overrides({...})`."""

    seconds: Mapping[TimeoutCategory, float] = attrs.field(
        default=DEFAULT_SECONDS, converter=lambda m: MappingProxyType(dict(m))
    )

    @classmethod
    def with_overrides(cls, overrides: Mapping[str | TimeoutCategory, object]) -> TimeoutPolicy:
        """Defaults, with the given categories replaced. Keys are category names
        (case-insensitive, e.g. "kv_get") or members; values are positive seconds."""
        table = dict(DEFAULT_SECONDS)
        for key, value in overrides.items():
            if isinstance(key, TimeoutCategory):
                category = key
            else:
                try:
                    category = TimeoutCategory[str(key).upper()]
                except KeyError:
                    raise InvalidInput(
                        ReasonCode.CONFIG_INVALID, f"unknown timeout category {key!r}"
                    ) from None
            table[category] = valid_seconds(value, what=f"timeout {category.name}")
        return cls(table)

    def __getitem__(self, category: TimeoutCategory) -> float:
        return self.seconds[category]
