"""Trying a NATS call again while NATS is not there yet.

A process restarted after kill -9 often starts beside a nats-server that is
itself still recovering its streams: a `started` hook that opens a bucket or
a stream would fail at its first timeout and take the whole start down.
`patiently` asks again instead, while the failure is NATS's (a dependency
code or a timeout), each failure reported (audited, and counted by the
caller's supervisor), with a doubling pause between tries; the caller's
cancel scope (a `started` hook's deadline) is what bounds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from exoarmur.actors.nats.errors import DEPENDENCY_CODES
from exoarmur.runtime import TIMEOUT_CODES, ActorContext, ExoarmurError
from exoarmur.runtime.margins import STARTUP_RETRY_FIRST, STARTUP_RETRY_MAX

__all__ = ["patiently"]

T = TypeVar("T")


async def patiently(context: ActorContext, attempt: Callable[[], Awaitable[T]], *, what: str) -> T:
    pause = STARTUP_RETRY_FIRST
    while True:
        try:
            return await attempt()
        except ExoarmurError as exc:
            if exc.code not in DEPENDENCY_CODES and exc.code not in TIMEOUT_CODES:
                raise
            context.report_failure(exc.code, f"{what}: {exc.detail}; trying again")
        await anyio.sleep(pause)
        pause = min(pause * 2, STARTUP_RETRY_MAX)
