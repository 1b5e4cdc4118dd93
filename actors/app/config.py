"""The process configuration: one TOML file, parsed strictly into a frozen `Config`.

    [system]
    name = "exoarmur"          # any non-empty string
    stop_timeout = 5.0         # seconds for the graceful stop of every actor together

    [timeouts]                 # category (case-insensitive) = seconds; see runtime/timeouts.py
    kv_get = 2.0

    [mailbox."tenant/*"]       # fnmatch pattern on the actor path; first match wins,
    capacity = 100             # in file order. Either key may be left out: it then
    overflow = "reject"        # keeps the class's value (reject|wait|shed_oldest)

    [audit]
    path = "audit.jsonl"       # JSONL file, relative to the config file; absent: in memory

    [nats]                     # see actors/app/nats_config.py; empty urls: embedded server
    urls = ["nats://10.0.0.5:4222"]

    [state]
    dir = ".exoarmur"          # this process's state: its lock, owner id, connection file,
                               # the embedded server's data; relative to the file (default: the cwd)

    [intents]
    lease_ttl = 20.0           # seconds an owner's lease holds without renewal
    max_attempts = 3           # applies of one intent, in all, before RETRY_EXHAUSTED
    resume_interval = 5.0      # seconds between scans for intents to resume or take over
    drain = 3.0                # seconds a stop lets an apply in flight end (within stop_timeout)

    [execution_types.ledger]   # one table per execution type: its options
    path = "ledger.jsonl"      # (`class = "pkg.mod:Type"` registers a type by dotted path)

    [log]                      # actors/app/logs.py
    format = "auto"            # json | text | auto (text on a terminal, else JSON)
    level = "info"

    [http]                     # actors/app/http_config.py: health and metrics
    port = 9464                # on 127.0.0.1; 0: any free port

    [tree]
    factory = "exoarmur.actors.app.tree:build_tree"   # "module:function", loaded when the process runs

    [tree.options]             # free-form, handed to the factory as config.tree_options
    pings = 3

Every section and key is optional; a missing one takes the default above (the
defaults are `Config()`, and `actors/app/default_config.toml` spells them out).
Every key can also come from the environment, `EXOARMUR_<SECTION>__<KEY>`
(actors/app/env_config.py: `EXOARMUR_TENANTS__DEFAULT__RATE=50`), laid over
the file before it is checked. The credentials' own variables
(EXOARMUR_NATS_TOKEN, ...: actors/app/nats_config.py) come on top, through
`with_environment`. The CLI applies both for `run` and for `config` alike, so
what `config` shows is what `run` uses.
Anything else — an unknown section or key, a wrong type, a bad value, a file
that cannot be read or is not TOML — raises `InvalidInput(CONFIG_INVALID)` whose
detail names the file and the key.
"""

from __future__ import annotations

import datetime
import importlib.resources
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from exoarmur.actors.app.env_config import named, overlaid, overrides
from exoarmur.actors.app.http_config import HttpConfig, parse_http
from exoarmur.actors.app.logs import LogConfig, parse_log
from exoarmur.actors.app.nats_config import NatsConfig, parse_nats
from exoarmur.actors.app.tenant_config import parse_tenants, tenants_shown
from exoarmur.actors.tenants import TenantLimits
from exoarmur.runtime import (
    InvalidInput,
    MailboxConfig,
    Overflow,
    ReasonCode,
    TimeoutCategory,
    TimeoutPolicy,
    validate_capacity,
)

DEFAULT_FACTORY = "exoarmur.actors.app.tree:build_tree"
DEFAULT_SOURCE = "<built-in default_config.toml>"

_SECTIONS = (
    "system", "timeouts", "mailbox", "audit", "nats", "state", "intents", "execution_types", "tenants", "log", "http", "tree"
)  # fmt: skip
_STATE_KEYS = ("dir",)
_INTENTS_KEYS = ("lease_ttl", "max_attempts", "resume_interval", "drain")
DEFAULT_STATE_DIR = ".exoarmur"
_SYSTEM_KEYS = ("name", "stop_timeout")
_MAILBOX_KEYS = ("capacity", "overflow")
_AUDIT_KEYS = ("path",)
_TREE_KEYS = ("factory", "options")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_FACTORY = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def _frozen(value: Any) -> Any:
    """Tables become read-only mappings and arrays tuples, all the way down."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value


@attrs.frozen(kw_only=True)
class Config:
    """The effective configuration of one process. `source` says where it came from."""

    name: str = "exoarmur"
    stop_timeout: float = 5.0
    timeouts: TimeoutPolicy = attrs.field(factory=TimeoutPolicy)
    # fnmatch pattern -> mailbox settings; first match wins, in this order.
    mailboxes: Mapping[str, MailboxConfig] = attrs.field(
        factory=dict, converter=lambda m: MappingProxyType(dict(m))
    )
    audit_path: Path | None = None
    nats: NatsConfig = attrs.field(factory=NatsConfig)
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    lease_ttl: float = 20.0
    max_attempts: int = 3
    resume_interval: float = 5.0
    drain: float = 3.0  # seconds a stop lets an intent's apply in flight end and be written
    # name -> that type's table (options; `class` for a dotted path)
    execution_types: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen)
    tenant_default: TenantLimits = attrs.field(factory=TenantLimits)  # [tenants.default]
    tenant_limits: Mapping[str, TenantLimits] = attrs.field(factory=dict, converter=_frozen)  # [tenants.<T>]
    log: LogConfig = attrs.field(factory=LogConfig)
    http: HttpConfig = attrs.field(factory=HttpConfig)
    tree_factory: str = DEFAULT_FACTORY
    tree_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen)
    source: str = attrs.field(default="<defaults>", eq=False)

    @property
    def nats_data_dir(self) -> Path:
        """The embedded server's data: `[nats] data_dir`, or `<state dir>/nats`."""
        return self.nats.data_dir if self.nats.data_dir is not None else self.state_dir / "nats"


# ---- loading ----------------------------------------------------------------


def default_config_path() -> Path:
    """The package data file `actors/app/default_config.toml`."""
    return Path(str(importlib.resources.files("exoarmur.actors.app").joinpath("default_config.toml")))


def load_config(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and parse a TOML file (None: the built-in default config), with
    `environ`'s EXOARMUR_<SECTION>__<KEY> overrides laid over it."""
    if path is None:
        text = importlib.resources.files("exoarmur.actors.app").joinpath("default_config.toml").read_text(
            encoding="utf-8"
        )
        return parse_config_text(text, source=DEFAULT_SOURCE, base_dir=None, environ=environ)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(str(file), None, f"cannot read: {exc}") from exc
    return parse_config_text(text, source=str(file), base_dir=file.parent, environ=environ)


def parse_config_text(
    text: str, *, source: str, base_dir: Path | None, environ: Mapping[str, str] | None = None
) -> Config:
    """Parse TOML text; `base_dir` anchors a relative audit path (None: the
    cwd); `environ`'s overrides are checked as the file's keys are
    (actors/app/env_config.py), an error in one naming its variable."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _invalid(source, None, f"not valid TOML: {exc}") from exc
    found = overrides(environ or {}, sections=_SECTIONS)
    try:
        return parse_config(overlaid(data, found), source=source, base_dir=base_dir)
    except InvalidInput as exc:
        name = named(exc.detail, found)
        if not name:
            raise
        raise InvalidInput(ReasonCode.CONFIG_INVALID, f"environment {name}: {exc.detail}") from None


def parse_config(
    data: Mapping[str, Any], *, source: str, base_dir: Path | None = None
) -> Config:
    """Validate already-decoded TOML (a mapping of sections) into a `Config`."""
    _only(data, _SECTIONS, source=source, where=())
    system = _table(data, "system", source=source)
    _only(system, _SYSTEM_KEYS, source=source, where=("system",))
    audit = _table(data, "audit", source=source)
    _only(audit, _AUDIT_KEYS, source=source, where=("audit",))
    tree = _table(data, "tree", source=source)
    _only(tree, _TREE_KEYS, source=source, where=("tree",))
    state = _table(data, "state", source=source)
    _only(state, _STATE_KEYS, source=source, where=("state",))
    intents = _table(data, "intents", source=source)
    _only(intents, _INTENTS_KEYS, source=source, where=("intents",))
    tenant_default, tenant_limits = parse_tenants(_table(data, "tenants", source=source), source=source)
    return Config(
        name=_name(system.get("name", "exoarmur"), source=source),
        stop_timeout=_seconds(system.get("stop_timeout", 5.0), source=source),
        timeouts=_timeouts(_table(data, "timeouts", source=source), source=source),
        mailboxes=_mailboxes(_table(data, "mailbox", source=source), source=source),
        audit_path=_audit_path(audit.get("path"), source=source, base_dir=base_dir),
        nats=parse_nats(_table(data, "nats", source=source), source=source, base_dir=base_dir),
        state_dir=_state_dir(state.get("dir"), source=source, base_dir=base_dir),
        lease_ttl=_positive(intents.get("lease_ttl", 20.0), "intents.lease_ttl", source=source, limit=3600.0),
        max_attempts=_count(intents.get("max_attempts", 3), "intents.max_attempts", source=source),
        resume_interval=_positive(
            intents.get("resume_interval", 5.0), "intents.resume_interval", source=source, limit=3600.0
        ),
        drain=_drain(intents.get("drain", 3.0), source=source),
        execution_types=_execution_types(_table(data, "execution_types", source=source), source=source),
        tenant_default=tenant_default,
        tenant_limits=tenant_limits,
        log=parse_log(_table(data, "log", source=source), source=source),
        http=parse_http(_table(data, "http", source=source), source=source),
        tree_factory=_factory(tree.get("factory", DEFAULT_FACTORY), source=source),
        tree_options=_table(tree, "options", source=source, where=("tree",)),
        source=source,
    )


def with_environment(config: Config, environ: Mapping[str, str]) -> Config:
    """`config` with the environment's overrides applied (they win over the file)."""
    return attrs.evolve(config, nats=config.nats.with_environment(environ))


# ---- one check per key ---------------------------------------------------------


def _invalid(source: str, key: str | None, problem: str) -> InvalidInput:
    where = f"{source}: {key}" if key else source
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"{where}: {problem}")


def _key(*parts: str) -> str:
    """A TOML key path, quoting the parts that are not bare keys."""
    return ".".join(p if _BARE_KEY.match(p) else _toml_string(p) for p in parts)


def _toml_string(text: str) -> str:
    # JSON escapes every control character but DEL; TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _only(
    table: Mapping[str, Any], allowed: tuple[str, ...], *, source: str, where: tuple[str, ...]
) -> None:
    for key in table:
        if key not in allowed:
            what = "key" if where else "section"
            raise _invalid(
                source, _key(*where, key), f"unknown {what} (expected one of: {', '.join(allowed)})"
            )


def _table(
    data: Mapping[str, Any], key: str, *, source: str, where: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise _invalid(source, _key(*where, key), f"must be a table, got {_type(value)}")
    return value


def _type(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _name(value: object, *, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(source, "system.name", f"must be a non-empty string, got {_type(value)}")
    return value


def _seconds(value: object, *, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(source, "system.stop_timeout", f"must be a number of seconds, got {_type(value)}")
    if not (math.isfinite(value) and value > 0):
        raise _invalid(source, "system.stop_timeout", f"must be finite and > 0, got {value!r}")
    return float(value)


def _timeouts(table: Mapping[str, Any], *, source: str) -> TimeoutPolicy:
    seen: dict[str, str] = {}
    for key in table:
        if key.upper() in seen:
            raise _invalid(
                source, _key("timeouts", key), f"same category as timeouts.{seen[key.upper()]}"
            )
        seen[key.upper()] = key
    try:
        return TimeoutPolicy.with_overrides(table)
    except InvalidInput as exc:
        known = ", ".join(c.name.lower() for c in TimeoutCategory)
        raise _invalid(source, "timeouts", f"{exc.detail} (categories: {known})") from exc


def _mailboxes(table: Mapping[str, Any], *, source: str) -> dict[str, MailboxConfig]:
    result: dict[str, MailboxConfig] = {}
    for pattern, entry in table.items():
        if not pattern:
            raise _invalid(source, _key("mailbox", pattern), "the path pattern is empty")
        where = _key("mailbox", pattern)
        if not isinstance(entry, Mapping):
            raise _invalid(source, where, f"must be a table, got {_type(entry)}")
        _only(entry, _MAILBOX_KEYS, source=source, where=("mailbox", pattern))
        if not entry:
            raise _invalid(source, where, "empty: give capacity, overflow or both")
        capacity = entry.get("capacity")
        if capacity is not None:
            try:
                capacity = validate_capacity(capacity)
            except ValueError as exc:
                raise _invalid(source, f"{where}.capacity", str(exc)) from exc
        overflow = entry.get("overflow")
        if overflow is not None and overflow not in {o.value for o in Overflow}:
            allowed = ", ".join(o.value for o in Overflow)
            raise _invalid(source, f"{where}.overflow", f"must be one of {allowed}, got {_type(overflow)}")
        result[pattern] = MailboxConfig(capacity=capacity, overflow=overflow)
    return result


def _audit_path(value: object, *, source: str, base_dir: Path | None) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(source, "audit.path", f"must be a non-empty string, got {_type(value)}")
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def _state_dir(value: object, *, source: str, base_dir: Path | None) -> Path:
    if value is None:
        return Path(DEFAULT_STATE_DIR)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(source, "state.dir", f"must be a non-empty string, got {_type(value)}")
    path = Path(value).expanduser()
    return base_dir / path if not path.is_absolute() and base_dir is not None else path


def _positive(value: object, key: str, *, source: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(source, key, f"must be a number of seconds, got {_type(value)}")
    if not (math.isfinite(value) and 0 < value <= limit):
        raise _invalid(source, key, f"must be > 0 and at most {limit:g}, got {value!r}")
    return float(value)


def _drain(value: object, *, source: str) -> float:
    """Seconds >= 0; the stop's own deadline (system.stop_timeout) bounds it too."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and 0 <= value <= 3600):
        raise _invalid(source, "intents.drain", f"must be a number of seconds from 0 to 3600, got {_type(value)}")
    return float(value)


def _count(value: object, key: str, *, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise _invalid(source, key, f"must be an integer from 1 to 100, got {_type(value)}")
    return value


def _execution_types(table: Mapping[str, Any], *, source: str) -> Mapping[str, Any]:
    """Each entry a table (its options are checked by the type itself when
    the registry builds it)."""
    for name, entry in table.items():
        if not isinstance(entry, Mapping):
            raise _invalid(source, _key("execution_types", name), f"must be a table, got {_type(entry)}")
    return table


def _factory(value: object, *, source: str) -> str:
    if not isinstance(value, str) or not _FACTORY.match(value):
        raise _invalid(
            source, "tree.factory", f'must be "package.module:function", got {_type(value)}'
        )
    return value


# ---- showing it -----------------------------------------------------------------


def config_to_dict(config: Config) -> dict[str, Any]:
    """The effective config as TOML-shaped data (every timeout category spelled out)."""
    data: dict[str, Any] = {
        "system": {"name": config.name, "stop_timeout": config.stop_timeout},
        "timeouts": {c.name.lower(): s for c, s in config.timeouts.seconds.items()},
        "mailbox": {
            pattern: {
                key: value
                for key, value in (("capacity", m.capacity), ("overflow", m.overflow and m.overflow.value))
                if value is not None
            }
            for pattern, m in config.mailboxes.items()
        },
        "audit": {} if config.audit_path is None else {"path": str(config.audit_path)},
        "nats": config.nats.shown(),
        "state": {"dir": str(config.state_dir)},
        "intents": {
            "lease_ttl": config.lease_ttl,
            "max_attempts": config.max_attempts,
            "resume_interval": config.resume_interval,
            "drain": config.drain,
        },
        "execution_types": _thawed(config.execution_types),
        "tenants": tenants_shown(config.tenant_default, config.tenant_limits),
        "log": attrs.asdict(config.log),
        "http": attrs.asdict(config.http),
        "tree": {"factory": config.tree_factory, "options": _thawed(config.tree_options)},
    }
    return data


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thawed(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thawed(item) for item in value]
    return value


def config_to_json(config: Config) -> str:
    return json.dumps(config_to_dict(config), indent=2, default=_json_default)


def _json_default(value: object) -> str:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"cannot show {_type(value)}")


def config_to_toml(config: Config) -> str:
    """TOML text that loads back (with `parse_config_text`) to an equal config."""
    lines = [f"# effective configuration (from {config.source})"]
    _emit_table(lines, config_to_dict(config), ())
    return "\n".join(lines) + "\n"


def _emit_table(lines: list[str], table: Mapping[str, Any], path: tuple[str, ...]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append(f"[{_key(*path)}]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        _emit_table(lines, value, (*path, key))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"cannot show {_type(value)}")
