"""The actor that hosts a type: every way a call can end becomes one answer,
within the type's timeout and before the asker's deadline, without crashing
the actor; cancellation from outside is never caught; the type's concurrency
bound holds."""

from __future__ import annotations


import anyio
import pytest

from exoarmur.actors.execution import ExecutionActor, IntentState, Noop, Reconciled
from exoarmur.runtime.margins import EXECUTION_ANSWER as ANSWER_MARGIN
from exoarmur.actors.intents.effects import Apply, Effect, Outcome, Reconcile, Revert
from exoarmur.actors.intents.gates import SwitchesCheck
from exoarmur.runtime import Actor, ActorSystem, DeadlineExceeded, ExoarmurError, InvalidInput, MemoryAuditSink, ReasonCode, error_for, handles
from tests.actors.execution.support import OneWay, Scripted, intent

pytestmark = pytest.mark.anyio

KEY = "acme/i-1"


class FakeGates:
    def __init__(self, *, says: str, fails: bool) -> None:
        self.says, self.fails, self.asked = says, fails, []


class FakeGatesActor(Actor):
    """Answers a kill-switch check as told, a little later (a read)."""

    def __init__(self, *, fake: FakeGates) -> None:
        self.fake = fake

    @handles(SwitchesCheck, concurrent=True)
    async def check(self, m: SwitchesCheck) -> str:
        self.fake.asked.append(m.tenant)
        await anyio.sleep(0.01)
        if self.fake.fails:
            raise error_for(ReasonCode.TIMEOUT_KV_GET, "the store did not answer")
        return self.fake.says


async def spawn(system: ActorSystem, execution_type):
    return await system.spawn(
        ExecutionActor.of(execution_type), name=f"execution/{execution_type.name}", kwargs={"execution_type": execution_type}
    )


def reported(audit: MemoryAuditSink) -> list[tuple[str, str]]:
    """(code, detail) of every dependency failure the actor reported."""
    return [(event.code.value, event.detail) for event in audit.events if event.kind == "dependency_failed"]


class TestApply:
    async def test_an_apply_that_returns_is_applied(self):
        """The type is called once with the intent and the key; nothing is reported."""
        scripted, audit = Scripted(), MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await spawn(system, scripted)
            assert await ref.ask(Apply(intent(), KEY)) == Effect(Outcome.APPLIED)
        assert scripted.calls == [("apply", "i-1", KEY)]
        assert reported(audit) == []

    async def test_a_declared_reason_is_a_certain_failure(self):
        """FAILED with the type's own reason and detail, not counted as a dependency failure."""
        audit = MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await spawn(system, Scripted())
            effect = await ref.ask(Apply(intent(do="fail"), KEY))
        assert effect == Effect(Outcome.FAILED, "TARGET_GONE", "no such host")
        assert reported(audit) == []

    async def test_an_undeclared_reason_is_uncertain(self):
        """A reason the type did not declare is a bug of the type: UNCERTAIN, EXECUTION_FAILED, reported."""
        audit = MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await spawn(system, Scripted())
            effect = await ref.ask(Apply(intent(do="undeclared"), KEY))
        assert (effect.outcome, effect.code) == (Outcome.UNCERTAIN, "EXECUTION_FAILED")
        assert "SOMETHING_ELSE" in effect.detail
        assert reported(audit) == [("EXECUTION_FAILED", effect.detail)]

    async def test_any_other_exception_is_uncertain_and_the_actor_lives_on(self):
        """UNCERTAIN with the exception's repr; the same instance answers the next call."""
        scripted, audit = Scripted(), MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await spawn(system, scripted)
            effect = await ref.ask(Apply(intent(do="raise"), KEY))
            assert await ref.ask(Apply(intent(intent_id="i-2"), "acme/i-2")) == Effect(Outcome.APPLIED)
            assert system.info(ref.path).restarts == 0
        assert effect == Effect(Outcome.UNCERTAIN, "EXECUTION_FAILED", "apply raised ConnectionResetError('peer reset')")
        assert [code for code, _ in reported(audit)] == ["EXECUTION_FAILED"]

    async def test_a_timeout_is_uncertain_at_the_types_timeout(self, tick):
        """An apply that hangs is cut at the type's timeout (well before the
        asker's deadline): UNCERTAIN with the category's timeout code."""
        scripted, audit = Scripted(timeout=2 * tick), MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await spawn(system, scripted)
            start = system.now()
            effect = await ref.ask(Apply(intent(do="hang"), KEY), timeout=100 * tick)
            took = system.now() - start
        assert (effect.outcome, effect.code) == (Outcome.UNCERTAIN, "TIMEOUT_EXECUTION_INTENT")
        assert "its timeout" in effect.detail
        assert 2 * tick <= took < 10 * tick
        assert scripted.cancelled == 1
        assert [code for code, _ in reported(audit)] == ["TIMEOUT_EXECUTION_INTENT"]

    async def test_a_timeout_on_the_mock_clock_is_exact(self, anyio_backend_name):
        """On trio's MockClock the answer comes at exactly the type's timeout."""
        if anyio_backend_name != "trio":
            pytest.skip("virtual time: trio's MockClock")
        async with ActorSystem() as system:
            ref = await spawn(system, Scripted(timeout=7.0))
            start = system.now()
            effect = await ref.ask(Apply(intent(do="hang"), KEY), timeout=30.0)
            assert system.now() - start == pytest.approx(7.0)
        assert effect.outcome is Outcome.UNCERTAIN

    async def test_the_askers_deadline_bounds_the_call_and_the_answer_comes_first(self, tick):
        """With less time left than the type's timeout, the call is cut
        ANSWER_MARGIN before the asker's deadline, and the asker hears UNCERTAIN,
        not its own timeout."""
        async with ActorSystem() as system:
            ref = await spawn(system, Scripted(timeout=100 * tick))
            start = system.now()
            effect = await ref.ask(Apply(intent(do="hang"), KEY), timeout=3 * tick)
            took = system.now() - start
        assert (effect.outcome, effect.code) == (Outcome.UNCERTAIN, "TIMEOUT_EXECUTION_INTENT")
        assert "the asker's deadline" in effect.detail
        assert 3 * tick - ANSWER_MARGIN <= took < 3 * tick

    async def test_no_time_left_to_start_is_a_certain_failure_and_the_type_is_not_called(self, anyio_backend_name):
        """An envelope whose deadline is closer than ANSWER_MARGIN: apply is
        not called (on asyncio's real clock the kernel may refuse it first)."""
        scripted = Scripted()
        async with ActorSystem() as system:
            ref = await spawn(system, scripted)
            try:
                effect = await ref.ask(Apply(intent(), KEY), timeout=ANSWER_MARGIN / 2)
            except DeadlineExceeded:
                assert anyio_backend_name == "asyncio"
            else:
                assert (effect.outcome, effect.code) == (Outcome.FAILED, "DEADLINE_EXCEEDED")
        assert scripted.calls == []

    async def test_an_intent_of_another_type_is_refused(self):
        """A bug of the asker: EXECUTION_TYPE_UNKNOWN, the type is not called."""
        scripted = Scripted()
        async with ActorSystem() as system:
            ref = await spawn(system, scripted)
            with pytest.raises(InvalidInput) as info:
                await ref.ask(Apply(intent("ledger"), KEY))
        assert info.value.code is ReasonCode.EXECUTION_TYPE_UNKNOWN
        assert scripted.calls == []

    async def test_cancellation_from_outside_is_not_turned_into_an_answer(self, tick):
        """The actor stopping while an apply hangs: the apply is cancelled and
        the asker hears a coded error, never an Effect made up from the
        cancellation, and no dependency failure is reported for it."""
        scripted, audit = Scripted(timeout=1000 * tick), MemoryAuditSink()
        answers: list = []

        async def ask(ref):
            try:
                answers.append(await ref.ask(Apply(intent(do="hang"), KEY), timeout=1000 * tick))
            except ExoarmurError as exc:
                answers.append(exc.code)

        async with ActorSystem(stop_timeout=2 * tick, audit=audit) as system:
            ref = await spawn(system, scripted)
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, ref)
                with anyio.fail_after(100 * tick):
                    while scripted.running == 0:
                        await anyio.sleep(tick / 100)
                await system.stop(ref)
        assert scripted.cancelled == 1
        assert answers == [ReasonCode.ACTOR_STOPPED]
        assert reported(audit) == []

    async def test_an_apply_that_returns_after_its_time_ran_out_is_applied(self, tick):
        """A type that shields its effect from cancellation and completes it is
        answered APPLIED: the answer says what happened, not when."""

        class Shielded(Scripted):
            name = "shielded"

            async def apply(self, intent, key):
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(3 * tick)
                self.calls.append(("apply", intent.id, key))

        async with ActorSystem() as system:
            ref = await spawn(system, Shielded(timeout=1 * tick))
            effect = await ref.ask(Apply(intent("shielded"), KEY), timeout=100 * tick)
        assert effect == Effect(Outcome.APPLIED)


class TestRevert:
    async def test_a_revert_is_answered_as_an_apply_is(self):
        scripted = Scripted()
        async with ActorSystem() as system:
            ref = await spawn(system, scripted)
            assert await ref.ask(Revert(intent(), KEY)) == Effect(Outcome.APPLIED)
            failed = await ref.ask(Revert(intent(do="fail"), KEY))
        assert failed == Effect(Outcome.FAILED, "TARGET_GONE", "no such host")
        assert [call[0] for call in scripted.calls] == ["revert", "revert"]

    async def test_a_type_without_revert_refuses_it(self):
        async with ActorSystem() as system:
            ref = await spawn(system, OneWay())
            effect = await ref.ask(Revert(intent("one_way"), KEY))
        assert effect == Effect(Outcome.FAILED, "EXECUTION_FAILED", "type one_way cannot revert")


class TestReconcile:
    @pytest.mark.parametrize("how", ["applied", "not_applied", "unknown"])
    async def test_the_types_answer_is_passed_on(self, how):
        async with ActorSystem() as system:
            ref = await spawn(system, Scripted())
            answer = await ref.ask(Reconcile(intent(reconcile=how), KEY))
        assert answer is Reconciled[how.upper()]

    async def test_a_reconcile_that_answers_something_else_is_unknown_and_reported(self, tick):
        """A type's bug: UNKNOWN (an operator decides), counted towards the breaker."""
        audit = MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await spawn(system, Scripted(timeout=2 * tick))
            answer = await ref.ask(Reconcile(intent(reconcile="bad"), KEY), timeout=100 * tick)
        assert answer is Reconciled.UNKNOWN
        assert [c for c, _ in reported(audit)] == ["EXECUTION_FAILED"]

    @pytest.mark.parametrize(("how", "code"), [("raise", "EXECUTION_FAILED"), ("hang", "TIMEOUT_EXECUTION_INTENT")])
    async def test_a_reconcile_that_raises_or_runs_out_of_time_is_a_coded_error_to_ask_again(self, tick, how, code):
        """The effector is unreachable or slow, not unknowable: the asker gets
        the coded error (the intent asks again later), counted towards the breaker."""
        audit = MemoryAuditSink()
        async with ActorSystem(audit=audit) as system:
            ref = await spawn(system, Scripted(timeout=2 * tick))
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Reconcile(intent(reconcile=how), KEY), timeout=100 * tick)
        assert caught.value.code == code
        assert [c for c, _ in reported(audit)] == [code]

    async def test_the_intents_state_reaches_the_type(self):
        """While REVERTING, reconcile asks about the revert: the type sees the state."""
        seen: list = []

        class Watching(Scripted):
            name = "watching"

            async def reconcile(self, intent, key):
                seen.append(intent.state)
                return Reconciled.NOT_APPLIED

        async with ActorSystem() as system:
            ref = await spawn(system, Watching())
            await ref.ask(Reconcile(intent("watching", state=IntentState.REVERTING), KEY))
        assert seen == [IntentState.REVERTING]

    async def test_no_time_left_is_a_deadline_not_an_unknown(self, anyio_backend_name):
        """UNKNOWN would send the intent to an operator: a call that never
        started is DEADLINE_EXCEEDED instead."""
        scripted = Scripted()
        async with ActorSystem() as system:
            ref = await spawn(system, scripted)
            with pytest.raises(DeadlineExceeded):
                await ref.ask(Reconcile(intent(), KEY), timeout=ANSWER_MARGIN / 2)
        assert scripted.calls == []


class TestConcurrency:
    async def test_at_most_the_types_concurrency_run_and_the_next_waits_queued(self, tick):
        """Scripted allows 2: three applies, two run, the third waits in the
        mailbox until one ends; all three are applied."""
        scripted = Scripted(timeout=1000 * tick)
        scripted.release = anyio.Event()
        answers: dict[int, Effect] = {}

        async def ask(ref, n):
            answers[n] = await ref.ask(Apply(intent(do="wait", intent_id=f"i-{n}"), f"acme/i-{n}"), timeout=1000 * tick)

        async with ActorSystem() as system:
            ref = await spawn(system, scripted)
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(ask, ref, n)
                with anyio.fail_after(100 * tick):
                    while scripted.running < 2:
                        await anyio.sleep(tick / 100)
                await anyio.sleep(10 * tick)  # room for a third, were the bound not kept
                assert (scripted.running, ref.statistics().depth) == (2, 1)
                scripted.release.set()
        assert answers == {n: Effect(Outcome.APPLIED) for n in range(3)}
        assert scripted.peak == 2

    async def test_an_apply_whose_turn_comes_after_its_not_after_is_not_started(self, tick):
        """Two applies hold both places; a third, bounded by `not_after`,
        gets its turn only after that: NOT_STARTED, and the type is never
        called for it. One whose bound is still ahead is applied."""
        scripted = Scripted(timeout=1000 * tick)
        scripted.release = anyio.Event()
        answers: dict[str, Effect] = {}

        async def ask(ref, name, do, not_after=None):
            apply = Apply(intent(do=do, intent_id=name), f"acme/{name}", not_after=not_after)
            answers[name] = await ref.ask(apply, timeout=1000 * tick)

        async with ActorSystem() as system:
            ref = await spawn(system, scripted)
            async with anyio.create_task_group() as tg:
                for n in range(2):
                    tg.start_soon(ask, ref, f"busy-{n}", "wait")
                with anyio.fail_after(100 * tick):
                    while scripted.running < 2:
                        await anyio.sleep(tick / 100)
                tg.start_soon(ask, ref, "stale", "ok", system.now() + 5 * tick)
                tg.start_soon(ask, ref, "fresh", "ok", system.now() + 500 * tick)
                await anyio.sleep(10 * tick)
                scripted.release.set()
        assert (answers["stale"].outcome, answers["stale"].code) == (Outcome.NOT_STARTED, "KILL_SWITCH_ACTIVE")
        assert answers["fresh"] == Effect(Outcome.APPLIED)
        assert sorted(name for _, name, _ in scripted.calls) == ["busy-0", "busy-1", "fresh"]

    @pytest.mark.parametrize(
        ("says", "fails", "outcome", "called"),
        [
            ("", False, Outcome.APPLIED, True),  # clear: applied at its turn
            ("tenant acme's kill switch (revision 3)", False, Outcome.NOT_STARTED, False),
            ("", True, Outcome.NOT_STARTED, False),  # unreadable: the intent asks its gates
        ],
    )
    async def test_with_gates_a_stale_apply_is_checked_again_at_its_turn(self, says, fails, outcome, called):
        """The kill switches read at its turn (one read for the two applies
        of a tenant that wait together), not a trip back to the intent."""
        scripted = Scripted(timeout=10.0)
        gates = FakeGates(says=says, fails=fails)
        async with ActorSystem() as system:
            await system.spawn(FakeGatesActor, name="gates", kwargs={"fake": gates})
            ref = await system.spawn(
                ExecutionActor.of(scripted), name="execution/scripted", kwargs={"execution_type": scripted, "gates": "gates"}
            )
            stale = system.now() - 1.0
            answers = []
            async with anyio.create_task_group() as tg:
                for name in ("one", "two"):

                    async def ask(name=name):
                        answers.append(await ref.ask(Apply(intent(do="ok", intent_id=name), f"acme/{name}", not_after=stale)))

                    tg.start_soon(ask)
        assert [a.outcome for a in answers] == [outcome, outcome] and gates.asked == ["acme"]
        if outcome is Outcome.NOT_STARTED:
            assert answers[0].code == "KILL_SWITCH_ACTIVE" and (says or "checked again") in answers[0].detail
        assert bool(scripted.calls) is called

    async def test_the_actor_class_carries_the_types_bound(self):
        """One class per (name, concurrency), made once."""
        assert ExecutionActor.of(Scripted()).concurrency == 2
        assert ExecutionActor.of(Noop()).concurrency == 16
        assert ExecutionActor.of(Scripted()) is ExecutionActor.of(Scripted())

    async def test_the_plain_class_refuses_a_type_whose_bound_it_does_not_carry(self):
        """Spawning ExecutionActor itself would bound the type at the kernel's default: refused."""
        async with ActorSystem() as system:
            with pytest.raises(ExoarmurError) as info:
                await system.spawn(ExecutionActor, name="x", kwargs={"execution_type": Scripted()})
        assert info.value.code is ReasonCode.ACTOR_CRASHED
        assert "ExecutionActor.of" in info.value.detail


class TestOneCallPerKey:
    async def test_a_reconcile_waits_for_a_running_apply_of_its_key(self):
        """An apply whose asker gave up still runs (shielded, as a write is);
        a reconcile of the same key meanwhile waits for it, and answers
        APPLIED, never NOT_APPLIED and a second apply after it."""
        release = anyio.Event()

        class Slow(Scripted):
            name = "slow"

            async def apply(self, intent, key):
                with anyio.CancelScope(shield=True):
                    await release.wait()
                    self.applied.add(key)

            async def reconcile(self, intent, key):
                return Reconciled.APPLIED if key in self.applied else Reconciled.NOT_APPLIED

        slow = Slow(timeout=5.0)
        slow.applied = set()
        async with ActorSystem() as system:
            ref = await spawn(system, slow)
            with pytest.raises(ExoarmurError):  # the asker gives up; the apply runs on
                await ref.ask(Apply(intent("slow"), KEY), timeout=0.1)
            answers = []
            try:
                async with anyio.create_task_group() as group:

                    async def reconcile():
                        answers.append(await ref.ask(Reconcile(intent("slow"), KEY), timeout=5.0))

                    group.start_soon(reconcile)
                    await anyio.sleep(0.2)
                    assert answers == []  # waiting for the apply, not answering NOT_APPLIED
                    release.set()
            finally:
                release.set()  # never leave the shielded apply waiting
            assert answers == [Reconciled.APPLIED]
            other = await ref.ask(Reconcile(intent("slow"), "acme/other"), timeout=1.0)
            assert other is Reconciled.NOT_APPLIED  # another key never waits


async def test_a_coded_error_raised_inside_a_type_keeps_its_code():
    """A type whose own ask timed out: UNCERTAIN with that timeout's code, not EXECUTION_FAILED."""

    class Asking(Scripted):
        name = "asking"

        async def apply(self, intent, key):
            raise error_for(ReasonCode.TIMEOUT_KV_GET, "the effector's store did not answer")

    async with ActorSystem() as system:
        ref = await spawn(system, Asking())
        effect = await ref.ask(Apply(intent("asking"), KEY))
    assert (effect.outcome, effect.code) == (Outcome.UNCERTAIN, ReasonCode.TIMEOUT_KV_GET)
