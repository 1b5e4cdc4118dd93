"""The ledger type: one fsynced JSON line per apply (a second apply, a second
line), reconcile from the file, a torn last line neither counted nor glued
onto, damage answered UNKNOWN, concurrent appends whole."""

from __future__ import annotations

import os
import stat
import time

import anyio
import pytest

from exoarmur.actors.execution import ledger as ledger_module
from exoarmur.actors.execution import ExecutionActor, ExecutionError, IntentState, Ledger, Reconciled, read_ledger, scan_ledger
from exoarmur.actors.intents.effects import Apply, Effect, Outcome, Reconcile
from exoarmur.runtime import ActorSystem, ExoarmurError, ReasonCode
from tests.actors.execution.support import intent, real_clocks  # noqa: F401  (the anyio_backend fixture)

pytestmark = pytest.mark.anyio


def line(intent_id: str, key: str, op: str = "apply", tenant: str = "acme") -> bytes:
    return b'{"intent":"%s","tenant":"%s","key":"%s","op":"%s"}\n' % (intent_id.encode(), tenant.encode(), key.encode(), op.encode())


def ledger_intent(intent_id: str = "i-1", **kwargs):
    return intent("ledger", intent_id=intent_id, **kwargs)


async def reconcile(ledger: Ledger, key: str, *, state: IntentState | None = None) -> Reconciled:
    return await ledger.reconcile(ledger_intent(state=state), key)


class InTheWay:
    """Holds the ledger's lock, as a batch still writing would, from `start`
    (its task) until `release`."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.held, self.done = anyio.Event(), anyio.Event()

    async def run(self) -> None:
        async with self.ledger._lock:
            self.held.set()
            await self.done.wait()

    async def start(self, tg) -> None:
        tg.start_soon(self.run)
        await self.held.wait()

    def release(self) -> None:
        self.done.set()


class TestAppend:
    async def test_each_apply_appends_exactly_one_line_in_the_format(self, tmp_path):
        ledger = Ledger(path=tmp_path / "ledger.jsonl")
        await ledger.apply(ledger_intent(), "acme/i-1")
        assert (tmp_path / "ledger.jsonl").read_bytes() == line("i-1", "acme/i-1")
        assert read_ledger(tmp_path / "ledger.jsonl") == [{"intent": "i-1", "tenant": "acme", "key": "acme/i-1", "op": "apply"}]

    async def test_a_second_apply_writes_a_second_line(self, tmp_path):
        """Deliberately not idempotent: a duplicate effect shows."""
        ledger = Ledger(path=tmp_path / "ledger.jsonl")
        await ledger.apply(ledger_intent(), "acme/i-1")
        await ledger.apply(ledger_intent(), "acme/i-1")
        assert (tmp_path / "ledger.jsonl").read_bytes() == line("i-1", "acme/i-1") * 2

    async def test_a_revert_appends_its_own_line(self, tmp_path):
        ledger = Ledger(path=tmp_path / "ledger.jsonl")
        await ledger.apply(ledger_intent(), "acme/i-1")
        await ledger.revert(ledger_intent(), "acme/i-1")
        assert [r["op"] for r in read_ledger(tmp_path / "ledger.jsonl")] == ["apply", "revert"]

    async def test_the_file_is_fsynced_and_its_directory_when_created(self, tmp_path, monkeypatch):
        """First apply: the file, then its directory; later ones: the file only."""
        synced: list[str] = []
        real_fsync = os.fsync

        def spy(fd: int) -> None:
            synced.append("directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", spy)
        ledger = Ledger(path=tmp_path / "ledger.jsonl")
        await ledger.apply(ledger_intent(), "acme/i-1")
        assert synced == ["file", "directory"]
        await ledger.apply(ledger_intent("i-2"), "acme/i-2")
        assert synced == ["file", "directory", "file"]

    async def test_a_file_that_cannot_be_opened_is_a_certain_failure(self, tmp_path):
        """No directory for it: LEDGER_UNWRITABLE (declared: nothing was written)."""
        ledger = Ledger(path=tmp_path / "missing" / "ledger.jsonl")
        with pytest.raises(ExecutionError) as info:
            await ledger.apply(ledger_intent(), "acme/i-1")
        assert info.value.reason == "LEDGER_UNWRITABLE" and info.value.reason in Ledger.reasons
        assert not (tmp_path / "missing").exists()

    async def test_concurrent_applies_never_interleave(self, tmp_path):
        """200 applies at once through one instance, and 50 through a second
        instance on the same file (as another process would, with its own
        lock): every line whole, each key once."""
        path = tmp_path / "ledger.jsonl"
        first, second = Ledger(path=path), Ledger(path=path)
        async with anyio.create_task_group() as tg:
            for n in range(250):
                ledger = first if n < 200 else second
                tg.start_soon(ledger.apply, ledger_intent(f"i-{n}"), f"acme/i-{n}")
        records = read_ledger(path)
        assert sorted(r["key"] for r in records) == sorted(f"acme/i-{n}" for n in range(250))
        assert scan_ledger(path.read_bytes()).damaged == 0

    async def test_applies_that_wait_for_the_lock_share_one_fsync(self, tmp_path, monkeypatch):
        """Group commit: 100 applies at once take far fewer fsyncs than 100,
        and each returns only once its own line is on disk."""
        synced: list[int] = []
        real_fsync = os.fsync

        def counting(fd: int) -> None:
            synced.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting)
        path = tmp_path / "ledger.jsonl"
        ledger = Ledger(path=path)
        returned: list[bool] = []

        async def apply(n: int) -> None:
            await ledger.apply(ledger_intent(f"i-{n}"), f"acme/i-{n}")
            returned.append(line(f"i-{n}", f"acme/i-{n}") in path.read_bytes())

        async with anyio.create_task_group() as tg:
            for n in range(100):
                tg.start_soon(apply, n)
        assert len(returned) == 100 and all(returned)
        assert len(read_ledger(path)) == 100
        assert len(synced) < 50  # file and directory syncs of the batches

    async def test_a_batch_takes_the_lock_once_however_many_callers_wait(self, tmp_path, monkeypatch):
        """128 applies at once: each batch takes the lock once and its callers
        go on together. Had each caller queued on the lock, each would take
        its turn (a scheduler pass, long in a busy process) only to find its
        line written, and the next batch would wait behind them all."""
        ledger = Ledger(path=tmp_path / "ledger.jsonl")
        real_lock, taken = ledger._lock, []

        class Counting:
            async def __aenter__(self) -> None:
                await real_lock.acquire()
                taken.append(1)

            async def __aexit__(self, *exc: object) -> None:
                real_lock.release()

        ledger._lock = Counting()  # type: ignore[assignment]
        batches: list[int] = []
        real_write = Ledger._write

        async def counted(self: Ledger, batch: list) -> None:
            batches.append(len(batch))
            await real_write(self, batch)

        monkeypatch.setattr(Ledger, "_write", counted)
        async with anyio.create_task_group() as tg:
            for n in range(128):
                tg.start_soon(ledger.apply, ledger_intent(f"i-{n}"), f"acme/i-{n}")
        assert sum(batches) == 128 and len(read_ledger(tmp_path / "ledger.jsonl")) == 128
        assert len(taken) == len(batches) < 10, (len(taken), batches)

    async def test_a_leader_cancelled_before_it_writes_hands_the_batch_on(self, tmp_path):
        """a leads the next batch and waits for the lock (a batch still
        writing); b and c wait for a. a is cancelled: b leads in its place,
        b and c are written, a never is."""
        path = tmp_path / "ledger.jsonl"
        ledger = Ledger(path=path)
        lock = InTheWay(ledger)
        told: dict[str, str] = {}
        scopes = {name: anyio.CancelScope() for name in "abc"}

        async def apply(name: str) -> None:
            with scopes[name]:
                await ledger.apply(ledger_intent(name), f"acme/{name}")
            told[name] = "cancelled" if scopes[name].cancelled_caught else "returned"

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await lock.start(tg)
                for name in "abc":
                    tg.start_soon(apply, name)
                    await anyio.sleep(0.01)
                scopes["a"].cancel()
                await anyio.sleep(0.01)
                lock.release()
        assert told == {"a": "cancelled", "b": "returned", "c": "returned"}
        assert [r["intent"] for r in read_ledger(path)] == ["b", "c"]

    async def test_a_caller_goes_on_only_once_its_batch_is_written(self, tmp_path, monkeypatch):
        """P leads and waits for the lock (a batch still writing); A waits for
        P. At once the lock is free, P is cancelled (A is to lead) and D comes
        (and may lead first, taking A's line). However the scheduler orders
        them (trio's order is random: twenty tries), A goes on only once the
        batch that holds its line is written; here every write fails, so A
        raises and is never told its line is on disk."""

        def failing(path: object, data: bytes) -> None:
            time.sleep(0.005)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(ledger_module, "append_line", failing)
        for attempt in range(20):
            ledger = Ledger(path=tmp_path / "ledger.jsonl")
            lock = InTheWay(ledger)
            told: dict[str, str] = {}
            scopes = {name: anyio.CancelScope() for name in "PAD"}

            async def apply(name: str) -> None:
                with scopes[name]:
                    try:
                        await ledger.apply(ledger_intent(name), f"acme/{name}")
                        told[name] = "returned"
                    except OSError:
                        told[name] = "raised"
                if scopes[name].cancelled_caught:
                    told[name] = "cancelled"

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    await lock.start(tg)
                    for name in "PA":
                        tg.start_soon(apply, name)
                        await anyio.sleep(0.001)
                    lock.release()
                    scopes["P"].cancel()
                    tg.start_soon(apply, "D")
            assert told == {"P": "cancelled", "A": "raised", "D": "raised"}, (attempt, told)

    async def test_a_failing_batch_fails_each_of_its_callers(self, tmp_path, monkeypatch):
        """An fsync that raises: every apply of the batch raises (uncertain,
        not ExecutionError), none is told it was written."""
        calls: list[int] = []

        def broken(fd: int) -> None:
            calls.append(fd)
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", broken)
        ledger = Ledger(path=tmp_path / "ledger.jsonl")
        outcomes: list[str] = []

        async def apply(n: int) -> None:
            try:
                await ledger.apply(ledger_intent(f"i-{n}"), f"acme/i-{n}")
                outcomes.append("returned")
            except ExecutionError:
                outcomes.append("certain")
            except OSError:
                outcomes.append("uncertain")

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(apply, n)
        assert outcomes == ["uncertain"] * 20
        assert len(calls) < 20  # batches: one failed write failed several callers

    async def test_an_apply_cancelled_while_its_line_waits_is_never_written(self, tmp_path):
        """Its caller is told it was cancelled; a later batch must not write it."""
        path = tmp_path / "ledger.jsonl"
        ledger = Ledger(path=path)
        lock = InTheWay(ledger)
        async with anyio.create_task_group() as tg:
            await lock.start(tg)
            with anyio.move_on_after(0.05) as scope:
                await ledger.apply(ledger_intent("gone"), "acme/gone")
            assert scope.cancelled_caught
            lock.release()
        await ledger.apply(ledger_intent("next"), "acme/next")
        assert [r["intent"] for r in read_ledger(path)] == ["next"]

    async def test_a_batch_whose_writer_is_cancelled_before_its_thread_starts_is_still_written(self, tmp_path):
        """B takes the batch [b, c] and waits for a worker thread; B's
        deadline passes. C must not be told "applied" of a line never
        written: the batch is written to the end, whoever is cancelled."""
        path = tmp_path / "ledger.jsonl"
        ledger = Ledger(path=path)
        limiter = anyio.to_thread.current_default_thread_limiter()
        borrowers = [object() for _ in range(int(limiter.total_tokens))]
        for borrower in borrowers:  # every worker thread busy elsewhere
            await limiter.acquire_on_behalf_of(borrower)
        told: dict[str, str] = {}
        b_scope = anyio.CancelScope()

        async def b() -> None:
            with b_scope:
                await ledger.apply(ledger_intent("b"), "acme/b")
            told["b"] = "cancelled" if b_scope.cancelled_caught else "returned"

        async def c() -> None:
            await ledger.apply(ledger_intent("c"), "acme/c")
            told["c"] = "returned"

        try:
            async with anyio.create_task_group() as tg:
                await ledger._lock.acquire()  # a batch still writing
                tg.start_soon(b)
                await anyio.sleep(0.01)
                tg.start_soon(c)
                await anyio.sleep(0.01)
                ledger._lock.release()  # b takes [b, c]
                await anyio.sleep(0.05)  # and waits for a thread
                b_scope.cancel()
                await anyio.sleep(0.05)
                for borrower in borrowers:
                    limiter.release_on_behalf_of(borrower)
                borrowers = []
        finally:
            for borrower in borrowers:
                limiter.release_on_behalf_of(borrower)
        written = {r["intent"] for r in read_ledger(path)} if path.exists() else set()
        assert told.get("c") != "returned" or "c" in written, (told, written)
        assert written == {"b", "c"}

    async def test_the_actor_answers_a_ledger_apply(self, tmp_path):
        """Through its actor: APPLIED, and FAILED with the declared reason when the file cannot be opened."""
        good, bad = Ledger(path=tmp_path / "ledger.jsonl"), Ledger(path=tmp_path / "missing" / "ledger.jsonl")
        async with ActorSystem() as system:
            ref = await system.spawn(ExecutionActor.of(good), name="good", kwargs={"execution_type": good})
            other = await system.spawn(ExecutionActor.of(bad), name="bad", kwargs={"execution_type": bad})
            assert await ref.ask(Apply(ledger_intent(), "acme/i-1")) == Effect(Outcome.APPLIED)
            assert await ref.ask(Reconcile(ledger_intent(), "acme/i-1")) is Reconciled.APPLIED
            failed = await other.ask(Apply(ledger_intent(), "acme/i-1"))
        assert (failed.outcome, failed.code) == (Outcome.FAILED, "LEDGER_UNWRITABLE")


class TestReconcile:
    async def test_no_file_is_not_applied(self, tmp_path):
        """The first append creates the file and fsyncs its directory: no file, no line."""
        assert await reconcile(Ledger(path=tmp_path / "ledger.jsonl"), "acme/i-1") is Reconciled.NOT_APPLIED

    async def test_applied_only_for_the_key_and_op_written(self, tmp_path):
        ledger = Ledger(path=tmp_path / "ledger.jsonl")
        await ledger.apply(ledger_intent(), "acme/i-1")
        assert await reconcile(ledger, "acme/i-1") is Reconciled.APPLIED
        assert await reconcile(ledger, "acme/i-2") is Reconciled.NOT_APPLIED
        assert await reconcile(ledger, "acme/i-1", state=IntentState.REVERTING) is Reconciled.NOT_APPLIED
        await ledger.revert(ledger_intent(), "acme/i-1")
        assert await reconcile(ledger, "acme/i-1", state=IntentState.REVERTING) is Reconciled.APPLIED

    async def test_a_fresh_instance_reads_what_another_wrote(self, tmp_path):
        """After a restart nothing is in memory: the file answers."""
        path = tmp_path / "ledger.jsonl"
        await Ledger(path=path).apply(ledger_intent(), "acme/i-1")
        assert await reconcile(Ledger(path=path), "acme/i-1") is Reconciled.APPLIED

    async def test_lines_added_by_others_after_the_first_read_are_seen(self, tmp_path):
        """The in-memory index reads what the file grew by, whoever wrote it."""
        path = tmp_path / "ledger.jsonl"
        mine, theirs = Ledger(path=path), Ledger(path=path)
        await mine.apply(ledger_intent(), "acme/i-1")
        assert await reconcile(mine, "acme/i-2") is Reconciled.NOT_APPLIED
        await theirs.apply(ledger_intent("i-2"), "acme/i-2")
        await mine.apply(ledger_intent("i-3"), "acme/i-3")
        assert [await reconcile(mine, f"acme/i-{n}") for n in (1, 2, 3)] == [Reconciled.APPLIED] * 3

    @pytest.mark.parametrize("cut", [1, 10, 30, -2, -1])
    async def test_a_torn_last_line_is_not_applied_and_the_next_apply_does_not_glue_onto_it(self, tmp_path, cut):
        """A crash mid-write leaves a line without its newline (cut at `cut`;
        -1: the whole object, only the newline missing). It is no record: NOT_APPLIED;
        the apply that follows closes it, and exactly one record of the key is counted,
        by this instance, by a fresh one, and by read_ledger."""
        path = tmp_path / "ledger.jsonl"
        path.write_bytes(line("i-0", "acme/i-0") + line("i-1", "acme/i-1")[:cut])
        ledger = Ledger(path=path)
        assert await reconcile(ledger, "acme/i-1") is Reconciled.NOT_APPLIED
        await ledger.apply(ledger_intent(), "acme/i-1")
        assert await reconcile(ledger, "acme/i-1") is Reconciled.APPLIED
        assert await reconcile(Ledger(path=path), "acme/i-1") is Reconciled.APPLIED
        assert await reconcile(Ledger(path=path), "acme/i-2") is Reconciled.NOT_APPLIED
        assert [r["key"] for r in read_ledger(path)] == ["acme/i-0", "acme/i-1"]
        assert path.read_bytes().endswith(b"\n" + line("i-1", "acme/i-1"))

    async def test_a_torn_line_seen_by_the_index_before_it_is_closed_stays_uncounted(self, tmp_path):
        """The index read the torn tail earlier; the closing write arrives later: still one record."""
        path = tmp_path / "ledger.jsonl"
        path.write_bytes(line("i-1", "acme/i-1")[:-1])
        reader, writer = Ledger(path=path), Ledger(path=path)
        assert await reconcile(reader, "acme/i-1") is Reconciled.NOT_APPLIED
        await writer.apply(ledger_intent("i-2"), "acme/i-2")
        assert await reconcile(reader, "acme/i-1") is Reconciled.NOT_APPLIED
        assert await reconcile(reader, "acme/i-2") is Reconciled.APPLIED

    async def test_a_damaged_line_makes_absence_unknown_but_not_presence(self, tmp_path):
        """A complete line that is no record might have been one: for a key
        not found the answer is UNKNOWN; a key found is still APPLIED."""
        path = tmp_path / "ledger.jsonl"
        path.write_bytes(line("i-1", "acme/i-1") + b'{"intent":"i-2","ten#garbage\n')
        ledger = Ledger(path=path)
        assert await reconcile(ledger, "acme/i-1") is Reconciled.APPLIED
        assert await reconcile(ledger, "acme/i-2") is Reconciled.UNKNOWN
        with pytest.raises(ValueError, match="1 damaged"):
            read_ledger(path)

    @pytest.mark.parametrize("change", ["truncate", "replace", "remove"])
    async def test_a_file_changed_under_the_index_keeps_what_it_saw_and_knows_no_absence(self, tmp_path, change):
        """Records seen before stay APPLIED (they took effect); for any other
        key the answer is UNKNOWN, since the lost part may have held it."""
        path = tmp_path / "ledger.jsonl"
        ledger = Ledger(path=path)
        await ledger.apply(ledger_intent(), "acme/i-1")
        assert await reconcile(ledger, "acme/i-2") is Reconciled.NOT_APPLIED
        if change == "truncate":
            path.write_bytes(b"")
        elif change == "replace":
            (tmp_path / "new.jsonl").write_bytes(line("i-3", "acme/i-3"))
            os.replace(tmp_path / "new.jsonl", path)
        else:
            path.unlink()
        assert await reconcile(ledger, "acme/i-1") is Reconciled.APPLIED
        assert await reconcile(ledger, "acme/i-2") is Reconciled.UNKNOWN
        if change == "replace":
            assert await reconcile(ledger, "acme/i-3") is Reconciled.APPLIED

    async def test_a_file_that_cannot_be_read_raises_and_the_actor_answers_a_coded_error(self, tmp_path):
        """A directory where the file should be: reading fails; the actor
        answers EXECUTION_FAILED, so the intent asks again later (not UNKNOWN:
        an unreadable file is not an unknowable effect)."""
        ledger = Ledger(path=tmp_path)
        with pytest.raises(OSError):
            await reconcile(ledger, "acme/i-1")
        async with ActorSystem() as system:
            ref = await system.spawn(ExecutionActor.of(ledger), name="ledger", kwargs={"execution_type": ledger})
            with pytest.raises(ExoarmurError) as caught:
                await ref.ask(Reconcile(ledger_intent(), "acme/i-1"))
            assert caught.value.code is ReasonCode.EXECUTION_FAILED

    async def test_an_apply_and_a_reconcile_at_once_see_a_consistent_file(self, tmp_path):
        """Reconciles racing appends answer APPLIED or NOT_APPLIED, never
        UNKNOWN (no append is ever seen half-written), and all appends land."""
        path = tmp_path / "ledger.jsonl"
        ledger, reader = Ledger(path=path), Ledger(path=path)
        answers: list[Reconciled] = []

        async def keep_reading():
            for n in range(100):
                answers.append(await reconcile(reader, f"acme/i-{n}"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_reading)
            for n in range(100):
                tg.start_soon(ledger.apply, ledger_intent(f"i-{n}"), f"acme/i-{n}")
        assert Reconciled.UNKNOWN not in answers
        assert await reconcile(reader, "acme/i-99") is Reconciled.APPLIED
        assert len(read_ledger(path)) == 100

