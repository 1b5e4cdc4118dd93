"""How to authenticate to NATS, declared once.

`Credentials` is the one list of credential fields. The `[nats]` config
section (`NatsConfig`, actors/app/nats_config.py) and the connection's options
(`ConnectionOptions`, options.py) are Credentials plus settings of their own,
so a field added here is parsed, masked, taken from the environment and
handed to nats-py without another line elsewhere.

Each field says in its metadata whether it is a secret (never in a repr,
shown as "***") and whether the environment may supply it
(EXOARMUR_NATS_<NAME>, which wins over the file): `SECRETS`,
`FROM_ENVIRONMENT`.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs

from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["CREDENTIALS", "FILES", "FROM_ENVIRONMENT", "MASK", "SECRETS", "Credentials", "redact_url"]

MASK = "***"

C = TypeVar("C", bound="Credentials")

# Field metadata keys.
SECRET = "secret"
ENVIRONMENT = "environment"
_SECRET_FROM_ENVIRONMENT = {SECRET: True, ENVIRONMENT: True}
_FROM_ENVIRONMENT = {SECRET: False, ENVIRONMENT: True}
_FROM_FILE_ONLY = {SECRET: False, ENVIRONMENT: False}


@attrs.frozen(kw_only=True)
class Credentials:
    """Who this process is to NATS; every field optional (None: not used).
    Secrets are never part of a repr."""

    token: str | None = attrs.field(default=None, repr=False, metadata=_SECRET_FROM_ENVIRONMENT)
    user: str | None = attrs.field(default=None, metadata=_FROM_ENVIRONMENT)
    password: str | None = attrs.field(default=None, repr=False, metadata=_SECRET_FROM_ENVIRONMENT)
    creds_file: str | None = attrs.field(default=None, metadata=_FROM_ENVIRONMENT)
    nkeys_seed_file: str | None = attrs.field(default=None, metadata=_FROM_ENVIRONMENT)
    tls_ca_file: str | None = attrs.field(default=None, metadata=_FROM_FILE_ONLY)
    tls_cert_file: str | None = attrs.field(default=None, metadata=_FROM_FILE_ONLY)
    tls_key_file: str | None = attrs.field(default=None, metadata=_FROM_FILE_ONLY)

    def credentials(self) -> dict[str, str | None]:
        """The credential fields by name (of a NatsConfig or ConnectionOptions too)."""
        return {name: getattr(self, name) for name in CREDENTIALS}

    def with_credentials_of(self: C, other: Credentials) -> C:
        """This, with `other`'s credentials in place of its own."""
        return attrs.evolve(self, **other.credentials())

    def check_files(self, *, source: str) -> None:
        """CONFIG_INVALID naming the first credential file that is not a
        readable file (before anything starts, not at the first connect)."""
        for name in FILES:
            path = getattr(self, name)
            if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
                raise InvalidInput(ReasonCode.CONFIG_INVALID, f"{source}: nats.{name}: {path!r} is not a readable file")

    def credential_kwargs(self) -> dict[str, Any]:
        """nats-py's `connect` arguments for these credentials."""
        kwargs: dict[str, Any] = {}
        if self.token is not None:
            kwargs["token"] = self.token
        if self.user is not None:
            kwargs["user"], kwargs["password"] = self.user, self.password
        if self.creds_file is not None:
            kwargs["user_credentials"] = self.creds_file
        if self.nkeys_seed_file is not None:
            kwargs["nkeys_seed"] = self.nkeys_seed_file
        if self.tls_ca_file or self.tls_cert_file:
            context = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            kwargs["tls"] = context
        return kwargs


CREDENTIALS: tuple[str, ...] = tuple(field.name for field in attrs.fields(Credentials))
FILES: tuple[str, ...] = tuple(name for name in CREDENTIALS if name.endswith("_file"))
SECRETS: frozenset[str] = frozenset(field.name for field in attrs.fields(Credentials) if field.metadata[SECRET])
FROM_ENVIRONMENT: tuple[str, ...] = tuple(
    field.name for field in attrs.fields(Credentials) if field.metadata[ENVIRONMENT]
)


def redact_url(url: str) -> str:
    """`url` fit to print: a password in it shown as "***" (and a user alone,
    which NATS takes as a token, too)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else MASK
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))
