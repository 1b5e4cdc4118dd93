"""The `[nats]` section: where NATS is, and how to authenticate.

    [nats]
    urls = []                  # empty: start the embedded nats-server (the default)
    data_dir = "exoarmur-data/nats"  # the embedded server's data; a path given in a
                               # file is relative to that file, the default to the cwd
    sync_always = true         # the embedded server fsyncs every JetStream write
    # Credentials for an existing deployment; each may also come from the
    # environment (EXOARMUR_NATS_TOKEN, _USER, _PASSWORD, _CREDS_FILE,
    # _NKEYS_SEED_FILE), which wins over the file.
    # token = "..."  user = "..."  password = "..."  creds_file = "..."
    # nkeys_seed_file = "..."  tls_ca_file = "..."  tls_cert_file = "..."  tls_key_file = "..."

`exoarmur run --nats-url URL` (repeatable) replaces `urls`. Secrets never
appear in a repr or in `exoarmur config`: they show as "***".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.errors import InvalidInput

__all__ = ["MASK", "NatsConfig", "parse_nats"]

MASK = "***"
SECRETS = ("token", "password")
_STRINGS = ("token", "user", "password", "creds_file", "nkeys_seed_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
KEYS = ("urls", "data_dir", "sync_always", *_STRINGS)
ENVIRONMENT = {
    "EXOARMUR_NATS_TOKEN": "token",
    "EXOARMUR_NATS_USER": "user",
    "EXOARMUR_NATS_PASSWORD": "password",
    "EXOARMUR_NATS_CREDS_FILE": "creds_file",
    "EXOARMUR_NATS_NKEYS_SEED_FILE": "nkeys_seed_file",
}
DEFAULT_DATA_DIR = "exoarmur-data/nats"


@attrs.frozen(kw_only=True)
class NatsConfig:
    urls: tuple[str, ...] = ()
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    sync_always: bool = True
    token: str | None = attrs.field(default=None, repr=False)
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    creds_file: str | None = None
    nkeys_seed_file: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @property
    def embedded(self) -> bool:
        """No URL given: the process starts its own server."""
        return not self.urls

    def with_urls(self, urls: tuple[str, ...]) -> NatsConfig:
        return attrs.evolve(self, urls=tuple(urls))

    def with_environment(self, environ: Mapping[str, str]) -> NatsConfig:
        found = {field: environ[name] for name, field in ENVIRONMENT.items() if environ.get(name)}
        return attrs.evolve(self, **found) if found else self

    def shown(self) -> dict[str, Any]:
        """TOML-shaped, secrets masked, unset keys left out."""
        data: dict[str, Any] = {"urls": list(self.urls), "data_dir": str(self.data_dir), "sync_always": self.sync_always}
        for key in _STRINGS:
            value = getattr(self, key)
            if value is not None:
                data[key] = MASK if key in SECRETS else value
        return data


def parse_nats(table: Mapping[str, Any], *, source: str, base_dir: Path | None) -> NatsConfig:
    def invalid(key: str, problem: str) -> InvalidInput:
        return InvalidInput(ReasonCode.CONFIG_INVALID, f"{source}: nats.{key}: {problem}")

    for key in table:
        if key not in KEYS:
            raise invalid(key, f"unknown key (expected one of: {', '.join(KEYS)})")
    urls = table.get("urls", [])
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) and u.strip() for u in urls):
        raise invalid("urls", f"must be a list of non-empty strings, got {urls!r}")
    for url in urls:
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise invalid("urls", f"{url!r} is not a nats://, tls://, ws:// or wss:// URL")
    data_dir = table.get("data_dir", DEFAULT_DATA_DIR)
    if not isinstance(data_dir, str) or not data_dir.strip():
        raise invalid("data_dir", f"must be a non-empty string, got {data_dir!r}")
    path = Path(data_dir).expanduser()
    if "data_dir" in table and not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    sync_always = table.get("sync_always", True)
    if not isinstance(sync_always, bool):
        raise invalid("sync_always", f"must be true or false, got {sync_always!r}")
    strings: dict[str, str] = {}
    for key in _STRINGS:
        if key in table:
            value = table[key]
            if not isinstance(value, str) or not value:
                shown = MASK if key in SECRETS else repr(value)
                raise invalid(key, f"must be a non-empty string, got {shown}")
            strings[key] = value
    return NatsConfig(urls=tuple(urls), data_dir=path, sync_always=sync_always, **strings)
