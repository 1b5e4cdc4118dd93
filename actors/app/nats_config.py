"""The `[nats]` section: where NATS is, and how to authenticate.

    [nats]
    urls = []                  # empty: start the embedded nats-server (the default)
    data_dir = "..."           # the embedded server's data (default: <state dir>/nats);
                               # a path given in a file is relative to that file
    sync_always = true         # the embedded server fsyncs every JetStream write
    replicas = 1               # of the KV buckets and streams this process creates (3 on a cluster)
    # Credentials for an existing deployment; each may also come from the
    # environment (EXOARMUR_NATS_TOKEN, _USER, _PASSWORD, _CREDS_FILE,
    # _NKEYS_SEED_FILE), which wins over the file.
    # token = "..."  user = "..."  password = "..."  creds_file = "..."
    # nkeys_seed_file = "..."  tls_ca_file = "..."  tls_cert_file = "..."  tls_key_file = "..."

The credential keys are `Credentials`' fields (actors/nats/credentials.py),
declared there once: which are secrets and which the environment may supply
is said there too. `exoarmur run --nats-url URL` (repeatable) replaces
`urls`. Secrets never appear in a repr or in `exoarmur config`: they show as
"***".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from exoarmur.actors.nats.credentials import CREDENTIALS, FROM_ENVIRONMENT, MASK, SECRETS, Credentials, redact_url
from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["ENVIRONMENT", "MASK", "NatsConfig", "parse_nats"]

KEYS = ("urls", "data_dir", "sync_always", "replicas", *CREDENTIALS)
# EXOARMUR_NATS_TOKEN -> token, and so on for each credential the
# environment may supply.
ENVIRONMENT = {f"EXOARMUR_NATS_{name.upper()}": name for name in FROM_ENVIRONMENT}


@attrs.frozen(kw_only=True)
class NatsConfig(Credentials):
    """The `[nats]` section: where NATS is, and the credentials to reach it."""

    urls: tuple[str, ...] = ()
    data_dir: Path | None = None  # None: <state dir>/nats (Config.nats_data_dir)
    sync_always: bool = True
    replicas: int = 1

    @property
    def embedded(self) -> bool:
        """No URL given: the process starts its own server."""
        return not self.urls

    def check_secure(self) -> None:
        """CONFIG_INVALID before anything starts if a URL outside loopback
        would be reached with neither credentials nor TLS (anyone on the
        network could then submit, approve, or set a kill switch)."""
        identified = any(getattr(self, name) for name in ("token", "user", "creds_file", "nkeys_seed_file"))
        for url in self.urls:
            parts = urlsplit(url)
            tls = parts.scheme in ("tls", "wss") or bool(self.tls_ca_file or self.tls_cert_file)
            if not (identified or tls or loopback(parts.hostname or "")):
                raise InvalidInput(
                    ReasonCode.CONFIG_INVALID,
                    f"nats.urls: {redact_url(url)} is outside loopback and would be reached with neither "
                    "credentials nor TLS: set a token, user and password, a creds file or an nkey seed "
                    "(EXOARMUR_NATS_TOKEN, ...), or use tls:// with [nats] tls_ca_file",
                )

    def with_urls(self, urls: tuple[str, ...]) -> NatsConfig:
        return attrs.evolve(self, urls=tuple(urls))

    def with_environment(self, environ: Mapping[str, str]) -> NatsConfig:
        found = {field: environ[name] for name, field in ENVIRONMENT.items() if environ.get(name)}
        return attrs.evolve(self, **found) if found else self

    def shown(self) -> dict[str, Any]:
        """TOML-shaped, secrets masked, unset keys left out."""
        data: dict[str, Any] = {
            "urls": [redact_url(url) for url in self.urls],
            "sync_always": self.sync_always,
            "replicas": self.replicas,
        }
        if self.data_dir is not None:
            data["data_dir"] = str(self.data_dir)
        for key, value in self.credentials().items():
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
    path = None
    if "data_dir" in table:
        data_dir = table["data_dir"]
        if not isinstance(data_dir, str) or not data_dir.strip():
            raise invalid("data_dir", f"must be a non-empty string, got {data_dir!r}")
        path = Path(data_dir).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    sync_always = table.get("sync_always", True)
    if not isinstance(sync_always, bool):
        raise invalid("sync_always", f"must be true or false, got {sync_always!r}")
    replicas = table.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
        raise invalid("replicas", f"must be an integer from 1 to 5 (JetStream's limit), got {replicas!r}")
    credentials: dict[str, str] = {}
    for key in CREDENTIALS:
        if key in table:
            value = table[key]
            if not isinstance(value, str) or not value:
                shown = MASK if key in SECRETS else repr(value)
                raise invalid(key, f"must be a non-empty string, got {shown}")
            credentials[key] = value
    return NatsConfig(urls=tuple(urls), data_dir=path, sync_always=sync_always, replicas=replicas, **credentials)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it could be anywhere
        return False

