"""The ledger file's rules, fuzzed: the reader never raises, reads the same
whatever the chunking, and "reconcile, apply only on NOT_APPLIED" leaves
exactly one record per key through torn writes at any byte."""

from __future__ import annotations

import collections
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.actors.execution import Reconciled, scan_ledger
from exoarmur.actors.execution.ledger import append_line
from exoarmur.actors.execution.ledger_file import LedgerIndex, Record, Scanner, parse_line, record_line, torn_marker

RECORD = record_line(Record("i-1", "acme", "acme/i-1", "apply"))

# Bytes that look like ledger lines often enough to reach every branch.
pieces = st.sampled_from(
    [RECORD, RECORD[:-1], RECORD[:7], b"\n", b"{}\n", b'{"torn":3}\n', torn_marker(len(RECORD) - 1), b"\xff\xfe", b"[1,2]\n", b'{"torn":-1}\n']
)
ledger_bytes = st.one_of(st.binary(max_size=400), st.lists(st.one_of(pieces, st.binary(max_size=8)), max_size=30).map(b"".join))


def index_of(chunks: list[bytes]) -> LedgerIndex:
    index = LedgerIndex(identity=None)
    index.extend(chunks)
    return index


class TestParser:
    def test_a_record_a_marker_and_damage(self):
        assert parse_line(RECORD[:-1]) == Record("i-1", "acme", "acme/i-1", "apply")
        assert parse_line(b'{"torn":12}') == 12
        for damaged in (b"", b"{}", b'{"torn":true}', b'{"torn":-1}', b'{"intent":"i","tenant":"t","key":"k","op":"undo"}', b"\xff"):
            assert parse_line(damaged) is None, damaged

    def test_a_tail_is_no_record_and_a_closed_tail_neither(self):
        assert scan_ledger(RECORD + RECORD[:-1]).records == (parse_line(RECORD[:-1]),)
        closed = RECORD[:-1] + b"\n" + torn_marker(len(RECORD) - 1) + RECORD
        scan = scan_ledger(closed)
        assert (len(scan.records), scan.damaged, scan.tail) == (1, 0, 0)

    def test_a_marker_of_another_length_closes_nothing(self):
        scan = scan_ledger(RECORD[:-1] + b"\n" + torn_marker(5) + RECORD)
        assert (len(scan.records), scan.damaged) == (2, 1)  # the line stays a record; the marker is damage

    @given(ledger_bytes)
    def test_the_reader_never_raises_it_only_answers(self, data):
        scan = scan_ledger(data)
        assert scan.tail == len(data) - (data.rfind(b"\n") + 1)
        assert len(scan.records) + scan.damaged <= data.count(b"\n")
        assert index_of([data]).answer(("acme/i-1", "apply")) in set(Reconciled)

    @given(ledger_bytes, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
    def test_the_chunking_does_not_change_what_is_read(self, data, cuts):
        """Read in one go or in pieces (and in two sittings, carrying `held`), the index is the same."""
        points = sorted({min(cut, len(data)) for cut in cuts})
        chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
        whole, pieces_ = index_of([data]), index_of(chunks)
        assert (whole.entries, whole.damaged, whole.held, whole.end) == (pieces_.entries, pieces_.damaged, pieces_.held, pieces_.end)
        later = index_of([data[: whole.end // 2]])
        later.extend([data[later.end :]])
        assert (whole.entries, whole.damaged, whole.held, whole.end) == (later.entries, later.damaged, later.held, later.end)

    def test_a_scanner_holds_the_last_line_until_the_next(self):
        scanner = Scanner()
        assert scanner.feed(RECORD) == []
        assert scanner.held == (parse_line(RECORD[:-1]), len(RECORD) - 1)
        assert scanner.feed(RECORD) == [parse_line(RECORD[:-1])]


KEYS = [f"acme/i-{n}" for n in range(3)]


class TestExactlyOnceThroughTornWrites:
    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(range(len(KEYS))), st.none() | st.floats(min_value=0.0, max_value=0.999)), max_size=25))
    def test_reconcile_then_apply_on_not_applied_leaves_one_record_per_key(self, steps):
        """Each step takes one key's turn: reconcile it; APPLIED is done;
        NOT_APPLIED applies it, completely (None) or torn at a fraction of the
        bytes the append would write (a crash mid-write). In the end every key
        is driven to an answer: APPLIED keys hold exactly one record, and
        UNKNOWN comes only from damage, which only a torn write that was
        itself closing a torn tail can leave."""
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "ledger.jsonl"
            settled: dict[str, Reconciled] = {}
            closing_torn = False

            def turn(key: str, tear: float | None) -> None:
                nonlocal closing_torn
                data = path.read_bytes() if path.exists() else b""
                index = index_of([data])
                answer = index.answer((key, "apply"))
                if answer is not Reconciled.NOT_APPLIED:
                    settled[key] = answer
                    return
                line = record_line(Record(key.split("/")[1], "acme", key, "apply"))
                if tear is None:
                    append_line(path, line)
                else:
                    closing_torn |= data[-1:] not in (b"", b"\n")
                    write_torn(path, line, tear)

            for key_number, tear in steps:
                if KEYS[key_number] not in settled:
                    turn(KEYS[key_number], tear)
            for key in KEYS:
                while key not in settled:
                    turn(key, None)
            scan = scan_ledger(path.read_bytes())
            counts = collections.Counter(record.key for record in scan.records)
            assert closing_torn or scan.damaged == 0, path.read_bytes()
            for key, answer in settled.items():
                if answer is Reconciled.APPLIED:
                    assert counts[key] == 1, (key, path.read_bytes())
                else:
                    assert answer is Reconciled.UNKNOWN and scan.damaged and counts[key] == 0


def write_torn(path: Path, line: bytes, fraction: float) -> None:
    """Write the first `fraction` of what `append_line(path, line)` would
    append (the closing marker included), as a crash mid-write leaves it."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy"
        if path.exists():
            shutil.copyfile(path, copy)
        written = append_line(copy, line).data
    with open(path, "ab") as file:
        file.write(written[: int(len(written) * fraction)])
