"""The `ledger` execution type: each apply appends one line to a file.

    [execution_types.ledger]
    path = "ledger.jsonl"      # the default; relative to the state directory

Each apply appends `{"intent":ID,"tenant":T,"key":KEY,"op":"apply"}` and a
revert the same with `"op":"revert"`, then fsyncs the file (and, when the
append created it, its directory). It is deliberately not idempotent: a
second apply writes a second line, so a duplicate effect shows in the file.
`reconcile` answers from the file (actors/execution/ledger_file.py has the
format and exactly what counts as a record). `read_ledger` reads the records
of a file, for tests and the chaos sweeps.

Concurrency and cancellation:
- One lock per instance: appends never interleave bytes within the process,
  and the in-memory index is touched by one call at a time. Appends are
  written together (group commit): one caller at a time leads, takes the
  lock and writes every line pending then, with one fsync (shielded: a
  batch taken is written to the end); the others wait on their own line,
  and each returns once its line is fsynced, or raises what the write
  raised. After a batch the first line still pending leads the next, so a
  batch costs one hand-over, however many callers wait (had they queued on
  the lock, each would take its turn only to find its line written: one
  scheduler pass each, and a busy process's passes are long). A caller
  cancelled while its line is still pending takes it back, so it is never
  written (and hands the lead on if it had it). One cancelled after a batch
  took its line may hear so while the batch still writes it: its intent
  then reconciles, and `reconcile` takes the same lock, so it reads the file
  only once that batch is done. Across processes an append holds an
  exclusive `flock` from looking at the file's end to its fsync, so a torn
  tail is closed exactly once.
- Blocking I/O runs in a worker thread that is never abandoned
  (`abandon_on_cancel=False`). A thread cannot be stopped, only left behind:
  an abandoned write could land after its caller was told it was cancelled,
  after which a reconcile might read NOT_APPLIED and a second apply follow.
  Waiting for it instead means that when `apply` returns the line is
  written and fsynced, and when it raises it is not; the price is that a
  call may overrun its deadline by one write (or one read) of the file.
- Failures before the write starts (the file cannot be opened) are certain:
  LEDGER_UNWRITABLE. A failure in the write or fsync is not: it propagates,
  and the intent asks `reconcile`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs

from exoarmur.actors.execution.api import ExecutionError, ExecutionType, construct
from exoarmur.actors.execution.ledger_file import LedgerIndex, Record, record_line, scan_ledger, torn_marker
from exoarmur.actors.intents.effects import Reconciled
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.states import IntentState

__all__ = ["DEFAULT_FILE", "Ledger", "append_line", "read_ledger"]

DEFAULT_FILE = "ledger.jsonl"
UNWRITABLE = "LEDGER_UNWRITABLE"
READ_CHUNK = 1 << 20  # bytes per read of a reconcile
_BACK_STEP = 4096  # bytes per step when looking back for the tail's start


class Ledger(ExecutionType):
    name = "ledger"
    concurrency = 128  # the calls waiting for the lock are one write and one fsync: more at once, bigger batches
    # The file cannot be opened for appending: the line was certainly not written.
    reasons = frozenset({UNWRITABLE})

    def __init__(self, *, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = anyio.Lock()
        # Built by the first reconcile, then kept up to date by this
        # instance's appends; a reconcile reads only what others added (the
        # file's size tells). It holds every (key, op) of the file in memory:
        # a reconcile costs a stat, not a scan of the whole file, at the price
        # of memory that grows with the file (some 200 bytes a line).
        self._index: LedgerIndex | None = None
        self._pending: list[_Line] = []  # lines waiting for a batch, in order
        self._leading = False  # a caller is writing, or waiting for the lock to write, the pending lines

    @classmethod
    def from_config(cls, options: Mapping[str, Any], *, state_dir: Path) -> Ledger:
        """`path` (default ledger.jsonl), relative to `state_dir` unless absolute."""
        options = dict(options)
        path = options.pop("path", DEFAULT_FILE)
        if not isinstance(path, str) or not path:
            raise cls.invalid_option("path", f"must be a non-empty string, got {path!r}")
        ledger = construct(cls, {**options, "path": Path(state_dir) / path})
        assert isinstance(ledger, Ledger)
        return ledger

    async def apply(self, intent: IntentRecord, key: str) -> None:
        await self._append(Record(intent.id, intent.tenant, key, "apply"))

    async def revert(self, intent: IntentRecord, key: str) -> None:
        await self._append(Record(intent.id, intent.tenant, key, "revert"))

    async def reconcile(self, intent: IntentRecord, key: str) -> Reconciled:
        """APPLIED if the file holds the record of this key and op ("revert"
        while the intent is REVERTING); NOT_APPLIED if not; UNKNOWN if damage
        in the file could hide it. A file that cannot be read raises (the
        actor answers UNKNOWN)."""
        op = "revert" if intent.state is IntentState.REVERTING else "apply"
        async with self._lock:
            index = await anyio.to_thread.run_sync(self._refreshed, abandon_on_cancel=False)
        return index.answer((key, op))

    async def _append(self, record: Record) -> None:
        line = _Line(record_line(record))
        self._pending.append(line)
        try:
            while not line.done:
                if self._leading or line.taken:
                    line.woken = anyio.Event()
                    await line.woken.wait()  # its batch written, or its turn to lead
                    continue
                self._leading = True
                try:
                    async with self._lock:
                        await self._write_pending()
                finally:
                    self._leading = False
                    self._hand_over()
        finally:
            if not line.taken:  # cancelled before any batch took it: never written
                self._pending.remove(line)
                self._hand_over()
        if line.failure is not None:
            raise line.failure

    def _hand_over(self) -> None:
        """No one leads: the first pending line's caller does."""
        if not self._leading and self._pending:
            self._pending[0].woken.set()

    async def _write_pending(self) -> None:
        """Write every pending line as one append (the lock held), then wake their callers."""
        batch, self._pending = self._pending, []
        for line in batch:
            line.taken = True
        try:
            await self._write(batch)
        finally:
            for line in batch:
                line.done = True
                line.woken.set()

    async def _write(self, batch: list[_Line]) -> None:
        data = b"".join(line.data for line in batch)
        try:
            # Shielded: once taken, the batch is written whoever is cancelled
            # (a cancel before the thread starts would leave the others told
            # "written" of lines never written). The cancel lands after it.
            with anyio.CancelScope(shield=True):
                written = await anyio.to_thread.run_sync(append_line, self.path, data, abandon_on_cancel=False)
        except Exception as exc:  # noqa: BLE001 - each caller raises its own copy
            for line in batch:
                line.failure = _each(exc, len(batch))
            return
        index = self._index
        if index is not None and index.identity == written.identity and index.end == written.start:
            index.extend([written.data])

    def _refreshed(self) -> LedgerIndex:
        """The index, brought up to date with the file (in a worker thread)."""
        index = self._index
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if index is None or index.identity is not None:
                self._index = index = LedgerIndex(identity=None, after=index)
            return index
        try:
            stat = os.fstat(fd)
            identity = (stat.st_dev, stat.st_ino)
            if index is None or index.identity != identity or stat.st_size < index.end:
                index = LedgerIndex(identity=identity, after=index)  # a first read, or the file changed under us
            if stat.st_size > index.end:
                index.extend(_chunks(fd, index.end, stat.st_size))
        finally:
            os.close(fd)
        self._index = index
        return index


def _each(exc: Exception, lines: int) -> Exception:
    """A batch's failure as each of its callers raises it: certain (an
    ExecutionError: nothing was written) or not (the intent reconciles)."""
    if isinstance(exc, ExecutionError):
        return ExecutionError(exc.reason, exc.detail)
    return OSError(f"the append of {lines} line(s) failed: {type(exc).__name__}: {exc}")


@attrs.define(eq=False)
class _Line:
    """One apply's or revert's line, from its caller to the batch that writes it."""

    data: bytes
    taken: bool = False  # by a batch (no longer pending)
    done: bool = False  # its batch written, or failed with `failure`: only then may its caller go on
    failure: Exception | None = None
    woken: anyio.Event = attrs.field(factory=anyio.Event)  # set: done, or to lead the next batch


@attrs.frozen
class Written:
    identity: tuple[int, int]  # the file's (device, inode)
    start: int  # its size before the write
    data: bytes  # what was written: the line, after a closing marker if a tail was torn


def append_line(path: Path, line: bytes) -> Written:
    """Append `line` to the file at `path` (created if absent), fsynced;
    a torn tail is closed first. Blocking: run it in a worker thread."""
    try:
        fd, created = _open_for_append(path)
    except OSError as exc:
        raise ExecutionError(UNWRITABLE, f"{path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close
            stat = os.fstat(fd)
            tail = _tail_length(fd, stat.st_size)
        except OSError as exc:
            raise ExecutionError(UNWRITABLE, f"{path}: {exc.strerror or exc}") from None
        data = line if tail == 0 else b"\n" + torn_marker(tail) + line
        view = memoryview(data)
        while view:  # a write may be short (a signal, a full disk): write the rest
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return Written(identity=(stat.st_dev, stat.st_ino), start=stat.st_size, data=data)


def read_ledger(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The records of the ledger at `path`, in file order, as dicts with the
    keys intent, tenant, key, op. A torn tail and closed torn writes are no
    records; a damaged line raises ValueError (a count over it would mislead)."""
    scan = scan_ledger(Path(path).read_bytes())
    if scan.damaged:
        raise ValueError(f"{path}: {scan.damaged} damaged line(s)")
    return [record.to_dict() for record in scan.records]


def _open_for_append(path: Path) -> tuple[int, bool]:
    """A descriptor open for appending (and reading its end), and whether this created the file."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
    try:
        return os.open(path, flags), False
    except FileNotFoundError:
        pass
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:  # created meanwhile by another process
        return os.open(path, flags), False


def _tail_length(fd: int, size: int) -> int:
    """Bytes after the file's last newline (0: it ends with one, or is empty)."""
    end = size
    while end > 0:
        start = max(0, end - _BACK_STEP)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline != -1:
            return size - (start + newline + 1)
        end = start
    return size


def _chunks(fd: int, start: int, stop: int) -> Iterator[bytes]:
    """The file's bytes in [start, stop), READ_CHUNK at a time."""
    offset = start
    while offset < stop:
        chunk = os.pread(fd, min(READ_CHUNK, stop - offset), offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk
