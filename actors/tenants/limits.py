"""A tenant's limits, kept by the one process that owns the tenant
(actors/tenants/owners.py), so they hold for the tenant as a whole.

    rate     submissions per second, a token bucket (RATE_LIMITED past it)
    burst    tokens the bucket holds (0: one second's worth, at least one)
    quota    the tenant's intents not yet settled at once (OVERLOAD_TENANT_QUOTA past it)

0 means no limit. `Admission` is the owner's state for its tenants: pure,
driven by the time it is given, so every rule is tested on a fake clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import attrs

from exoarmur.runtime import Overloaded, ReasonCode

__all__ = ["Admission", "TenantLimits", "TokenBucket"]


@attrs.frozen(kw_only=True)
class TenantLimits:
    rate: float = 0.0
    burst: float = 0.0
    quota: int = 0

    @property
    def capacity(self) -> float:
        return self.burst or max(self.rate, 1.0)


class TokenBucket:
    """`rate` tokens a second, at most `capacity` held; a take spends one."""

    __slots__ = ("rate", "capacity", "tokens", "at")

    def __init__(self, *, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.at = capacity, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + max(now - self.at, 0.0) * self.rate)
        self.at = max(now, self.at)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self) -> float:
        """Seconds until the next token (for the refusal's detail)."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class Admission:
    """Whether a tenant's submission may become an intent now."""

    def __init__(self, limits: Mapping[str, TenantLimits], *, default: TenantLimits) -> None:
        self.limits, self.default = limits, default
        self.buckets: dict[str, TokenBucket] = {}
        self.unsettled: Counter[str] = Counter()  # the tenant's intents admitted and not yet settled

    def of(self, tenant: str) -> TenantLimits:
        return self.limits.get(tenant, self.default)

    def admit(self, tenant: str, *, now: float) -> None:
        """Take the tenant's token and count the intent; refuse with the code otherwise."""
        limits = self.of(tenant)
        if limits.quota and self.unsettled[tenant] >= limits.quota:
            raise Overloaded(
                ReasonCode.OVERLOAD_TENANT_QUOTA,
                f"tenant {tenant} has {self.unsettled[tenant]} intents not yet settled, its quota {limits.quota}",
            )
        if limits.rate:
            bucket = self.buckets.get(tenant)
            if bucket is None:
                bucket = self.buckets[tenant] = TokenBucket(rate=limits.rate, capacity=limits.capacity, now=now)
            if not bucket.take(now):
                raise Overloaded(
                    ReasonCode.RATE_LIMITED,
                    f"tenant {tenant} submits more than {limits.rate:g}/s: try again in {math.ceil(bucket.wait() * 1000)} ms",
                )
        self.unsettled[tenant] += 1

    def settled(self, tenant: str) -> None:
        if self.unsettled[tenant] > 0:
            self.unsettled[tenant] -= 1

    def recount(self, counts: Mapping[str, int]) -> None:
        """The unsettled intents as the index has them (a told end can be lost)."""
        self.unsettled = Counter({tenant: n for tenant, n in counts.items() if n})
