"""The execution-type plug-in API: what a user writes to make an effect.

    class Blocklist(ExecutionType):
        name = "blocklist"
        reasons = frozenset({"BAD_ADDRESS"})

        async def apply(self, intent, key): ...        # make the effect, once
        async def reconcile(self, intent, key): ...    # did it take effect?
        async def revert(self, intent, key): ...       # optional: undo it

An instance runs inside an `ExecutionActor` (actors/execution/actor.py), one
actor per type under the execution supervisor; docs/execution-types.md is the
user's guide. What each part promises:

- `apply` makes the effect once per call and returns None when it took
  effect. Raising `ExecutionError(reason, detail)` with one of the type's
  declared `reasons` says the effect certainly did NOT happen. Anything else
  (another exception, an undeclared reason, running past `timeout`) leaves
  it uncertain: the intent then asks `reconcile`, never applies blindly.
- `reconcile` answers from the effector's own state whether the apply with
  this key (or, while the intent is REVERTING, the revert) took effect:
  APPLIED, NOT_APPLIED, or UNKNOWN when it cannot tell. It never guesses:
  UNKNOWN ends the intent FAILED with RECONCILE_UNKNOWN for an operator.
- `revert` (optional) undoes an apply, with the same rules as `apply`;
  `revertible` is True iff a subclass defines it.

Settings are class attributes, checked when the class is defined (a bad one
raises ValueError or TypeError there); an instance may set its own `timeout`,
`concurrency`, `approval` and `approval_timeout` in `__init__` (from its
options), checked when loaded.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from exoarmur.actors.intents.effects import Reconciled
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.runtime import InvalidInput, ReasonCode
from exoarmur.supervisors import BackoffPolicy, BreakerPolicy

__all__ = ["NAME", "REASON", "ExecutionError", "ExecutionType", "construct", "setting_problem"]

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # the intent record's `type` field
REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_CODES = frozenset(code.value for code in ReasonCode)


class ExecutionError(Exception):
    """The effect certainly did not happen, for `reason` (one of the type's
    declared `reasons`; an undeclared one is a bug, taken as uncertain)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class ExecutionType:
    """The base of every execution type (a plain class, hosted by an actor)."""

    # Lowercase [a-z][a-z0-9_]{0,63}: the name intents give as their `type`,
    # the key of its config table and entry point, and its actor's name.
    name: ClassVar[str] = ""
    # Seconds one apply, revert or reconcile may take (capped by the asker's deadline).
    timeout: float = 10.0
    # Applies, reverts and reconciles of this type running at once, at most.
    concurrency: int = 16
    # The type's own failure reasons (UPPER_SNAKE, none a ReasonCode value).
    reasons: ClassVar[frozenset[str]] = frozenset()
    # The breaker the supervisor keeps for the type's actor: it counts the
    # type's timeouts and undeclared failures; while open, intents fail fast
    # with BREAKER_OPEN instead of waiting on a dependency that is down.
    breaker: ClassVar[BreakerPolicy | None] = BreakerPolicy(threshold=5, window=60.0, cooldown=10.0)
    # Between restarts of the type's actor (it crashes only on a bug of its
    # own: a type's exceptions are answers). A crashed call is never handed
    # to the new instance again: that would be a blind re-apply.
    backoff: ClassVar[BackoffPolicy] = BackoffPolicy(initial=0.1, factor=2.0, max_delay=10.0, jitter=0.2)
    # True iff the class defines `revert` (set by __init_subclass__).
    revertible: ClassVar[bool] = False
    # Whether its intents wait for an operator's approval (`exoarmur intent
    # approve`) before they execute; override `needs_approval` to decide
    # per intent. They wait `approval_timeout` seconds from their creation at
    # most (and never past their own deadline), then end EXPIRED.
    approval: bool = False
    approval_timeout: float = 3600.0
    # While the breaker is open, whether an intent about to execute waits for
    # the half-open probe (looking again every cooldown, while its deadline
    # leaves room) rather than end FAILED with BREAKER_OPEN at once.
    wait_for_breaker: ClassVar[bool] = True

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.reasons = frozenset(cls.reasons) if isinstance(cls.reasons, set | frozenset) else cls.reasons
        problem = setting_problem(cls, named=False)
        if problem is not None:
            field, text = problem
            raise ValueError(f"{cls.__qualname__}.{field}: {text}")
        for method in ("apply", "reconcile", "revert"):
            if not inspect.iscoroutinefunction(getattr(cls, method)):
                raise TypeError(f"{cls.__qualname__}.{method} must be an async def")
        cls.revertible = cls.revert is not ExecutionType.revert
        if cls.name and (cls.apply is ExecutionType.apply or cls.reconcile is ExecutionType.reconcile):
            raise TypeError(f"{cls.__qualname__}: an execution type defines apply and reconcile")

    @classmethod
    def from_config(cls, options: Mapping[str, Any], *, state_dir: Path) -> ExecutionType:
        """An instance from the type's config table (the keys other than
        `class`): `cls(**options)`. An option `__init__` does not take, or one
        it refuses, is CONFIG_INVALID naming `execution_types.<name>.<key>`.
        Override it to resolve paths against `state_dir` or convert values."""
        return construct(cls, options)

    @classmethod
    def invalid_option(cls, key: str, problem: str) -> InvalidInput:
        """The error for a bad option of this type's config table."""
        return InvalidInput(ReasonCode.CONFIG_INVALID, f"execution_types.{cls.name}.{key}: {problem}")

    def needs_approval(self, intent: IntentRecord) -> bool:
        """Whether `intent` waits for an approval first: `approval` unless
        overridden (a predicate on the intent: its params, its tenant). It
        must not block; if it raises, the intent waits for one (fail closed)."""
        return self.approval

    async def apply(self, intent: IntentRecord, key: str) -> None:
        """Make the effect of `intent`, once. Return when it took effect;
        raise ExecutionError(declared reason) when it certainly did not."""
        raise NotImplementedError

    async def reconcile(self, intent: IntentRecord, key: str) -> Reconciled:
        """Whether the apply with `key` took effect (the revert, while
        `intent.state` is REVERTING), from the effector's own state."""
        raise NotImplementedError

    async def revert(self, intent: IntentRecord, key: str) -> None:
        """Undo the apply with `key` (optional: define it to be revertible)."""
        raise NotImplementedError


def setting_problem(source: Any, *, named: bool = True) -> tuple[str, str] | None:
    """The first bad setting of an execution type (its class or an instance),
    as (field, problem); None if all hold. `named`: an empty name is one."""
    name = source.name
    if not isinstance(name, str) or (name or named) and not NAME.fullmatch(name):
        return "name", f"must match [a-z][a-z0-9_]{{0,63}}, got {name!r}"
    timeout = source.timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        return "timeout", f"must be finite seconds > 0, got {timeout!r}"
    concurrency = source.concurrency
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency <= 0:
        return "concurrency", f"must be an int > 0, got {concurrency!r}"
    reasons = source.reasons
    if not isinstance(reasons, frozenset):
        return "reasons", f"must be a set of names, got {reasons!r}"
    for reason in sorted(reasons, key=repr):
        if not isinstance(reason, str) or not REASON.fullmatch(reason):
            return "reasons", f"{reason!r} is not an UPPER_SNAKE name"
        if reason in _CODES:
            return "reasons", f"{reason} is a ReasonCode: declare a reason of the type's own"
    if not isinstance(source.wait_for_breaker, bool):
        return "wait_for_breaker", f"must be true or false, got {source.wait_for_breaker!r}"
    if not isinstance(source.approval, bool):
        return "approval", f"must be true or false, got {source.approval!r}"
    wait = source.approval_timeout
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait) or wait <= 0:
        return "approval_timeout", f"must be finite seconds > 0, got {wait!r}"
    if source.breaker is not None and not isinstance(source.breaker, BreakerPolicy):
        return "breaker", f"must be a BreakerPolicy or None, got {source.breaker!r}"
    if not isinstance(source.backoff, BackoffPolicy):
        return "backoff", f"must be a BackoffPolicy, got {source.backoff!r}"
    return None


def construct(cls: type[ExecutionType], options: Mapping[str, Any]) -> ExecutionType:
    """`cls(**options)`, every refusal CONFIG_INVALID naming the option."""
    table = f"execution_types.{cls.name}"
    parameters = inspect.signature(cls).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    takes = {n for n, p in parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    for key in options:
        if not open_ended and key not in takes:
            known = ", ".join(sorted(takes)) or "none"
            raise cls.invalid_option(key, f"unknown option (the type takes: {known})")
    for key, parameter in parameters.items():
        required = parameter.default is parameter.empty and parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        if required and key not in options:
            raise cls.invalid_option(key, "required")
    try:
        return cls(**options)
    except InvalidInput:
        raise
    except Exception as exc:
        where = f"{table}.{next(iter(options))}" if len(options) == 1 else table
        raise InvalidInput(ReasonCode.CONFIG_INVALID, f"{where}: {exc!r}") from exc
