"""Execution types and intents shared by the actors/execution tests.

`Scripted` does what the intent's params say, so one type covers every
answer: params["do"] for apply and revert, params["reconcile"] for reconcile.
Tests load it by dotted path too ("tests.actors.execution.support:Scripted").
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import attrs
import pytest

from exoarmur.actors.execution import ExecutionError, ExecutionType, IntentRecord, IntentState, Noop, Reconciled

@pytest.fixture(name="anyio_backend", params=["asyncio", "trio"])
def real_clocks(request):
    """`anyio_backend` with real clocks, for a module that imports this: file
    I/O runs in worker threads, and trio's MockClock would jump past every
    deadline while one works."""
    if request.param == "trio":
        return ("trio", {})
    return ("asyncio", {"debug": True, "loop_factory": asyncio.SelectorEventLoop})


RECONCILED = {"applied": Reconciled.APPLIED, "not_applied": Reconciled.NOT_APPLIED, "unknown": Reconciled.UNKNOWN}


def intent(type: str = "scripted", *, intent_id: str = "i-1", tenant: str = "acme", state: IntentState | None = None, **params: Any) -> IntentRecord:
    """A checked intent record of `type` with `params` (in `state`, if given)."""
    record = IntentRecord.received(
        intent_id=intent_id, tenant=tenant, type=type, params=params, owner="p-test", now=1.0, deadline=100.0
    )
    return record if state is None else attrs.evolve(record, state=state)


class Scripted(ExecutionType):
    """do: "ok" | "fail" (declared) | "undeclared" | "raise" | "hang" | "wait" (until `release`).
    reconcile: "applied" | "not_applied" | "unknown" | "raise" | "hang" | "bad"."""

    name = "scripted"
    concurrency = 2
    reasons = frozenset({"TARGET_GONE"})

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.release: anyio.Event | None = None
        self.calls: list[tuple[str, str, str]] = []  # (method, intent id, key)
        self.running = 0
        self.peak = 0
        self.cancelled = 0

    async def apply(self, intent: IntentRecord, key: str) -> None:
        await self._do("apply", intent, key)

    async def revert(self, intent: IntentRecord, key: str) -> None:
        await self._do("revert", intent, key)

    async def _do(self, method: str, intent: IntentRecord, key: str) -> None:
        self.calls.append((method, intent.id, key))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            do = intent.params.get("do", "ok")
            if do == "fail":
                raise ExecutionError("TARGET_GONE", "no such host")
            if do == "undeclared":
                raise ExecutionError("SOMETHING_ELSE", "not declared")
            if do == "raise":
                raise ConnectionResetError("peer reset")
            if do == "hang":
                await anyio.sleep_forever()
            if do == "wait":
                assert self.release is not None
                await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.running -= 1

    async def reconcile(self, intent: IntentRecord, key: str) -> Reconciled:
        self.calls.append(("reconcile", intent.id, key))
        how = intent.params.get("reconcile", "applied")
        if how == "raise":
            raise OSError("cannot read the effector's state")
        if how == "hang":
            await anyio.sleep_forever()
        if how == "bad":
            return "APPLIED"  # type: ignore[return-value]  # a str, not a Reconciled
        return RECONCILED[how]


class OneWay(Noop):
    """Applies, cannot revert."""

    name = "one_way"


class Misnamed(OneWay):
    """Loaded under another name than its own."""

    name = "misnamed"


class NotAType:
    name = "not_a_type"


def needs_a_host(*, host: str) -> None:
    """Not a class at all."""


class NeedsHost(OneWay):
    name = "needs_host"

    def __init__(self, *, host: str, port: int = 443) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        self.host = host
        self.port = port


class BrokenConfig(Scripted):
    """A from_config that breaks with an uncoded exception."""

    @classmethod
    def from_config(cls, options, *, state_dir):
        raise KeyError("oops")
