"""`[tenants]` of the config: each tenant's limits, `default` for the rest.

    [tenants.default]
    rate = 0        # submissions per second (a token bucket; 0: no limit)
    burst = 0       # tokens the bucket holds (0: one second's worth)
    quota = 0       # the tenant's intents not yet settled at once (0: no bound)
    [tenants.acme]
    rate = 50

A tenant's own table starts from the default's values. Every key is checked
here, before anything starts (CONFIG_INVALID naming it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from exoarmur.actors.intents.record import check_tenant
from exoarmur.actors.tenants import TenantLimits
from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["DEFAULT", "parse_tenants", "tenants_shown"]

DEFAULT = "default"
KEYS = ("rate", "burst", "quota")
MOST = 1_000_000.0


def parse_tenants(table: Mapping[str, Any], *, source: str) -> tuple[TenantLimits, Mapping[str, TenantLimits]]:
    """(the default limits, each named tenant's)."""
    default = _limits(table.get(DEFAULT, {}), TenantLimits(), source=source, where=DEFAULT)
    named: dict[str, TenantLimits] = {}
    for tenant, entry in table.items():
        if tenant == DEFAULT:
            continue
        try:
            check_tenant(tenant)
        except InvalidInput as exc:
            raise _invalid(source, f"tenants.{tenant}", exc.detail) from None
        named[tenant] = _limits(entry, default, source=source, where=tenant)
    return default, MappingProxyType(named)


def tenants_shown(default: TenantLimits, named: Mapping[str, TenantLimits]) -> dict[str, Any]:
    return {DEFAULT: attrs.asdict(default), **{tenant: attrs.asdict(limits) for tenant, limits in named.items()}}


def _limits(entry: object, base: TenantLimits, *, source: str, where: str) -> TenantLimits:
    if not isinstance(entry, Mapping):
        raise _invalid(source, f"tenants.{where}", f"must be a table, got {type(entry).__name__}")
    for key in entry:
        if key not in KEYS:
            raise _invalid(source, f"tenants.{where}.{key}", f"unknown key (expected one of: {', '.join(KEYS)})")
    values = attrs.asdict(base)
    for key in ("rate", "burst"):
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= MOST:
                raise _invalid(source, f"tenants.{where}.{key}", f"must be a number from 0 to {MOST:g}, got {value!r}")
            values[key] = float(value)
    if "quota" in entry:
        quota = entry["quota"]
        if isinstance(quota, bool) or not isinstance(quota, int) or not 0 <= quota <= MOST:
            raise _invalid(source, f"tenants.{where}.quota", f"must be an integer from 0 to {MOST:g}, got {quota!r}")
        values["quota"] = quota
    return TenantLimits(**values)


def _invalid(source: str, key: str, problem: str) -> InvalidInput:
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"{source}: {key}: {problem}")
