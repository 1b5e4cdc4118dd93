"""One audit chain checked as its records come, in stream order: pure.

What `verify_chain` (actors/nats/audit_stream.py) proves of a chain read
alone, here for chains that share a stream, and with every fault named
instead of the first one raised: each record's hash is the hash of its
content (record_altered), each one's prev is the hash of the record before
it (chain_broken), positions run from 0 with none absent (records_missing),
none twice (position_repeated), and in stream order (record_out_of_order).

How, in memory that grows with the faults, not the records: consecutive
positions that link up form a run, checked as they come (`add`); a chain
read intact is one run. `finish` sorts the runs by position to find what is
absent, repeated or linked wrongly between runs, and keeps the heaviest
chain of runs already in order (a weighted longest increasing subsequence):
the runs outside it are the ones stored out of order. Swapping two records
thus names those two, not everything between them. A record dropped at the
very end of a chain leaves no trace in the chain itself: replay finds it by
comparing the intents with KV.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from exoarmur.actors.intents.replay_problems import Problem, ProblemKind
from exoarmur.actors.nats import Record, chain_hash
from exoarmur.actors.nats.audit_stream import GENESIS

__all__ = ["ChainCheck", "chained"]


@attrs.define(slots=True)
class Run:
    """Records at consecutive positions, each linked to the one before."""

    first: int
    last: int
    first_prev: str
    last_hash: str
    seq: int | None  # the stream sequence of its first record


class ChainCheck:
    """One chain's records, fed in stream order; `finish` for what only the
    whole chain shows."""

    __slots__ = ("chain", "runs")

    def __init__(self, chain: str) -> None:
        self.chain = chain
        self.runs: list[Run] = []

    def add(self, record: Record, seq: int | None) -> list[Problem]:
        """Check one record (of this chain); problems seen at once: a hash
        that is not its content's, a link to the record before that fails.
        A record whose hash does not match still counts with the hash it
        carries, so one edit is one problem, not the rest of the chain."""
        found = []
        position = record.position
        if chain_hash(self.chain, record.prev, position, record.event) != record.hash:
            what = "its hash is not the hash of its content"
            found.append(self._problem(ProblemKind.RECORD_ALTERED, position, seq, what))
        run = self.runs[-1] if self.runs else None
        if run is not None and position == run.last + 1:
            if record.prev != run.last_hash:
                found.append(self._broken(position, seq))
            run.last, run.last_hash = position, record.hash
        else:
            self.runs.append(Run(position, position, record.prev, record.hash, seq))
        return found

    def finish(self) -> list[Problem]:
        """What the whole chain shows: positions absent or repeated, links
        between runs, and runs stored out of order (a repeat is named as
        one, not also as out of order). Read only: a chain may be fed more
        and finished again."""
        found: list[Problem] = []
        repeats: set[int] = set()  # ids of the runs that repeat stored positions
        expected, before = 0, GENESIS  # the next position, the hash of the one before it
        for run in sorted(self.runs, key=lambda r: (r.first, r.seq or 0)):
            if run.first > expected:
                found.append(self._missing(expected, run.first - 1))
            elif run.first < expected:
                repeats.add(id(run))
                last = min(run.last, expected - 1)
                span = f"position {run.first}" if last == run.first else f"positions {run.first} to {last}"
                found.append(
                    self._problem(ProblemKind.POSITION_REPEATED, run.first, run.seq, f"{span} stored again (a fork)")
                )
            elif run.first_prev != before:
                found.append(self._broken(run.first, run.seq))
            if run.last + 1 > expected:
                expected, before = run.last + 1, run.last_hash
        found += [self._out_of_order(run, after) for run, after in self._out_of_order_runs() if id(run) not in repeats]
        return found

    @property
    def length(self) -> int:
        """One past the highest position seen."""
        return max((run.last + 1 for run in self.runs), default=0)

    # ---- what is stored out of order ------------------------------------------------

    def _out_of_order_runs(self) -> list[tuple[Run, int]]:
        """The runs outside the heaviest chain of runs in increasing position
        order (weight: records), each with the highest position stored
        before it."""
        runs = self.runs
        if all(a.first < b.first for a, b in zip(runs, runs[1:])):
            return []
        kept = _heaviest_increasing([run.first for run in runs], [run.last - run.first + 1 for run in runs])
        out, highest = [], -1
        for index, run in enumerate(runs):
            if index not in kept:
                out.append((run, highest))
            highest = max(highest, run.last)
        return out

    # ---- problems ---------------------------------------------------------------------

    def _problem(self, kind: ProblemKind, position: int, seq: int | None, what: str, **details: object) -> Problem:
        where = f"chain {self.chain!r} position {position}" + ("" if seq is None else f" (stream sequence {seq})")
        return Problem(
            kind=kind, message=f"{where}: {what}", chain=self.chain, position=position, seq=seq, details=details
        )

    def _broken(self, position: int, seq: int | None) -> Problem:
        if position == 0:
            what = "the chain's first record does not start from the genesis hash"
        else:
            what = f"its prev is not the hash of position {position - 1}: one of the two was changed"
        return self._problem(ProblemKind.CHAIN_BROKEN, position, seq, what)

    def _missing(self, first: int, last: int) -> Problem:
        span = f"position {first} is" if first == last else f"positions {first} to {last} ({last - first + 1}) are"
        return self._problem(ProblemKind.RECORDS_MISSING, first, None, f"{span} absent from the stream", last=last)

    def _out_of_order(self, run: Run, after: int) -> Problem:
        span = f"position {run.first}" if run.first == run.last else f"positions {run.first} to {run.last}"
        return self._problem(
            ProblemKind.RECORD_OUT_OF_ORDER, run.first, run.seq, f"{span} stored after position {after}", last=run.last
        )


def _heaviest_increasing(keys: list[int], weights: list[int]) -> set[int]:
    """The indices of a subsequence with strictly increasing keys and the
    greatest total weight (a Fenwick tree of prefix maxima: n log n)."""
    ranks = {key: rank for rank, key in enumerate(sorted(set(keys)), start=1)}
    size = len(ranks)
    tree: list[tuple[int, int]] = [(0, -1)] * (size + 1)  # (best total, index ending it)
    best: list[int] = []
    back: list[int] = []
    for index, (key, weight) in enumerate(zip(keys, weights, strict=True)):
        rank, top = ranks[key] - 1, (0, -1)
        while rank > 0:  # the best among smaller keys
            top = max(top, tree[rank])
            rank -= rank & -rank
        total = top[0] + weight
        best.append(total)
        back.append(top[1])
        rank = ranks[key]
        while rank <= size:
            if tree[rank][0] < total:
                tree[rank] = (total, index)
            rank += rank & -rank
    index = max(range(len(keys)), key=best.__getitem__)
    kept = set()
    while index >= 0:
        kept.add(index)
        index = back[index]
    return kept


def chained(chain: str, events: Iterable[dict[str, Any]], *, position: int = 0, prev: str = GENESIS) -> list[Record]:
    """The records an AuditStream of `chain` stores for `events`, appended
    in order from `position` after the record whose hash is `prev`."""
    records = []
    for event in events:
        record = Record(chain, position, prev, event, chain_hash(chain, prev, position, event))
        records.append(record)
        position, prev = position + 1, record.hash
    return records
