"""One call per key at a time, its outcome shared.

A desk's cached facts (a tenant's owner, its kill switches) go stale every
few seconds, and a tenant's subtree is started on its first submission; a
flood of submissions that meets a stale fact (or a tenant not started)
would otherwise make one call each, all at once, and the slower the calls
under that load, the more of them pile up. Here the first caller calls; the
ones that come while that call is in flight wait for it and get its value,
or its error raised again. A caller cancelled (its own deadline) ends
nobody else's wait with its cancellation: the next one in line calls in its
place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio

__all__ = ["SharedCalls"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("done", "value", "error", "ended")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ended = False  # True once it ended with a value or an error
        self.value: T | None = None
        self.error: Exception | None = None


class SharedCalls(Generic[K, T]):
    def __init__(self) -> None:
        self._flights: dict[K, _Flight[T]] = {}

    async def call(self, key: K, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`'s outcome, or that of the call for `key` in flight."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, call)
            await flight.done.wait()
            if flight.ended:
                if flight.error is not None:
                    raise flight.error.with_traceback(None)  # shared: not the leader's stack again
                return flight.value  # type: ignore[return-value]

    async def _lead(self, key: K, call: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights[key] = _Flight()
        try:
            flight.value = value = await call()
            flight.ended = True
            return value
        except Exception as exc:
            flight.error, flight.ended = exc, True
            raise
        finally:
            del self._flights[key]
            flight.done.set()
