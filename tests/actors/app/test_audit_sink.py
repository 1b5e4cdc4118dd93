"""The system's audit sink in `exoarmur run` (actors/app/audit_sink.py):
events wait in order until the stream's actor is attached; one more than
the buffer holds is refused with OVERLOAD_AUDIT_BUFFER, kept locally,
counted and logged; afterwards a hand-over the actor cannot take is counted
by its code. (On a real stream: tests/integration/test_operating.py.)"""

from __future__ import annotations

import logging

import anyio
import pytest

from exoarmur.actors.app.audit_sink import StreamAuditSink
from exoarmur.actors.nats import Append
from exoarmur.runtime import Actor, ActorSystem, AuditEvent, ExoarmurError, MemoryAuditSink, ReasonCode, handles, message


class Appends(Actor):
    """Keeps what it is handed, as the audit stream's actor would append it."""

    mailbox_capacity = 3

    def __init__(self, *, seen: list) -> None:
        self.seen = seen

    @handles(Append)
    def append(self, m: Append) -> None:
        self.seen.append(m.event["detail"])


def event(n: int) -> AuditEvent:
    return AuditEvent(kind="rejected", code=ReasonCode.ACTOR_NOT_FOUND, at=float(n), path=f"a/{n}", detail=f"e{n}")


@pytest.mark.anyio
async def test_events_wait_in_order_until_attached_and_a_full_buffer_refuses_with_a_code(caplog):
    local = MemoryAuditSink()
    sink = StreamAuditSink(local, capacity=2)
    with caplog.at_level(logging.ERROR, logger="exoarmur.audit"):
        for n in range(4):
            sink.emit(event(n))
    assert [e.detail for e in local.events] == ["e0", "e1", "e2", "e3"]  # kept locally, every one
    assert sink.refused == {ReasonCode.OVERLOAD_AUDIT_BUFFER: 2}
    assert [r.exoarmur_fields["refused"] for r in caplog.records] == [1, 2]  # logged, the 1st and 2nd
    seen: list[str] = []
    async with ActorSystem() as system:
        ref = await system.spawn(Appends, name="audit", kwargs={"seen": seen})
        sink.attach(ref)
        for n in range(4, 8):  # its mailbox holds 3, two of them what waited: the rest is counted by code
            sink.emit(event(n))
        await system.shutdown()
    assert seen == ["e0", "e1", "e4"]  # what waited first, in order
    assert sink.refusals() == {ReasonCode.OVERLOAD_AUDIT_BUFFER: 2, ReasonCode.OVERLOAD_MAILBOX_FULL: 3}
    assert len(local.events) == 8


@message("test.audit_sink.slow")
class Slow:
    pass


class Sleeper(Actor):
    @handles(Slow)
    async def slow(self, m: Slow) -> None:
        with anyio.CancelScope(shield=True):  # outlives its deadline, then reports
            await anyio.sleep(0.1)
        self.context.report_failure(ReasonCode.TIMEOUT_KV_GET, "reported past the handler's deadline")


@pytest.mark.anyio
async def test_an_event_emitted_past_the_handlers_deadline_still_reaches_the_stream():
    """The hand-over is not the handler's own send: it inherits none of its deadline."""
    seen: list[str] = []
    async with ActorSystem() as system:
        sink = StreamAuditSink(system.audit)
        system.audit = sink
        sink.attach(await system.spawn(Appends, name="audit", kwargs={"seen": seen}))
        sleeper = await system.spawn(Sleeper, name="sleeper")
        with pytest.raises(ExoarmurError):
            await sleeper.ask(Slow(), timeout=0.05)
        with anyio.fail_after(5):
            while not any(e.kind == "dependency_failed" for e in sink.local.events) or len(seen) < len(sink.local.events):
                await anyio.sleep(0.01)
    assert sink.refusals() == {}
    assert len(seen) == len(sink.local.events) >= 1
