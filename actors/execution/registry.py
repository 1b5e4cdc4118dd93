"""Where execution types come from, and the supervisor that runs them.

A type is found in one of two ways:

- an entry point in the group `exoarmur.execution_types` of an installed
  package (`blocklist = "my_effects:Blocklist"` in its pyproject.toml);
- a config table `[execution_types.<name>]` whose key `class` names it by
  dotted path (`class = "my_effects:Blocklist"`).

A table without `class` configures the entry-point type of its name. Four
keys any table may set override the type's own: `timeout` (seconds one
call may take), `concurrency` (calls at once), `approval` (whether its
intents wait for an operator's approval) and `approval_timeout` (for how
long at most). The other keys of a table
are the type's options (`ExecutionType.from_config`);
an entry-point type without a table is built with none. Every type found is
built when the process starts, so a broken one stops the start with
CONFIG_INVALID naming it, never an intent later.

`execution_spec` turns the types into a one_for_one supervisor with one
child per type (its actor, breaker and backoff) and the `TypeInfo` the
intent side needs of each: where its actor is, its timeout, whether it can
revert.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exoarmur.actors.execution.actor import ExecutionActor
from exoarmur.actors.execution.api import NAME, ExecutionType, setting_problem
from exoarmur.actors.execution.keys import KeyCalls
from exoarmur.actors.intents.effects import TypeInfo
from exoarmur.runtime import InvalidInput, ReasonCode
from exoarmur.supervisors import DEFAULT_INTENSITY, ChildSpec, Restart, RestartIntensity, Strategy, SupervisorSpec

__all__ = ["CLASS_KEY", "GROUP", "execution_spec", "load_types"]

GROUP = "exoarmur.execution_types"
CLASS_KEY = "class"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


SETTINGS = ("timeout", "concurrency", "approval", "approval_timeout")


def breaker_pause(execution_type: ExecutionType) -> float:
    """How long an intent waits for the type's open breaker before looking
    again: its cooldown, if the type waits at all (and has a breaker)."""
    breaker = execution_type.breaker
    return float(breaker.cooldown) if breaker is not None and execution_type.wait_for_breaker else 0.0


def _invalid(where: str, problem: str) -> InvalidInput:
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"{where}: {problem}")


def load_types(
    tables: Mapping[str, Any] | None = None,
    *,
    state_dir: Path,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> Mapping[str, ExecutionType]:
    """Every type found, by name, each built from its table (`tables` is the
    config's `execution_types`). `entry_points`: the group's entry points
    (default: those of the installed packages)."""
    tables = {} if tables is None else tables
    if not isinstance(tables, Mapping):
        raise _invalid("execution_types", f"must be a table, got {tables!r}")
    for name in tables:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise _invalid(f"execution_types.{name}", "a type's name must match [a-z][a-z0-9_]{0,63}")
    installed = _by_name(importlib.metadata.entry_points(group=GROUP) if entry_points is None else entry_points)
    types: dict[str, ExecutionType] = {}
    for name in sorted(set(installed) | set(tables)):
        where = f"execution_types.{name}"
        table = tables.get(name, {})
        if not isinstance(table, Mapping):
            raise _invalid(where, f"must be a table, got {table!r}")
        options = dict(table)
        dotted = options.pop(CLASS_KEY, None)
        if dotted is not None:
            cls = _import(dotted, where=f"{where}.{CLASS_KEY}")
        elif name in installed:
            cls = _load(installed[name])
        else:
            raise _invalid(where, f"no installed type of that name, and no `{CLASS_KEY}` naming one")
        types[name] = _build(cls, name, options, state_dir=Path(state_dir), where=where)
    return MappingProxyType(types)


def execution_spec(
    types: Mapping[str, ExecutionType],
    *,
    parent_path: str,
    intensity: RestartIntensity = DEFAULT_INTENSITY,
    gates: str = "",
) -> tuple[SupervisorSpec, Mapping[str, TypeInfo]]:
    """The supervisor of the types' actors (to run at `parent_path`; each
    child is named after its type), and each type's TypeInfo. `gates`: the
    path of the process's gates, which an apply whose kill-switch check
    went stale in the type's queue is checked with at its turn."""
    children = []
    infos: dict[str, TypeInfo] = {}
    for name, execution_type in types.items():
        if name != execution_type.name:
            raise _invalid(f"execution_types.{name}", f"holds the type named {execution_type.name!r}")
        children.append(
            ChildSpec(
                name,
                ExecutionActor.of(execution_type),
                kwargs={"execution_type": execution_type, "calls": KeyCalls(), "gates": gates},
                restart=Restart.PERMANENT,
                backoff=execution_type.backoff,
                breaker=execution_type.breaker,
            )
        )
        infos[name] = TypeInfo(
            name=name,
            path=f"{parent_path}/{name}",
            timeout=float(execution_type.timeout),
            revertible=execution_type.revertible,
            needs_approval=execution_type.needs_approval,
            approval_timeout=float(execution_type.approval_timeout),
            breaker_pause=breaker_pause(execution_type),
        )
    spec = SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=intensity, children=tuple(children))
    return spec, MappingProxyType(infos)


def _by_name(entry_points: Iterable[importlib.metadata.EntryPoint]) -> dict[str, importlib.metadata.EntryPoint]:
    """The group's entry points by name; one name for two classes is refused."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in entry_points:
        prior = found.get(entry_point.name)
        if prior is not None and prior.value != entry_point.value:
            raise _invalid(
                f"entry point {entry_point.name} ({GROUP})",
                f"installed twice, as {prior.value!r} and as {entry_point.value!r}",
            )
        found[entry_point.name] = entry_point
    return found


def _load(entry_point: importlib.metadata.EntryPoint) -> Any:
    try:
        return entry_point.load()
    except Exception as exc:
        raise _invalid(f"entry point {entry_point.name} = {entry_point.value!r} ({GROUP})", f"cannot load it: {exc!r}") from exc


def _import(dotted: object, *, where: str) -> Any:
    if not isinstance(dotted, str) or not _DOTTED.fullmatch(dotted):
        raise _invalid(where, f"must be a dotted path \"package.module:Class\", got {dotted!r}")
    try:
        return importlib.metadata.EntryPoint(name="", value=dotted, group=GROUP).load()
    except Exception as exc:
        raise _invalid(where, f"cannot load {dotted!r}: {exc!r}") from exc


def _build(cls: Any, name: str, options: dict[str, Any], *, state_dir: Path, where: str) -> ExecutionType:
    """The instance of type class `cls` for the table `where`, checked."""
    if not (isinstance(cls, type) and issubclass(cls, ExecutionType)):
        raise _invalid(where, f"{cls!r} is not a subclass of ExecutionType")
    if cls.name != name:
        raise _invalid(where, f"the class {cls.__module__}.{cls.__qualname__} is named {cls.name!r}, not {name!r}")
    # What every type's table may set, whatever the type: its child spec's settings.
    settings = {key: options.pop(key) for key in SETTINGS if key in options}
    try:
        instance = cls.from_config(options, state_dir=state_dir)
    except InvalidInput:
        raise
    except Exception as exc:
        raise _invalid(where, f"{cls.__qualname__}.from_config failed: {exc!r}") from exc
    if not isinstance(instance, cls):
        raise _invalid(where, f"{cls.__qualname__}.from_config returned {instance!r}, not an instance of it")
    for key, value in settings.items():
        setattr(instance, key, value)
    problem = setting_problem(instance)
    if problem is not None:
        raise _invalid(f"{where}.{problem[0]}", problem[1])
    return instance
