"""The desk's audit of the submissions it refuses, on the runtime's clock:
one record per tenant and window, each appended under one message id until
it is stored (sent again as it was after a failure, never merged into a new
one), no count lost or counted twice, and the last window appended at stop.
The audit chain is a script here (the real AuditStream deduplicates by
message id: tests/integration/test_audit_stream.py); what refuses is the
real `Admission`."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from exoarmur.actors.intents import IntentSetting
from exoarmur.actors.intents.gates import SwitchesCheck
from exoarmur.actors.intents.messages import Admit
from exoarmur.actors.nats import Append
from exoarmur.actors.tenants import TenantDesk, TenantLimits
from exoarmur.runtime import Actor, ActorSystem, DependencyFailed, ExoarmurError, ReasonCode, handles
from exoarmur.runtime.margins import REFUSALS_WINDOW

pytestmark = pytest.mark.anyio


class ScriptedChain(Actor):
    """Answers Append with a position, or fails the first `failing` ones;
    keeps every (message id, event) it was sent and those it stored."""

    def __init__(self, *, sent: list, stored: dict, failing: int) -> None:
        self.sent, self.stored, self.failing = sent, stored, failing

    @handles(Append)
    def append(self, m: Append) -> int:
        self.sent.append(m.msg_id)
        if self.failing:
            self.failing -= 1
            raise DependencyFailed(ReasonCode.NATS_DISCONNECTED, "the stream is away")
        self.stored.setdefault(m.msg_id, m.event)  # a message id stored twice is one record
        return len(self.stored)


class Idle(Actor):
    """Stands for the buckets and the lease the desk looks up and, here, never asks."""


async def refuse(desk, tenant: str, n: int) -> Counter:
    codes: Counter = Counter()
    for _ in range(n):
        try:
            await desk.ask(Admit(tenant, forwarded=True))
            codes["admitted"] += 1
        except ExoarmurError as exc:
            codes[exc.code.value] += 1
    return codes


async def test_refusals_are_counted_per_window_and_a_failed_append_is_sent_again_as_it_was(anyio_backend_name):
    if anyio_backend_name != "trio":
        pytest.skip("whole windows of virtual time: trio's MockClock")
    sent: list = []
    stored: dict = {}
    setting = IntentSetting(owner="p-1", records="records", open="open", lease="lease", types={})
    async with ActorSystem() as system:
        for name in ("records", "open", "lease", "owners"):
            await system.spawn(Idle, name=name)
        await system.spawn(ScriptedChain, name="chain", kwargs={"sent": sent, "stored": stored, "failing": 1})
        limits = TenantLimits(rate=0.001, burst=1.0)  # one token, then refusals
        desk_args = {"setting": setting, "owners": "owners", "default": limits, "audit": "chain"}
        desk = await system.spawn(TenantDesk, name="desk", kwargs=desk_args)
        first = await refuse(desk, "acme", 4) + await refuse(desk, "globex", 2)
        await anyio.sleep(REFUSALS_WINDOW * 1.5)  # the first window's append fails
        assert len(sent) == 1 and stored == {}
        second = await refuse(desk, "acme", 2)
        await anyio.sleep(REFUSALS_WINDOW)  # sent again, then the next
        third = await refuse(desk, "acme", 3)
    # at stop: the last window
    assert (first, second, third) == ({"admitted": 2, "RATE_LIMITED": 4}, {"RATE_LIMITED": 2}, {"RATE_LIMITED": 3})
    assert sent[0] == sent[1] and len(set(sent)) == len(stored) == 4  # acme and globex, acme, acme at stop
    events = list(stored.values())
    assert [e["tenant"] for e in events] == ["acme", "globex", "acme", "acme"]
    assert sum(e["refused"]["RATE_LIMITED"] for e in events) == 4 + 2 + 3
    assert all(e["kind"] == "admission" and e["owner"] == "p-1" and e["from"] <= e["to"] for e in events)
    assert events[0]["to"] <= events[2]["from"] and events[2]["to"] <= events[3]["from"]  # windows never overlap


class SlowGates(Actor):
    """Answers a kill-switch check after a while (a loaded store): clear."""

    def __init__(self, *, asked: list) -> None:
        self.asked = asked

    @handles(SwitchesCheck, concurrent=True)
    async def switches_check(self, m: SwitchesCheck) -> str:
        self.asked.append(m.tenant)
        await anyio.sleep(0.05)
        return ""


async def test_a_flood_of_refusals_reads_a_tenants_switches_once_at_a_time():
    """The refusals that meet the switches stale share one read (no herd)."""
    asked: list = []
    setting = IntentSetting(owner="p-1", records="records", open="open", lease="lease", types={})
    async with ActorSystem() as system:
        for name in ("records", "open", "lease", "owners"):
            await system.spawn(Idle, name=name)
        await system.spawn(SlowGates, name="gates", kwargs={"asked": asked})
        limits = TenantLimits(rate=0.001, burst=1.0)
        desk_args = {"setting": setting, "owners": "owners", "default": limits, "gates": "gates"}
        desk = await system.spawn(TenantDesk, name="desk", kwargs=desk_args)
        codes: Counter = Counter()

        async def one(tenant: str) -> None:
            codes.update(await refuse(desk, tenant, 1))

        async with anyio.create_task_group() as group:
            for n in range(60):
                group.start_soon(one, ("acme", "globex")[n % 2])
    assert codes == {"admitted": 2, "RATE_LIMITED": 58}
    assert sorted(asked) == ["acme", "globex"]
