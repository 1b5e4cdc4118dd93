"""Every config key from the environment: `EXOARMUR_<SECTION>__<KEY>...`.

    EXOARMUR_TENANTS__DEFAULT__RATE=50        [tenants.default] rate = 50
    EXOARMUR_INTENTS__LEASE_TTL=30            [intents] lease_ttl = 30
    EXOARMUR_NATS__URLS='["nats://a:4222"]'   [nats] urls = [...]
    EXOARMUR_SYSTEM__NAME=edge-1              [system] name = "edge-1"

Double underscores separate the path; each part is lowercased. A value is
read as a TOML value (`50`, `true`, `2.5`, `["a", "b"]`, `"quoted"`) and,
if it is not one, taken as a string. The overrides are laid over the
file's tables before anything is checked, so a value from the environment
is checked exactly as the file's would be; a bad one is CONFIG_INVALID
naming the variable. Keys that are not lowercase names (a mailbox pattern
such as `tenant/*`, a tenant named in capitals) cannot be reached this way.

The older variables without a path (EXOARMUR_NATS_TOKEN, ...: the
credentials, actors/app/nats_config.py) still work, and win.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["PREFIX", "overlaid", "overrides"]

PREFIX = "EXOARMUR_"
_PART = re.compile(r"[a-z0-9_]+")


def overrides(environ: Mapping[str, str], *, sections: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], Any]]:
    """variable -> (the key's path, its value), for every EXOARMUR_*__* variable."""
    found: dict[str, tuple[tuple[str, ...], Any]] = {}
    for name, text in sorted(environ.items()):
        if not name.startswith(PREFIX) or "__" not in name:
            continue
        path = tuple(part.lower() for part in name[len(PREFIX) :].split("__"))
        if len(path) < 2 or not all(_PART.fullmatch(part) for part in path):
            raise _invalid(name, "must name a key as SECTION__KEY (letters, digits and _ between double underscores)")
        if path[0] not in sections:
            raise _invalid(name, f"unknown section {path[0]!r} (expected one of: {', '.join(sections)})")
        found[name] = (path, _value(text))
    return found


def overlaid(data: Mapping[str, Any], found: Mapping[str, tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """The file's tables with the overrides laid over them (a copy)."""
    result = _copy(data)
    for name, (path, value) in found.items():
        table = result
        for part in path[:-1]:
            inner = table.setdefault(part, {})
            if not isinstance(inner, dict):
                raise _invalid(name, f"{'.'.join(path[: path.index(part) + 1])} is not a table")
            table = inner
        table[path[-1]] = value
    return result


def named(detail: str, found: Mapping[str, tuple[tuple[str, ...], Any]]) -> str:
    """The variable a config error is about, if its key is one that was overridden ("" if none)."""
    for name, (path, _) in found.items():
        if ".".join(path) in detail:
            return name
    return ""


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    return value


def _invalid(name: str, problem: str) -> InvalidInput:
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"environment {name}: {problem}")
