"""`[http]` of the config: where the health and metrics server listens.

    [http]
    enabled = true
    address = "127.0.0.1"    # loopback only, unless allow_remote = true
    port = 9464              # 0: any free port (logged at start, shown by `exoarmur status`)
    allow_remote = false     # the explicit opt-in to listen outside loopback

Health and metrics say what the process is and does, and carry no
credentials; still, a listener outside loopback is refused at the start
unless `allow_remote` says it is meant (CONFIG_INVALID, exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from exoarmur.actors.app.nats_config import loopback
from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["HttpConfig", "parse_http"]

KEYS = ("enabled", "address", "port", "allow_remote")
DEFAULT_PORT = 9464


@attrs.frozen(kw_only=True)
class HttpConfig:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allow_remote: bool = False

    def check_secure(self) -> None:
        if self.enabled and not self.allow_remote and not loopback(self.address):
            raise InvalidInput(
                ReasonCode.CONFIG_INVALID,
                f"http.address: {self.address} is outside loopback: health and metrics would be open "
                "to the network; set http.allow_remote = true if that is meant",
            )


def parse_http(table: Mapping[str, Any], *, source: str) -> HttpConfig:
    for key in table:
        if key not in KEYS:
            raise _invalid(source, f"http.{key}", f"unknown key (expected one of: {', '.join(KEYS)})")
    for key in ("enabled", "allow_remote"):
        if key in table and not isinstance(table[key], bool):
            raise _invalid(source, f"http.{key}", f"must be true or false, got {table[key]!r}")
    address = table.get("address", "127.0.0.1")
    if not isinstance(address, str) or not address.strip() or len(address) > 253:
        raise _invalid(source, "http.address", f"must be a host name or an IP address, got {address!r}")
    port = table.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise _invalid(source, "http.port", f"must be an integer from 0 to 65535, got {port!r}")
    return HttpConfig(
        enabled=table.get("enabled", True), address=address, port=port, allow_remote=table.get("allow_remote", False)
    )


def _invalid(source: str, key: str, problem: str) -> InvalidInput:
    return InvalidInput(ReasonCode.CONFIG_INVALID, f"{source}: {key}: {problem}")
