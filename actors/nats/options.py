"""How the connection reaches NATS: its credentials (credentials.py), the
servers, and the client settings that keep nats-py's waits bounded
(docs/nats.md says why each one is set)."""

from __future__ import annotations

from typing import Any

import attrs

from exoarmur.actors.nats.credentials import Credentials

__all__ = ["ConnectionOptions"]


@attrs.frozen(kw_only=True)
class ConnectionOptions(Credentials):
    """The connection's settings. Secrets are never part of a repr."""

    urls: tuple[str, ...] = attrs.field(converter=tuple)
    name: str = "exoarmur"
    # A dead link is found after ping_interval x (max_outstanding_pings + 1).
    ping_interval: float = 2.0
    max_outstanding_pings: int = 2
    reconnect_time_wait: float = 0.5
    # Bounds a publish that waits for room in a full buffer (None: forever).
    flush_timeout: float = 2.0
    pending_size: int = 8 * 1024 * 1024
    # The watchdog: a reconnect stuck longer than this gets its socket aborted.
    stuck_after: float = 10.0

    def client_kwargs(self) -> dict[str, Any]:
        """nats-py's `connect` arguments, callbacks and connect timeout aside."""
        return {
            "servers": list(self.urls),
            "name": self.name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # the watchdog and the breaker bound it
            "reconnect_time_wait": self.reconnect_time_wait,
            "ping_interval": self.ping_interval,
            "max_outstanding_pings": self.max_outstanding_pings,
            "flush_timeout": self.flush_timeout,
            "pending_size": self.pending_size,
            **self.credential_kwargs(),
        }
