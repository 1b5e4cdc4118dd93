"""Kill switches on a real nats-server: what they cover ends KILLED before
it applies, a switch that cannot be read fails closed, a set is answered
only once no apply can start, and an apply that waited its turn past its
check is checked again."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import anyio
import orjson
import pytest

from exoarmur.actors.execution import ExecutionActor, ExecutionType, Reconciled
from exoarmur.actors.intents import IntentRecord, IntentState, TypeInfo
from exoarmur.actors.controls import gates as gates_module
from exoarmur.actors.intents.gates import GateCheck
from exoarmur.actors.intents.replay import verify
from exoarmur.actors.nats import Put
from exoarmur.runtime import ask_all
from exoarmur.runtime.margins import KILL_CHECK_FRESH
from tests.integration.intents_support import intents_on
from tests.integration.support import eventually, running_server

pytestmark = pytest.mark.anyio
S = IntentState


async def test_a_tenant_switch_kills_its_tenants_intents_only_and_a_clear_lets_them_run(tmp_path):
    async with intents_on(tmp_path, gates=True) as it:
        started = time.monotonic()
        reply = await it.control("killswitch.set", {"tenant": "acme", "who": "ann@h", "reason": "drill"})
        assert time.monotonic() - started >= KILL_CHECK_FRESH  # answered once no apply can start
        assert reply["ok"] and reply["switch"]["active"] and reply["switch"]["who"] == "ann@h"
        await it.request("acme", "submit", {"id": "i-1", "type": "fx"})
        await it.request("other", "submit", {"id": "o-1", "type": "fx"})
        killed, other = await it.settled("acme", "i-1"), await it.settled("other", "o-1")
        assert (killed.state, killed.code) == (S.KILLED, "KILL_SWITCH_ACTIVE")
        revision = reply["switch"]["revision"]
        assert killed.detail == f"tenant acme's kill switch is active (set by ann@h: drill; revision {revision})"
        assert [e["record"]["state"] for e in await it.events("acme")] == ["RECEIVED", "KILLED"]
        assert other.state is S.SUCCEEDED
        status = await it.control("killswitch.status", {})
        assert status["active"] and [(s["tenant"], s["active"]) for s in status["switches"]] == [
            (None, False), ("acme", True)
        ]  # fmt: skip
        cleared = await it.control("killswitch.clear", {"tenant": "acme", "who": "bob@h", "reason": "over"})
        assert not cleared["switch"]["active"] and cleared["switch"]["revision"] > reply["switch"]["revision"]
        await it.request("acme", "submit", {"id": "i-2", "type": "fx"})
        assert (await it.settled("acme", "i-2")).state is S.SUCCEEDED
        assert it.effects == {("other/o-1", "apply"): 1, ("acme/i-2", "apply"): 1}
        events = [e for e in await it.events("", chain="controls")]
        assert [(e["kind"], e["action"], e["switch"]["who"], e["switch"]["reason"]) for e in events] == [
            ("killswitch", "set", "ann@h", "drill"), ("killswitch", "clear", "bob@h", "over")
        ]  # fmt: skip
        report = await verify(it.system, records_bucket="exoarmur_intents")
        assert report.ok, report.lines()  # the kill names a set the controls chain records


async def test_the_global_switch_kills_every_tenants_intents(tmp_path):
    async with intents_on(tmp_path, gates=True) as it:
        await it.control("killswitch.set", {"reason": "incident"})
        for tenant in ("acme", "globex"):
            await it.request(tenant, "submit", {"id": "i-1", "type": "fx"})
        for tenant in ("acme", "globex"):
            record = await it.settled(tenant, "i-1")
            assert (record.state, record.code) == (S.KILLED, "KILL_SWITCH_ACTIVE")
            assert record.detail.startswith("the global kill switch is active")
        assert it.effects == {}
        status = await it.control("killswitch.status", {"tenant": "acme"})
        assert status["active"] and [s["tenant"] for s in status["switches"]] == [None, "acme"]


@pytest.mark.parametrize(
    ("body", "names"), [({"tenant": "a b"}, "tenant"), ({"scope": "all"}, "unknown field"), (b"[1]", "object")]
)
async def test_a_bad_request_is_control_invalid_and_changes_nothing(tmp_path, body, names):
    async with intents_on(tmp_path, gates=True) as it:
        reply = await it.control("killswitch.set", body)
        assert (reply["ok"], reply["code"]) == (False, "CONTROL_INVALID") and names in reply["detail"]
        assert not (await it.control("killswitch.status", {}))["active"]
        assert (await it.control("killswitch.nope", {}))["code"] == "CONTROL_INVALID"


async def test_a_switch_that_cannot_be_read_fails_closed(tmp_path):
    """An unreadable stored value, then the switches' bucket gone: each
    intent that meets it ends KILLED and nothing is applied."""
    async with intents_on(tmp_path, gates=True) as it:
        await it.system.lookup("controls").ask(Put("kill.global", b"{garbage"))
        await it.request("acme", "submit", {"id": "i-1", "type": "fx"})
        record = await it.settled("acme", "i-1")
        assert (record.state, record.code) == (S.KILLED, "KILL_SWITCH_ACTIVE") and "unreadable" in record.detail
        await it.system.stop(it.system.lookup("controls"))
        await it.request("acme", "submit", {"id": "i-2", "type": "fx"})
        record = await it.settled("acme", "i-2")
        assert (record.state, record.code) == (S.KILLED, "KILL_SWITCH_ACTIVE")
        assert "could not be read" in record.detail and "failing closed" in record.detail
        assert it.effects == {}
        # Replay: the first kill names a switch revision written around the
        # audited service (no set records it); the second, failing closed, names none.
        report = await verify(it.system, records_bucket="exoarmur_intents")
        assert [(p.kind, p.intent) for p in report.problems] == [("kill_unrecorded", "i-1")], report.lines()


async def test_checks_share_one_clear_reading_and_a_switch_written_is_read_by_the_next(tmp_path, monkeypatch):
    """Twenty checks of one tenant at once make one read of its switches (two
    keys), all answered with when it was sent. A switch then written straight
    into KV, with no `set` and its wait, is read by the very next check: the
    watch tells the gates, and the clear reading is not used again (however
    fresh: here readings would be shared for an hour)."""
    monkeypatch.setattr(gates_module, "SWITCHES_SHARED", 3600.0)
    async with intents_on(tmp_path, gates=True) as it:
        controls, gates = it.system.lookup("controls"), it.system.lookup("gates")
        now = time.time()
        record = IntentRecord.received(intent_id="i-1", tenant="acme", type="fx", params={}, owner="p",
                                       now=now, deadline=now + 60)  # fmt: skip
        read_before = controls.statistics().processed
        verdicts = await ask_all([(gates, GateCheck(record))] * 20)
        assert all(v.passed for v in verdicts) and len({v.checked for v in verdicts}) == 1
        assert controls.statistics().processed - read_before == 2
        told_before = gates.statistics().processed
        await controls.ask(Put("kill.tenant.acme", orjson.dumps({"v": 1, "active": True, "who": "w", "reason": "r", "at": now})))
        await eventually(lambda: gates.statistics().processed > told_before)  # the watch's SwitchesChanged
        verdict = await gates.ask(GateCheck(record))
        assert (verdict.state, verdict.code) == (S.KILLED, "KILL_SWITCH_ACTIVE")
        assert verdict.checked > verdicts[0].checked
        read_before = controls.statistics().processed
        again = await ask_all([(gates, GateCheck(record))] * 3)
        assert all(v.state is S.KILLED for v in again)
        assert controls.statistics().processed - read_before == 2  # read at once (shared), never kept: it is active


def record_of(intent_id: str) -> IntentRecord:
    now = time.time()
    return IntentRecord.received(intent_id=intent_id, tenant="acme", type="fx", params={}, owner="p",
                                 now=now, deadline=now + 60)  # fmt: skip


async def test_a_check_that_joins_a_failing_read_waits_out_its_own_grace(tmp_path, monkeypatch):
    """The server is stopped for 4 s and the gates' grace is 3 s. Check A
    comes first and ends KILLED, failing closed. Check B comes 2 s later and
    shares A's read: when that read fails, B reads again on its own grace
    (to 5 s), the server is back, and B passes. (No reading is kept past its
    read here: one from the start would answer A.)"""
    monkeypatch.setattr(gates_module, "SWITCHES_SHARED", 0.0)
    async with running_server(tmp_path / "nats") as server:
        async with intents_on(tmp_path, gates=True, server=server, unknown_grace=3.0) as it:
            gates = it.system.lookup("gates")
            verdicts: dict[str, object] = {}

            async def check(name: str, after: float) -> None:
                await anyio.sleep(after)
                verdicts[name] = await gates.ask(GateCheck(record_of(name)), timeout=15)

            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(check, "A", 0.0)
                    tg.start_soon(check, "B", 2.0)
                    await anyio.sleep(4.0)
                    os.kill(server.process.pid, signal.SIGCONT)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            a, b = verdicts["A"], verdicts["B"]
            assert (a.state, a.code) == (S.KILLED, "KILL_SWITCH_ACTIVE") and "could not be read" in a.detail
            assert b.passed, b


class Slow(ExecutionType):
    """One apply at a time, each taking longer than a kill-switch check stays fresh."""

    name = "slow"
    concurrency = 1
    timeout = 2.0

    def __init__(self) -> None:
        self.effects: Counter = Counter()
        self.applying = anyio.Event()

    async def apply(self, intent, key: str) -> None:
        self.applying.set()
        await anyio.sleep(KILL_CHECK_FRESH * 1.5)
        self.effects[key] += 1

    async def reconcile(self, intent, key: str) -> Reconciled:
        return Reconciled.APPLIED if self.effects[key] else Reconciled.NOT_APPLIED

    def info(self) -> TypeInfo:
        return TypeInfo(name=self.name, path=self.name, timeout=self.timeout)


async def one_applying_one_waiting(it, slow: Slow) -> None:
    """s-1 applying; s-2 past its gates, EXECUTING, its apply waiting its turn."""
    kwargs = {"execution_type": slow, "gates": "gates"}  # as the default tree spawns a type's actor
    await it.system.spawn(ExecutionActor.of(slow), name=slow.name, kwargs=kwargs)
    await it.request("acme", "submit", {"id": "s-1", "type": "slow"})
    with anyio.fail_after(10):
        await slow.applying.wait()
    await it.request("acme", "submit", {"id": "s-2", "type": "slow"})
    actor = it.system.lookup(slow.name)
    await eventually(lambda: actor.statistics().depth >= 1)  # s-2's Apply queued behind s-1's


async def test_an_apply_that_waited_past_its_check_is_checked_again_and_killed(tmp_path):
    """s-2 passes the gates and is EXECUTING, its apply queued behind s-1's;
    the switch is set meanwhile. s-1 had started: it succeeds. s-2's turn
    comes after its check went stale: checked again, it ends KILLED from
    EXECUTING, never applied."""
    slow = Slow()
    async with intents_on(tmp_path, gates=True, types={"slow": slow.info()}) as it:
        await one_applying_one_waiting(it, slow)
        await it.control("killswitch.set", {"tenant": "acme", "reason": "stop"})
        first, second = await it.settled("acme", "s-1"), await it.settled("acme", "s-2")
        assert first.state is S.SUCCEEDED and slow.effects == {"acme/s-1": 1}
        assert (second.state, second.code, second.attempts) == (S.KILLED, "KILL_SWITCH_ACTIVE", 1)
        states = [e["record"]["state"] for e in await it.events("acme") if e["record"]["id"] == "s-2"]
        assert states == ["RECEIVED", "APPROVED", "EXECUTING", "KILLED"]


async def test_an_apply_that_waited_past_its_check_is_checked_at_its_turn_and_applied(tmp_path):
    """No switch set: s-2's turn comes after its check went stale; the
    type's actor reads the switches there and applies it, instead of
    sending it back to the end of the line (two applies taken, not three).
    Its type's timeout outlasts the wait and the apply (and the lease, that
    timeout and a spare): one attempt."""
    slow = Slow()
    slow.timeout = KILL_CHECK_FRESH * 5
    async with intents_on(tmp_path, gates=True, types={"slow": slow.info()}, lease_ttl=20.0) as it:
        await one_applying_one_waiting(it, slow)
        first, second = await it.settled("acme", "s-1"), await it.settled("acme", "s-2")
        assert (first.state, second.state, second.attempts) == (S.SUCCEEDED, S.SUCCEEDED, 1)
        assert slow.effects == {"acme/s-1": 1, "acme/s-2": 1}
        assert it.system.lookup(slow.name).statistics().processed == 2


@pytest.mark.parametrize(("stopped", "grace", "ends"), [(5.0, 1.0, S.KILLED), (1.0, 4.0, S.SUCCEEDED)])
async def test_a_store_that_stops_answering_kills_the_apply_that_needed_a_check_unless_it_comes_back(
    tmp_path, stopped, grace, ends
):
    """The nats-server SIGSTOPped while s-2 waits for its turn behind s-1's
    apply, so its check, stale by then, meets the stopped store. Stopped
    longer than the gates' grace: the switches count as set, and s-2 ends
    KILLED (written once the server is back), never applied. Back within the
    grace (a store failing over): the reads succeed on a later try and s-2
    runs. s-1 had started either way, and succeeds."""
    slow = Slow()
    async with running_server(tmp_path / "nats") as server:
        async with intents_on(
            tmp_path, gates=True, types={"slow": slow.info()}, server=server, unknown_grace=grace
        ) as it:
            await one_applying_one_waiting(it, slow)
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                await anyio.sleep(stopped)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            first = await it.settled("acme", "s-1", timeout=30)
            second = await it.settled("acme", "s-2", timeout=30)
            assert first.state is S.SUCCEEDED and second.state is ends
            if ends is S.KILLED:
                assert second.code == "KILL_SWITCH_ACTIVE" and "could not be read" in second.detail
                assert slow.effects == {"acme/s-1": 1}
            else:
                assert slow.effects == {"acme/s-1": 1, "acme/s-2": 1}
