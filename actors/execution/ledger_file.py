"""The ledger file's format, and how it is read: pure functions, no I/O.

One JSON object per line, each line ending in a newline:

    {"intent":"i-1","tenant":"acme","key":"acme/i-1","op":"apply"}
    {"intent":"i-1","tenant":"acme","key":"acme/i-1","op":"revert"}

What counts as an effect (the ledger type's reconcile and `read_ledger`
agree on it, for they share `Scanner`):

1. A record is a complete line (newline included) holding exactly those four
   string fields, `op` "apply" or "revert".
2. The tail, bytes after the last newline, is no record: an append returns
   only once its whole line, newline included, is written and fsynced, so a
   tail is a write that never completed (a crash mid-write).
3. The next append does not glue onto a tail: it first closes it with a
   newline and a marker line `{"torn":N}`, N the tail's length in bytes.
   A line followed by a marker of its own length is a torn write, not a
   record, whatever it holds (a write cut just before its newline holds a
   whole object). The marker is no record either.
4. Any other line is damaged (a torn write whose closing marker is lost, a
   hand edit, a bad disk). Damage may hide a record, so with damage in the
   file, "no record for this key" is UNKNOWN, never NOT_APPLIED. A record
   that is there is APPLIED whatever else the file holds.
5. A reader that remembers a file (`LedgerIndex`) and finds it replaced,
   truncated or removed keeps the records it saw (they took effect) and
   answers UNKNOWN for the rest: the part lost may have held them.

Markers go in the same write as the record after them, so a reader never
sees a closed tail without its marker.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import orjson

from exoarmur.actors.intents.effects import Reconciled

__all__ = ["OPS", "LedgerIndex", "LedgerScan", "Record", "Scanner", "parse_line", "record_line", "scan_ledger", "torn_marker"]

OPS = ("apply", "revert")
FIELDS = ("intent", "tenant", "key", "op")

Entry = tuple[str, str]  # (key, op)


@attrs.frozen
class Record:
    intent: str
    tenant: str
    key: str
    op: str

    @property
    def entry(self) -> Entry:
        return (self.key, self.op)

    def to_dict(self) -> dict[str, str]:
        return {"intent": self.intent, "tenant": self.tenant, "key": self.key, "op": self.op}


def record_line(record: Record) -> bytes:
    """The bytes an append writes for `record` (its fields in FIELDS order)."""
    return orjson.dumps(record.to_dict()) + b"\n"


def torn_marker(length: int) -> bytes:
    """The line that closes a tail of `length` bytes (rule 3)."""
    return orjson.dumps({"torn": length}) + b"\n"


def parse_line(line: bytes) -> Record | int | None:
    """One line (no newline): a Record, a marker's length, or None (damaged)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    if len(value) == 4 and all(type(value.get(f)) is str for f in FIELDS) and value["op"] in OPS:
        return Record(value["intent"], value["tenant"], value["key"], value["op"])
    torn = value.get("torn")
    if len(value) == 1 and type(torn) is int and torn >= 0:
        return torn
    return None


# The last complete line read, held until the next line says whether it was
# torn: its record (None: damaged) and its length in bytes.
Held = tuple[Record | None, int]


class Scanner:
    """Reads a ledger's bytes in order, in chunks of any size. `feed` returns
    the lines it can judge (a Record, or None for a damaged one); the last
    complete line is `held` until the next one; `consumed` counts the bytes of
    complete lines, so a later scan can go on from there with `held`."""

    def __init__(self, *, held: Held | None = None) -> None:
        self.held = held
        self.consumed = 0
        self._partial = b""

    def feed(self, chunk: bytes) -> list[Record | None]:
        data = self._partial + chunk if self._partial else chunk
        *lines, self._partial = data.split(b"\n")
        self.consumed += len(data) - len(self._partial)
        judged: list[Record | None] = []
        for line in lines:
            parsed = parse_line(line)
            if type(parsed) is int:
                if self.held is not None and self.held[1] == parsed:
                    self.held = None  # a torn write, closed: neither is a record
                    continue
                parsed = None  # a marker that closes nothing: damaged
            if self.held is not None:
                judged.append(self.held[0])
            self.held = (parsed, len(line))  # type: ignore[assignment]
        return judged

    @property
    def tail(self) -> int:
        """Bytes fed after the last newline."""
        return len(self._partial)

    def finish(self) -> list[Record | None]:
        """The held line, judged: nothing follows it (yet)."""
        held, self.held = self.held, None
        return [] if held is None else [held[0]]


@attrs.frozen
class LedgerScan:
    records: tuple[Record, ...]
    damaged: int  # lines that are neither records, torn writes nor markers (rule 4)
    tail: int  # bytes after the last newline (rule 2)


def scan_ledger(data: bytes) -> LedgerScan:
    """A whole ledger's bytes, read by the rules above (never raises)."""
    scanner = Scanner()
    lines = scanner.feed(data) + scanner.finish()
    records = tuple(line for line in lines if line is not None)
    return LedgerScan(records=records, damaged=len(lines) - len(records), tail=scanner.tail)


class LedgerIndex:
    """What one ledger file holds, by (key, op), up to byte `end` (a line
    boundary), with the scanner's `held` line to go on from. `identity` is
    the file's (device, inode); None: there was no file. `lost`: a file read
    before was replaced, truncated or removed, so records may be gone (its
    entries are kept: they did take effect)."""

    def __init__(self, *, identity: tuple[int, int] | None, after: LedgerIndex | None = None) -> None:
        self.identity = identity
        self.end = 0
        self.entries: set[Entry] = set()
        self.damaged = 0
        self.held: Held | None = None
        self.lost = False
        if after is not None and (after.end or after.lost):
            self.entries = set(after.entries)
            if after.held is not None and after.held[0] is not None:
                self.entries.add(after.held[0].entry)
            self.lost = True

    def extend(self, chunks: Iterable[bytes]) -> None:
        """Take the file's bytes from `end` on, in chunks; nothing is taken
        if reading a chunk raises."""
        scanner = Scanner(held=self.held)
        entries: set[Entry] = set()
        damaged = 0
        for chunk in chunks:
            for line in scanner.feed(chunk):
                if line is None:
                    damaged += 1
                else:
                    entries.add(line.entry)
        self.entries |= entries
        self.damaged += damaged
        self.held = scanner.held
        self.end += scanner.consumed

    def answer(self, entry: Entry) -> Reconciled:
        held = None if self.held is None else self.held[0]
        if entry in self.entries or (held is not None and held.entry == entry):
            return Reconciled.APPLIED
        if self.damaged or self.lost or (self.held is not None and held is None):
            return Reconciled.UNKNOWN
        return Reconciled.NOT_APPLIED
