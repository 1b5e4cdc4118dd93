"""The chaos tests run on both backends with real clocks, as the integration
tests do (the same fixture: real nats-server processes, real sockets)."""

from tests.integration.conftest import anyio_backend

__all__ = ["anyio_backend"]
