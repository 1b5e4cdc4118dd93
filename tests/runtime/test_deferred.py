"""Answers that come later: a handler that defers holds no task while another
actor works, its asker still gets exactly one answer within its deadline, and
an `ask_then` callback is called exactly once, as the asking actor."""

from __future__ import annotations

import anyio
import outcome
import pytest

from exoarmur.runtime import Actor, ActorSystem, Conflict, ExoarmurError, ReasonCode, TimeoutCategory, handles, message
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.deferred import Deferred
from exoarmur.runtime.errors import error_for
from exoarmur.supervisors import BreakerPolicy, ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec
from tests.runtime.support import Crash, cell_of, instance_of, wait_until

pytestmark = pytest.mark.anyio


@message("test.kernel.deferred.lookup", timeout=TimeoutCategory.KV_GET)
class Lookup:
    key: str


@message("test.kernel.deferred.remember")
class Remember:
    pass


class Store(Actor):
    """Answers Lookup: "value of <key>"; "conflict" raises KV_CONFLICT,
    "crash" crashes, "slow" never answers before the deadline, "flaky"
    answers after reporting a failed dependency."""

    mailbox_capacity = 4

    def __init__(self, *, gate: anyio.Event | None = None) -> None:
        self.gate = gate

    @handles(Lookup)
    async def lookup(self, m: Lookup) -> str:
        if self.gate is not None:
            await self.gate.wait()
        if m.key == "conflict":
            raise error_for(ReasonCode.KV_CONFLICT, "revision moved")
        if m.key == "crash":
            raise RuntimeError("store broke")
        if m.key == "slow":
            await anyio.sleep_forever()
        return f"value of {m.key}"


class Front(Actor):
    """Defers every Lookup to the store; `seen` gets what each callback saw."""

    def __init__(self, *, store: str, seen: list, explode: bool = False) -> None:
        self.store = store
        self.seen = seen
        self.explode = explode

    @handles(Lookup)
    def lookup(self, m: Lookup) -> Deferred:
        later = self.context.defer()

        def answered(result: outcome.Outcome) -> None:
            here = CURRENT.get()
            self.seen.append((result, here.path, here.envelope.trace_id, here.envelope.deadline))
            if self.explode:
                raise ValueError("callback bug")
            later.resolve(result)

        self.context.system.lookup(self.store).ask_then(Lookup(m.key), answered)
        return later

    @handles(Remember)
    def remember(self, m: Remember) -> int:
        return id(self)

    @handles(Crash)
    def crash(self, m: Crash) -> None:
        raise RuntimeError("front broke")


class ConcurrentFront(Actor):
    def __init__(self, *, store: str) -> None:
        self.store = store

    @handles(Lookup, concurrent=True)
    async def lookup(self, m: Lookup) -> Deferred:
        await anyio.sleep(0)
        later = self.context.defer()
        self.context.system.lookup(self.store).ask_then(Lookup(m.key), later.resolve)
        return later


async def front_and_store(system: ActorSystem, **front: object) -> tuple:
    store = await system.spawn(Store, name="store", kwargs=front.pop("store_kwargs", {}))
    seen: list = []
    ref = await system.spawn(Front, name="front", kwargs={"store": "store", "seen": seen, **front})
    return ref, store, seen


class TestDefer:
    async def test_the_asker_gets_the_answer_of_the_actor_the_handler_deferred_to(self):
        async with ActorSystem() as system:
            front, _, seen = await front_and_store(system)
            assert await front.ask(Lookup("a"), trace_id="t-1") == "value of a"
            assert len(seen) == 1
            result, path, trace, _ = seen[0]
            assert result == outcome.Value("value of a")
            assert (path, trace) == ("front", "t-1")  # the callback ran as the asking actor

    async def test_a_coded_answer_reaches_the_asker_audited_once_where_it_arose(self):
        async with ActorSystem() as system:
            front, _, _ = await front_and_store(system)
            with pytest.raises(Conflict) as caught:
                await front.ask(Lookup("conflict"))
            assert caught.value.code is ReasonCode.KV_CONFLICT
            events = [e for e in system.audit.events if e.code is ReasonCode.KV_CONFLICT]
            assert [(e.kind, e.path) for e in events] == [("answered", "store")]

    async def test_a_crash_of_the_actor_deferred_to_is_the_askers_actor_crashed(self):
        async with ActorSystem() as system:
            front, _, _ = await front_and_store(system)
            with pytest.raises(ExoarmurError) as caught:
                await front.ask(Lookup("crash"))
            assert caught.value.code is ReasonCode.ACTOR_CRASHED
            assert await front.ask(Lookup("b")) == "value of b"  # the front never crashed
            assert system.statistics().restarts == 1  # the store's

    async def test_no_answer_ends_at_the_deadline_with_the_category_code(self, tick):
        async with ActorSystem() as system:
            front, _, seen = await front_and_store(system)
            start = system.now()
            with pytest.raises(ExoarmurError) as caught:
                await front.ask(Lookup("slow"), timeout=3 * tick)
            assert caught.value.code is ReasonCode.TIMEOUT_KV_GET
            assert 2 * tick <= system.now() - start <= 6 * tick  # on time; asyncio's real clock may stall
            await wait_until(lambda: len(seen) == 1)
            (result, _, _, deadline) = seen[0]
            assert isinstance(result, outcome.Error) and result.error.code is ReasonCode.TIMEOUT_KV_GET
            assert deadline == pytest.approx(start + 3 * tick, abs=tick / 10)  # the deadline travelled
            await anyio.sleep(5 * tick)
            assert len(seen) == 1  # exactly once

    async def test_an_envelope_stuck_in_a_queue_is_answered_by_the_callbacks_own_timer(self, tick):
        """The store is busy past the deadline, so the front's ask waits in its
        queue: the callback still runs at the deadline (DEADLINE_EXCEEDED: the
        store never took it; the front's asker gets TIMEOUT_KV_GET, the front
        did), and once, though the envelope is dead-lettered later."""
        gate = anyio.Event()
        async with ActorSystem() as system:
            front, store, seen = await front_and_store(system, store_kwargs={"gate": gate})
            await store.tell(Lookup("busy"))
            await wait_until(lambda: store.statistics().depth == 0)  # the store is in its handler
            start = system.now()
            with pytest.raises(ExoarmurError) as caught:
                await front.ask(Lookup("a"), timeout=3 * tick)
            assert caught.value.code is ReasonCode.TIMEOUT_KV_GET
            await wait_until(lambda: len(seen) == 1)
            (result, _, _, _) = seen[0]
            assert result.error.code is ReasonCode.DEADLINE_EXCEEDED
            assert 2 * tick <= system.now() - start <= 6 * tick  # on time; asyncio's real clock may stall
            assert store.statistics().depth == 1  # still queued: no one else answered it
            gate.set()
            await wait_until(lambda: store.statistics().expired == 1)
            assert len(seen) == 1

    async def test_defer_in_a_concurrent_handler(self):
        async with ActorSystem() as system:
            await system.spawn(Store, name="store")
            front = await system.spawn(ConcurrentFront, name="front", kwargs={"store": "store"})
            async with anyio.create_task_group() as tg:
                results: list = []

                async def ask(n: int) -> None:
                    results.append(await front.ask(Lookup(str(n))))

                for n in range(3):
                    tg.start_soon(ask, n)
            assert sorted(results) == ["value of 0", "value of 1", "value of 2"]

    async def test_defer_outside_a_handler_is_an_error(self):
        async with ActorSystem() as system:
            front, _, _ = await front_and_store(system)
            with pytest.raises(RuntimeError, match="defer"):
                cell_of(front).context.defer()


class Forgetful(Actor):
    """Defers and never answers (a bug the runtime must still bound)."""

    @handles(Lookup)
    def lookup(self, m: Lookup) -> Deferred:
        return self.context.defer()


class TestOwedAtStop:
    async def test_an_answer_never_given_ends_with_the_stop_not_a_hang(self, tick):
        """A deferred answer still owed when its actor stops gets until the stop
        deadline; then its asker is told SHUTTING_DOWN (dead-lettered), even
        after the system (and on trio its timer task) is gone."""
        answers: list = []
        async with anyio.create_task_group() as tg:
            async with ActorSystem(stop_timeout=2 * tick) as system:
                ref = await system.spawn(Forgetful, name="f")

                async def ask() -> None:
                    try:
                        answers.append(await ref.ask(Lookup("a"), timeout=1000 * tick))
                    except ExoarmurError as exc:
                        answers.append((exc.code, system.now() - stop_at))

                stop_at = system.now()
                tg.start_soon(ask)
                await wait_until(lambda: ref.statistics().processed == 1)
                stop_at = system.now()
        assert answers[0][0] is ReasonCode.SHUTTING_DOWN
        assert tick <= answers[0][1] <= 5 * tick  # at the stop deadline; asyncio's real clock may stall
        assert system.dead_letters.count(ReasonCode.SHUTTING_DOWN) == 1


class TestOwedAtCrash:
    async def test_answers_a_crashed_instance_owed_are_its_askers_actor_crashed_at_once(self, tick):
        """As a gen_server's callers hear of its crash: not a timeout at the
        deadline; and the answer that comes later for the dead instance is void."""
        gate = anyio.Event()
        async with ActorSystem() as system:
            front, _, seen = await front_and_store(system, store_kwargs={"gate": gate})
            codes: list = []

            async def ask() -> None:
                try:
                    await front.ask(Lookup("a"), timeout=1000 * tick)
                except ExoarmurError as exc:
                    codes.append((exc.code, anyio.current_time()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await wait_until(lambda: front.statistics().processed == 1)
                crashed_at = anyio.current_time()
                await front.tell(Crash())
            assert [code for code, _ in codes] == [ReasonCode.ACTOR_CRASHED]
            assert codes[0][1] - crashed_at < 100 * tick
            gate.set()
            await wait_until(lambda: len(seen) == 1)  # the store's answer reached the callback: nothing more
            assert await front.ask(Remember()) is not None


class TestAskThen:
    async def test_a_full_mailbox_refuses_at_once_and_the_callback_is_never_called(self):
        gate = anyio.Event()
        async with ActorSystem() as system:
            front, store, seen = await front_and_store(system, store_kwargs={"gate": gate})
            for n in range(4):  # the store takes one and holds it at the gate; 4 fill its mailbox
                await store.tell(Lookup(str(n)))
            await wait_until(lambda: store.statistics().depth == 3)
            await store.tell(Lookup("x"))
            with pytest.raises(ExoarmurError) as caught:
                await front.ask(Lookup("y"))
            assert caught.value.code is ReasonCode.OVERLOAD_MAILBOX_FULL
            gate.set()
            await wait_until(lambda: store.statistics().depth == 0)
            assert seen == []

    async def test_outside_a_handler_it_is_refused(self):
        async with ActorSystem() as system:
            _, store, _ = await front_and_store(system)
            with pytest.raises(RuntimeError, match="ask_then"):
                store.ask_then(Lookup("a"), lambda result: None)

    async def test_a_raising_callback_crashes_the_instance_that_asked(self):
        async with ActorSystem() as system:
            front, _, seen = await front_and_store(system, explode=True)
            first = await front.ask(Remember())
            with pytest.raises(ExoarmurError) as caught:
                await front.ask(Lookup("a"))
            assert caught.value.code is ReasonCode.ACTOR_CRASHED
            await wait_until(lambda: system.statistics().restarts == 1)
            crashes = [e for e in system.audit.events if e.kind == "crashed"]
            assert [(e.path, "callback bug" in e.detail) for e in crashes] == [("front", True)]
            assert await front.ask(Remember()) != first  # a fresh instance

    async def test_a_callback_after_its_instance_ended_is_audited_and_crashes_nothing(self, tick):
        gate = anyio.Event()
        async with ActorSystem() as system:
            front, _, seen = await front_and_store(system, explode=True, store_kwargs={"gate": gate})
            await front.tell(Lookup("a"))  # its answer will come to a stopped front
            await wait_until(lambda: front.statistics().processed == 1)
            await system.stop(front)
            gate.set()
            await wait_until(lambda: len(seen) == 1)
            crashes = [e for e in system.audit.events if e.kind == "crashed"]
            assert len(crashes) == 1 and "after its instance ended" in crashes[0].detail
            assert system.statistics().restarts == 0


class Dependency(Actor):
    def __init__(self, *, healthy: list) -> None:
        self.healthy = healthy

    @handles(Lookup)
    def lookup(self, m: Lookup) -> str:
        if not self.healthy[0]:
            raise error_for(ReasonCode.TIMEOUT_KV_GET, "down")
        return m.key


class Reporter(Actor):
    """Defers to the dependency and reports its failures (as KvBucket does)."""

    @handles(Lookup)
    def lookup(self, m: Lookup) -> Deferred:
        later = self.context.defer()

        def answered(result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                self.context.report_failure(result.error.code, "dependency failed")
            later.resolve(result)

        self.context.system.lookup("dependency").ask_then(Lookup(m.key), answered)
        return later


def kinds(system: ActorSystem) -> list[str]:
    return [e.kind for e in system.audit.events if e.kind.startswith("BREAKER")]


class TestProbes:
    async def test_a_deferred_probe_is_judged_by_its_answer(self, tick):
        """HALF_OPEN admits one probe; its handler defers, and the failure its
        answer reports re-opens the breaker (it does not close on the handler's
        return); a good deferred probe then closes it."""
        healthy = [False]
        policy = BreakerPolicy(
            threshold=2, window=100 * tick, cooldown=10 * tick, cooldown_factor=1.0, max_cooldown=10 * tick,
            half_open_probes=1,
        )  # fmt: skip
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            intensity=RestartIntensity(100, 1000 * tick),
            children=(ChildSpec("reporter", Reporter, breaker=policy),),
        )
        async with ActorSystem() as system:
            await system.spawn(Dependency, name="dependency", kwargs={"healthy": healthy})
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            reporter = system.lookup("sup/reporter")
            for _ in range(2):
                with pytest.raises(ExoarmurError):
                    await reporter.ask(Lookup("k"))
            await wait_until(lambda: kinds(system) == ["BREAKER_OPENED"])
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_HALF_OPEN"], timeout=20 * tick)
            with pytest.raises(ExoarmurError) as caught:
                await reporter.ask(Lookup("probe"))
            assert caught.value.code is ReasonCode.TIMEOUT_KV_GET
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_OPENED"])
            healthy[0] = True
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_HALF_OPEN"], timeout=20 * tick)
            assert await reporter.ask(Lookup("probe")) == "probe"
            await wait_until(lambda: kinds(system)[-1:] == ["BREAKER_CLOSED"])
        assert kinds(system) == [
            "BREAKER_OPENED", "BREAKER_HALF_OPEN", "BREAKER_OPENED", "BREAKER_HALF_OPEN", "BREAKER_CLOSED",
        ]  # fmt: skip


@message("test.kernel.deferred.relay")
class Relay:
    """Tell the store Lookup(key) on behalf of an envelope with this deadline and trace."""

    key: str
    seconds: float
    trace: str


class Relayer(Actor):
    def __init__(self, *, seen: list) -> None:
        self.seen = seen

    @handles(Relay)
    def relay(self, m: Relay) -> None:
        from exoarmur.runtime import Envelope

        origin = Envelope(m, self.context.now() + m.seconds, trace_id=m.trace)
        recorder = self.context.system.lookup("recorder")
        with self.context.on_behalf_of(origin):
            recorder.tell_nowait(Lookup(m.key), timeout=10 * m.seconds)
        recorder.tell_nowait(Lookup("own"), timeout=10 * m.seconds)


class Recorder(Actor):
    def __init__(self, *, seen: list) -> None:
        self.seen = seen

    @handles(Lookup)
    def lookup(self, m: Lookup) -> None:
        env = self.context.envelope
        self.seen.append((m.key, env.trace_id, env.deadline - self.context.now()))


class TestOnBehalfOf:
    async def test_sends_inside_carry_the_origins_deadline_and_trace_not_the_handlers(self, tick):
        """A gateway's case: the delivery being handled has a short deadline of
        its own; what it hands on carries the remote envelope's."""
        seen: list = []
        async with ActorSystem() as system:
            await system.spawn(Recorder, name="recorder", kwargs={"seen": seen})
            relayer = await system.spawn(Relayer, name="relayer", kwargs={"seen": seen})
            await relayer.tell(Relay("far", 1000 * tick, "t-origin"), timeout=20 * tick, trace_id="t-delivery")
            await wait_until(lambda: len(seen) == 2, timeout=40 * tick)
        (key, trace, left), (own_key, own_trace, own_left) = sorted(seen)
        assert (key, trace) == ("far", "t-origin") and 500 * tick < left <= 1000 * tick
        assert (own_key, own_trace) == ("own", "t-delivery") and own_left <= 20 * tick


class TestCallAsSelf:
    """A client library's callback hands work on as the actor, with no mailbox
    in between (the NATS connection serving a gateway's requests)."""

    async def test_an_ask_then_from_outside_a_handler_runs_its_callback_as_the_actor(self):
        async with ActorSystem() as system:
            front, store, seen = await front_and_store(system)
            answers: list = []

            def hand_on(context, key: str) -> None:
                assert CURRENT.get() is context and context.path == "front" and context.envelope is None

                def answered(result: outcome.Outcome) -> None:
                    here = CURRENT.get()
                    answers.append((result.unwrap(), here.path))

                store.ask_then(Lookup(key), answered, timeout=5)

            instance_of(system.lookup("front")).context.call_as_self(hand_on, "a")
            assert CURRENT.get() is None  # nothing leaks into the caller's context
            await wait_until(lambda: len(answers) == 1)
            assert answers == [("value of a", "front")]

    async def test_an_exception_crashes_the_instance_through_its_control_lane(self):
        async with ActorSystem() as system:
            front, _, _ = await front_and_store(system)
            first = await front.ask(Remember())

            def broken(context) -> None:
                raise ValueError("responder bug")

            cell_of(front).context.call_as_self(broken)  # does not raise here
            await wait_until(lambda: system.statistics().restarts == 1)
            crashes = [e for e in system.audit.events if e.kind == "crashed"]
            assert [(e.path, "responder bug" in e.detail) for e in crashes] == [("front", True)]
            assert await front.ask(Remember()) != first

    async def test_with_an_envelope_a_crash_answers_its_asker(self, tick):
        """The deferred answer of a request, settled from a client callback:
        a bug there is the asker's ACTOR_CRASHED, not a hang to its deadline."""
        async with ActorSystem() as system:
            front, _, _ = await front_and_store(system)
            from exoarmur.runtime import Envelope

            reply = system.backend.new_reply()
            env = Envelope(Remember(), system.now() + 100 * tick, reply_to=reply)

            def broken(context) -> None:
                assert context.envelope is env
                raise ValueError("settling bug")

            cell_of(front).context.call_as_self(broken, envelope=env)
            with pytest.raises(ExoarmurError) as caught:
                await reply.wait(env.deadline, lambda r: None)
            assert caught.value.code is ReasonCode.ACTOR_CRASHED
