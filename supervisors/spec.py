"""What a supervisor supervises: child specs, restart types, strategies.

Restart types (OTP's `restart()`), applied when a child exits:
- `permanent`: always restarted.
- `transient`: restarted only after an abnormal exit. Normal means the child
  stopped on purpose (in OTP: reason `normal`, `shutdown` or `{shutdown, _}`);
  a crash, or a failure of its `started` hook, is abnormal.
- `temporary`: never restarted, whatever the exit.

Strategies (`to_restart`), applied when a child that `should_restart` exits:
- `one_for_one`: only that child is restarted.
- `one_for_all`: every child is stopped and all are started again.
- `rest_for_one`: that child and every child started after it.
The affected children are stopped in reverse start order (`shutdown_order`;
the failed one is already down) and started again in start order. As in OTP, a
temporary child among the affected siblings is stopped and removed, not started
again: the supervisor filters them with `should_restart`.

Shutdown of one child: ask it to stop, wait `shutdown` seconds, then cancel it;
`BRUTAL` cancels at once (OTP's `brutal_kill`). There is no infinite wait.

Specs are checked when built: a bad one raises `InvalidInput(CONFIG_INVALID)`
naming the field.
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from exoarmur.runtime import Actor
from exoarmur.runtime import RetryPolicy
from exoarmur.supervisors import _checks
from exoarmur.supervisors.backoff import NO_BACKOFF, BackoffPolicy
from exoarmur.supervisors.breaker import BreakerPolicy
from exoarmur.supervisors.intensity import DEFAULT_INTENSITY, RestartIntensity


class Restart(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


def should_restart(restart: Restart, *, abnormal: bool) -> bool:
    """Whether a child of this restart type is restarted after this exit."""
    restart = Restart(restart)
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return bool(abnormal)
    return False


class Strategy(enum.StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def to_restart(strategy: Strategy, *, children: Sequence[str], failed: str) -> list[str]:
    """The children restarted after `failed` exits, in start order.

    `children` are the names of the supervisor's children in start order; `failed`
    must be one of them (ValueError otherwise: a bug in the caller)."""
    strategy = Strategy(strategy)
    if isinstance(children, str):
        raise TypeError("children must be a sequence of names, not a str")
    names = list(children)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate child names in {names!r}")
    if failed not in names:
        raise ValueError(f"{failed!r} is not one of the children {names!r}")
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return names
    return names[names.index(failed) :]


def shutdown_order(names: Sequence[str]) -> list[str]:
    """The order to stop children listed in start order: the reverse."""
    return list(reversed(names))


class Brutal(enum.Enum):
    BRUTAL = "brutal_kill"


BRUTAL = Brutal.BRUTAL
"""Shutdown without waiting: the child is cancelled at once."""

# ---- checks ---------------------------------------------------------------------

_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")  # one segment of runtime.system's actor paths


def _name(value: Any, owner: str, field: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise _checks.invalid(
            owner, field, f"must be a path segment of [A-Za-z0-9_.-]+, got {_checks.shown(value)}"
        )
    return value


def _actor(value: Any, owner: str, field: str) -> type[Actor]:
    if not (isinstance(value, type) and issubclass(value, Actor)):
        raise _checks.invalid(
            owner, field, f"must be a subclass of runtime.Actor, got {_checks.shown(value)}"
        )
    return value


def _kwargs(value: Any, owner: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _checks.invalid(owner, field, f"must be a mapping, got {_checks.shown(value)}")
    for key in value:
        if not (isinstance(key, str) and key.isidentifier()):
            raise _checks.invalid(
                owner, field, f"keys must be identifiers, got {_checks.shown(key)}"
            )
    return MappingProxyType(dict(value))  # a copy: later changes to `value` do not leak in


def _shutdown(value: Any, owner: str, field: str) -> float | Brutal:
    if value is BRUTAL or value in ("brutal_kill", "brutal"):
        return BRUTAL
    if not (_checks.is_real(value) and math.isfinite(value) and value > 0):
        raise _checks.invalid(
            owner,
            field,
            f"must be finite seconds > 0 or BRUTAL, got {_checks.shown(value)}",
        )
    return float(value)


def _tenant(value: Any, owner: str, field: str) -> str | None:
    if value is not None and not (isinstance(value, str) and value):
        raise _checks.invalid(
            owner, field, f"must be None or a non-empty str, got {_checks.shown(value)}"
        )
    return value


def _retry(value: Any, owner: str, field: str) -> RetryPolicy | None:
    if value is None or isinstance(value, RetryPolicy):
        return value
    raise _checks.invalid(owner, field, f"must be a RetryPolicy or None, got {value!r}")


def _breaker(value: Any, owner: str, field: str) -> BreakerPolicy | None:
    if value is not None and not isinstance(value, BreakerPolicy):
        raise _checks.invalid(
            owner, field, f"must be None or a BreakerPolicy, got {_checks.shown(value)}"
        )
    return value


# ---- specs -----------------------------------------------------------------------


@attrs.frozen
class ChildSpec:
    """One child: what to start and how to treat its exits. `kwargs` is a frozen
    (shallow) copy, checked against the actor's `__init__` signature."""

    name: str = attrs.field(converter=_checks.converter(_name))
    actor: type[Actor] = attrs.field(converter=_checks.converter(_actor))
    kwargs: Mapping[str, Any] = attrs.field(
        kw_only=True, factory=dict, converter=_checks.converter(_kwargs), hash=False
    )
    restart: Restart = attrs.field(
        kw_only=True, default=Restart.PERMANENT, converter=_checks.choice(Restart)
    )
    shutdown: float | Brutal = attrs.field(
        kw_only=True, default=5.0, converter=_checks.converter(_shutdown)
    )
    backoff: BackoffPolicy = attrs.field(
        kw_only=True, default=NO_BACKOFF, converter=_checks.instance_of(BackoffPolicy)
    )
    breaker: BreakerPolicy | None = attrs.field(
        kw_only=True, default=None, converter=_checks.converter(_breaker)
    )
    tenant: str | None = attrs.field(
        kw_only=True, default=None, converter=_checks.converter(_tenant)
    )
    # With a retry policy, the envelope a crash interrupted is handed to the fresh
    # instance again, if it carries an idempotency key (attempt + 1, same deadline).
    retry: RetryPolicy | None = attrs.field(
        kw_only=True, default=None, converter=_checks.converter(_retry)
    )

    def __attrs_post_init__(self) -> None:
        signature = _signature(self.actor)
        if signature is None:  # no introspectable signature (a C-level __init__): nothing to check
            return
        try:
            signature.bind(**self.kwargs)
        except TypeError as exc:
            raise _checks.invalid(
                "ChildSpec", "kwargs", f"{self.actor.__qualname__}() would refuse them: {exc}"
            ) from None


@functools.lru_cache(maxsize=1024)
def _signature(actor: type) -> inspect.Signature | None:
    """An actor class's signature, read once per class (a spec is made per
    start of a child: one per intent)."""
    try:
        return inspect.signature(actor)
    except ValueError:
        return None


def _children(value: Any, owner: str, field: str) -> tuple[ChildSpec, ...]:
    if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
        raise _checks.invalid(
            owner, field, f"must be a sequence of ChildSpec, got {_checks.shown(value)}"
        )
    children = tuple(value)
    seen: set[str] = set()
    for child in children:
        if not isinstance(child, ChildSpec):
            raise _checks.invalid(owner, field, f"must hold ChildSpecs, got {_checks.shown(child)}")
        if child.name in seen:
            raise _checks.invalid(owner, field, f"duplicate child name {child.name!r}")
        seen.add(child.name)
    return children


@attrs.frozen
class SupervisorSpec:
    """A supervisor: its strategy, its restart intensity, its children in start order.

    The default intensity is 3 restarts in 5 s (Elixir's default; OTP's is 1 in 5)."""

    strategy: Strategy = attrs.field(converter=_checks.choice(Strategy))
    intensity: RestartIntensity = attrs.field(
        kw_only=True, default=DEFAULT_INTENSITY, converter=_checks.instance_of(RestartIntensity)
    )
    children: tuple[ChildSpec, ...] = attrs.field(
        kw_only=True, default=(), converter=_checks.converter(_children)
    )

    @property
    def names(self) -> tuple[str, ...]:
        """The children's names, in start order (what `to_restart` takes)."""
        return tuple(child.name for child in self.children)
