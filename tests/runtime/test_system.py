"""ActorSystem: spawn and lookup by path, stop, graceful shutdown that loses
nothing, dead letters, one audit event per caller-visible failure, the clock."""

from __future__ import annotations

from collections import Counter as Tally

import anyio
import pytest

from exoarmur.runtime import (
    ActorNotFound,
    ActorSystem,
    ActorUnavailable,
    DeadlineExceeded,
    ExoarmurError,
    InvalidInput,
    JsonlAuditSink,
    AuditEvent,
    MemoryAuditSink,
    ReasonCode,
    TenantMismatch,
    TimeoutPolicy,
    read_jsonl,
)
from tests.runtime.support import Add, Counter, Crash, Gate, Get, Hold, Sleep, wait_until, instance_of

pytestmark = pytest.mark.anyio


class TestSpawnAndLookup:
    async def test_lookup_by_path_returns_the_spawned_ref(self):
        """An actor is found by the path it was spawned with."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="tenants/acme/counter")
            assert system.lookup("tenants/acme/counter") == ref
            assert system.paths() == ["tenants/acme/counter"]

    async def test_lookup_of_unknown_path_is_actor_not_found(self):
        """Looking up a path nobody holds raises ACTOR_NOT_FOUND, audited once."""
        async with ActorSystem() as system:
            with pytest.raises(ActorNotFound) as caught:
                system.lookup("nobody")
            assert caught.value.code is ReasonCode.ACTOR_NOT_FOUND
            assert isinstance(caught.value, LookupError)
            assert system.audit.counts() == {ReasonCode.ACTOR_NOT_FOUND: 1}

    async def test_spawn_on_a_taken_path_is_actor_name_taken(self):
        """Two actors cannot share a path."""
        async with ActorSystem() as system:
            await system.spawn(Counter, name="c")
            with pytest.raises(InvalidInput) as caught:
                await system.spawn(Counter, name="c")
            assert caught.value.code is ReasonCode.ACTOR_NAME_TAKEN

    @pytest.mark.parametrize("bad", ["", "/abs", "a//b", "a/", "sp ace", "é", "a" * 600, "db\n"])
    async def test_spawn_with_a_malformed_path_is_envelope_invalid(self, bad):
        """Paths are '/'-separated segments of [A-Za-z0-9_.-]."""
        async with ActorSystem() as system:
            with pytest.raises(InvalidInput):
                await system.spawn(Counter, name=bad)

    async def test_spawn_after_shutdown_is_shutting_down(self):
        """A stopping system accepts no new actors."""
        async with ActorSystem() as system:
            await system.shutdown()
            with pytest.raises(ActorUnavailable) as caught:
                await system.spawn(Counter, name="late")
            assert caught.value.code is ReasonCode.SHUTTING_DOWN


class TestSendChecks:
    async def test_send_to_a_tenant_actor_from_another_tenant_is_tenant_mismatch(self):
        """A tenant-scoped actor refuses envelopes of another tenant; its own and untagged ones pass."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="acme/c", tenant="acme")
            with pytest.raises(TenantMismatch) as caught:
                await ref.tell(Add(1), tenant="globex")
            assert caught.value.code is ReasonCode.TENANT_MISMATCH
            await ref.tell(Add(2), tenant="acme")
            await ref.tell(Add(3))
            assert await ref.ask(Get()) == 5
            assert ref.statistics().rejected == 1

    async def test_send_with_a_deadline_already_passed_is_deadline_exceeded(self):
        """An envelope born expired is refused at the sender, never queued."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            with pytest.raises(DeadlineExceeded) as caught:
                await ref.tell(Add(1), deadline=system.now() - 1)
            assert caught.value.code is ReasonCode.DEADLINE_EXCEEDED
            assert ref.statistics().accepted == 0

    async def test_send_to_a_stopped_actor_is_actor_stopped(self):
        """After stop, sends are refused with ACTOR_STOPPED."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            await system.stop(ref)
            with pytest.raises(ActorUnavailable) as caught:
                await ref.tell(Add(1))
            assert caught.value.code is ReasonCode.ACTOR_STOPPED
            with pytest.raises(ActorNotFound):
                system.lookup("c")

    async def test_timeout_policy_override_sets_the_default_deadline(self, tick, anyio_backend_name):
        """The policy table gives the default deadline of a message's category."""
        policy = TimeoutPolicy.with_overrides({"kv_get": 3 * tick})
        async with ActorSystem(timeouts=policy) as system:
            ref = await system.spawn(Counter, name="c")
            start = system.now()
            with pytest.raises(DeadlineExceeded) as caught:
                await ref.ask(Sleep(1000 * tick))
            elapsed = system.now() - start
            assert caught.value.code is ReasonCode.TIMEOUT_KV_GET
            if anyio_backend_name == "trio":
                assert elapsed == pytest.approx(3 * tick)
            else:
                assert 3 * tick <= elapsed < 3 * tick + 0.5


class TestGracefulShutdown:
    async def test_every_envelope_sent_into_a_stopping_system_is_processed_or_dead_lettered(self, tick):
        """10,000 envelopes from 10 senders while the system stops: accepted = processed +
        dead-lettered, and accepted + refused = 10,000. None vanish."""
        total = 10_000
        refused: Tally[ReasonCode] = Tally()
        sent = 0
        async with ActorSystem(stop_timeout=tick) as system:
            refs = [await system.spawn(Counter, name=f"c{i}", capacity=200) for i in range(5)]

            async def sender(index: int) -> None:
                nonlocal sent
                for n in range(total // 10):
                    sent += 1
                    try:
                        await refs[(index + n) % 5].tell(Add(1), timeout=50 * tick)
                    except ExoarmurError as exc:
                        refused[exc.code] += 1

            async with anyio.create_task_group() as tg:
                for index in range(10):
                    tg.start_soon(sender, index)
                await wait_until(lambda: sum(r.statistics().processed for r in refs) > 500)
                await system.shutdown()
        stats = [r.statistics() for r in refs]
        accepted = sum(s.accepted for s in stats)
        processed = sum(s.processed for s in stats)
        handled = sum(instance_of(r).total for r in refs)
        assert sent == total
        assert accepted + sum(refused.values()) == total
        assert processed == handled
        assert processed + system.dead_letters.total == accepted
        assert set(refused) <= {ReasonCode.SHUTTING_DOWN}
        assert set(system.dead_letters.counts()) <= {ReasonCode.SHUTTING_DOWN}
        assert system.audit.counts()[ReasonCode.SHUTTING_DOWN] == (
            refused[ReasonCode.SHUTTING_DOWN] + system.dead_letters.total
        )

    async def test_shutdown_handles_queued_envelopes_before_the_stop_deadline(self):
        """Leaving the system block handles what is queued when there is time for it."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            for _ in range(50):
                await ref.tell(Add(1))
        assert instance_of(ref).total == 50
        assert system.dead_letters.total == 0

    async def test_shutdown_dead_letters_what_the_stop_deadline_leaves(self, tick):
        """Envelopes still queued at the stop deadline are dead-lettered with SHUTTING_DOWN,
        and the handler running then is cut with SHUTTING_DOWN."""
        release = anyio.Event()
        codes: list[ReasonCode] = []
        async with ActorSystem(stop_timeout=tick) as system:
            gate = await system.spawn(Gate, name="g", kwargs={"release": release})

            async def holder():
                try:
                    await gate.ask(Hold(), timeout=100 * tick)
                except ExoarmurError as exc:
                    codes.append(exc.code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await wait_until(lambda: gate.statistics().processed == 1)
                for n in range(3):
                    await gate.tell(Add(n))
                start = system.now()
                await system.shutdown()
                assert system.now() - start < 2 * tick + 1
        assert codes == [ReasonCode.SHUTTING_DOWN]
        assert system.dead_letters.counts() == {ReasonCode.SHUTTING_DOWN: 3}

    async def test_shutdown_stops_actors_in_reverse_spawn_order(self):
        """The newest actor stops first, as OTP shuts children down in reverse start order."""
        from exoarmur.runtime import Actor

        order: list[str] = []

        class Recorder(Actor):
            async def stopping(self) -> None:
                order.append(self.context.path)

        async with ActorSystem() as system:
            for name in ["a", "b", "c"]:
                await system.spawn(Recorder, name=name)
        assert order == ["c", "b", "a"]

    async def test_error_in_the_body_cancels_and_dead_letters_everything_queued(self):
        """If the system block raises, the exception propagates as itself and queued
        envelopes are dead-lettered with SHUTTING_DOWN."""
        release = anyio.Event()
        with pytest.raises(KeyError):
            async with ActorSystem() as system:
                gate = await system.spawn(Gate, name="g", kwargs={"release": release})
                await gate.tell(Hold())
                await wait_until(lambda: gate.statistics().processed == 1)
                for n in range(3):
                    await gate.tell(Add(n))
                raise KeyError("boom")
        assert system.dead_letters.counts() == {ReasonCode.SHUTTING_DOWN: 3}
        assert system.paths() == []


class TestAudit:
    async def test_each_caller_visible_failure_emits_exactly_one_audit_event_with_its_code(self, tick):
        """Counting every coded error raised to callers gives exactly the audit counts."""
        raised: Tally[ReasonCode] = Tally()
        release = anyio.Event()

        async def attempt(operation) -> None:
            try:
                result = operation()
                if hasattr(result, "__await__"):
                    await result
            except ExoarmurError as exc:
                raised[exc.code] += 1

        async with ActorSystem() as system:
            c = await system.spawn(Counter, name="c", capacity=2, overflow="reject")
            g = await system.spawn(Gate, name="g", kwargs={"release": release})
            t = await system.spawn(Counter, name="t", tenant="acme")
            await attempt(lambda: c.ask(Crash()))  # ACTOR_CRASHED
            await attempt(lambda: c.ask(Sleep(10 * tick), timeout=tick))  # TIMEOUT_KV_GET
            await attempt(lambda: c.ask(Add(1), deadline=system.now() - 1))  # DEADLINE_EXCEEDED
            await attempt(lambda: system.lookup("missing"))  # ACTOR_NOT_FOUND
            await attempt(lambda: t.tell(Add(1), tenant="globex"))  # TENANT_MISMATCH
            await g.tell(Hold())
            await wait_until(lambda: g.statistics().processed == 1)
            await attempt(lambda: g.ask(Add(1), timeout=tick))  # DEADLINE_EXCEEDED (queued)
            for _ in range(3):
                await attempt(lambda: c.tell_nowait(Add(1)))  # third: OVERLOAD_MAILBOX_FULL
            release.set()
        assert raised == {
            ReasonCode.ACTOR_CRASHED: 1,
            ReasonCode.TIMEOUT_KV_GET: 1,
            ReasonCode.DEADLINE_EXCEEDED: 2,
            ReasonCode.ACTOR_NOT_FOUND: 1,
            ReasonCode.TENANT_MISMATCH: 1,
            ReasonCode.OVERLOAD_MAILBOX_FULL: 1,
        }
        assert system.audit.counts() == raised

    async def test_an_envelopes_failure_is_audited_with_what_the_envelope_carries(self):
        """The crash's event names the message and carries the envelope's tenant,
        trace id, idempotency key and attempt (sender and correlation id: none
        from outside an actor)."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c", tenant="acme")
            with pytest.raises(ExoarmurError):
                await ref.ask(Crash(), tenant="acme", idempotency_key="k-1", trace_id="t-1")
        (event,) = system.audit.events
        sent = {"tenant": "acme", "idempotency_key": "k-1", "trace_id": "t-1", "attempt": 1}
        assert {field: getattr(event, field) for field in sent} == sent
        assert (event.kind, event.code, event.path) == ("crashed", ReasonCode.ACTOR_CRASHED, "c")
        assert event.message == "test.kernel.crash"
        assert (event.sender, event.correlation_id) == (None, None)  # asked from outside any actor

    async def test_jsonl_sink_appends_events_that_replay_in_order(self, tmp_path):
        """The JSONL sink writes one line per event; read_jsonl gives them back equal and in order."""
        path = tmp_path / "audit" / "log.jsonl"
        sink = JsonlAuditSink(path)
        async with ActorSystem(audit=sink) as system:
            ref = await system.spawn(Counter, name="c")
            for _ in range(3):
                await ref.tell(Crash())
            await ref.ask(Get())
            with pytest.raises(ActorNotFound):
                system.lookup("nobody")
        sink.close()
        events = list(read_jsonl(path))
        assert [e.code for e in events] == [ReasonCode.ACTOR_CRASHED] * 3 + [ReasonCode.ACTOR_NOT_FOUND]
        assert all(e.path for e in events)
        assert len(path.read_bytes().splitlines()) == 4

    def test_memory_sink_counts_by_code(self):
        """The in-memory sink counts events by code."""
        sink = MemoryAuditSink()
        assert sink.counts() == {}

    def test_memory_sink_keeps_the_newest_events_within_its_limit(self):
        sink = MemoryAuditSink(limit=8)
        emitted = [AuditEvent(kind="crashed", code=ReasonCode.ACTOR_CRASHED, at=float(i)) for i in range(100)]
        for i, event in enumerate(emitted):
            sink.emit(event)
            assert len(sink.events) <= 8
            assert sink.events[-1] is event
            assert sink.dropped + len(sink.events) == i + 1
        assert sink.events == emitted[-len(sink.events) :]  # the newest, in order
        assert MemoryAuditSink().limit is not None  # bounded by default
        with pytest.raises(ValueError):
            MemoryAuditSink(limit=0)


class TestClock:
    async def test_system_clock_is_the_event_loops_clock(self, anyio_backend_name):
        """The runtime clock reads the loop's time (trio's MockClock in tests)."""
        async with ActorSystem() as system:
            before = anyio.current_time()
            now = system.now()
            assert before <= now <= anyio.current_time()
            if anyio_backend_name == "trio":
                await anyio.sleep(3600)  # virtual: the MockClock jumps
                assert system.now() - now >= 3600


class TestShutdownInsideTheBlock:
    async def test_code_after_shutdown_inside_the_block_keeps_running(self, tick):
        """shutdown() ends the actors' tasks, never the caller's: awaits after it still run."""
        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="c")
            await ref.tell(Add(1))
            await system.shutdown()
            await anyio.sleep(tick)  # would raise Cancelled if shutdown cancelled the body
            reached = True
        assert reached
        assert instance_of(ref).total == 1
