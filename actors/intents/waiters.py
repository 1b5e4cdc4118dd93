"""Requests waiting for their intent to end (`"wait": SECONDS` in a submit
or a get): the reply is held until the intent is terminal or the wait is
over, so a submitter learns the end with one request, not by polling.

Three ways a waiter is answered, by the intent service (service.py):

    settled   the intent's actor says so (`Settled`, told as it stops): at once
    polled    every WAIT_POLL seconds the records of waiters whose intent
              has no actor here are read (another process drives it, or its
              actor stopped without telling), and after WAIT_POLL_TOLD those
              of the others too (an end told before the waiter came): a
              terminal one is answered
    over      its wait ends: answered with the intent as it is then

A waiter is registered before anything could end its intent (before the
actor is started, before the record is read), so no end is missed. At most
`limit` wait at once: a request that would wait beyond is refused with
OVERLOAD_SHED before it changes anything (`check_room`).
Pure bookkeeping: no I/O here.
"""

from __future__ import annotations

import heapq
import itertools

import attrs

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.runtime import ReasonCode, error_for, message

__all__ = ["Settled", "Waiter", "Waiters"]


@message("exoarmur.intent.settled")
class Settled:
    """To the intent service, from an intent's actor: it is terminal, as `record`."""

    record: IntentRecord


@attrs.define(eq=False)
class Waiter:
    reply: str  # the request's reply subject
    key: str  # the intent's KV key, <tenant>.<id>
    until: float  # when its wait is over (the service's clock)
    since: float  # when it began
    code: str = ""  # the reply's code once answered (DUPLICATE_SUPPRESSED for a duplicate submit)
    detail: str = ""  # and its detail, if any
    after: int = 0  # the revision it saw: an end at or before it is an older one (a SUCCEEDED since reverted)


class Waiters:
    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._by_key: dict[str, list[Waiter]] = {}
        self._by_end: list[tuple[float, int, Waiter]] = []  # a heap: earliest end first
        self._order = itertools.count()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def check_room(self) -> None:
        """OVERLOAD_SHED if `limit` requests wait already (asked before a
        request changes anything, so a refusal leaves nothing behind)."""
        if self._count >= self.limit:
            raise error_for(ReasonCode.OVERLOAD_SHED, f"{self._count} requests wait for their intents already")

    def add(self, reply: str, key: str, *, since: float, until: float, code: str = "", detail: str = "") -> Waiter:
        waiter = Waiter(reply, key, until, since, code, detail)
        self._by_key.setdefault(key, []).append(waiter)
        heapq.heappush(self._by_end, (until, next(self._order), waiter))
        self._count += 1
        return waiter

    def remove(self, waiter: Waiter) -> bool:
        """Forget `waiter`; False if it was gone already (answered: its
        caller must not answer it again)."""
        waiting = self._by_key.get(waiter.key)
        if waiting is None or waiter not in waiting:
            return False
        waiting.remove(waiter)
        if not waiting:
            del self._by_key[waiter.key]
        self._count -= 1
        self._compact()
        return True

    def settled(self, record: IntentRecord) -> list[Waiter]:
        """The waiters a terminal record ends, removed: those that saw an
        older revision than it (one that saw a later one waits on)."""
        waiting = self._by_key.pop(record.kv_key, [])
        ended = [w for w in waiting if w.after < record.revision]
        if len(ended) < len(waiting):
            self._by_key[record.kv_key] = [w for w in waiting if w.after >= record.revision]
        self._count -= len(ended)
        self._compact()
        return ended

    def _compact(self) -> None:
        """Answered entries pile up in the heap: keep it near the live count."""
        if len(self._by_end) > 2 * self._count + 64:
            self._by_end = [entry for entry in self._by_end if entry[2] in self._by_key.get(entry[2].key, ())]
            heapq.heapify(self._by_end)

    def over(self, now: float) -> list[Waiter]:
        """The waiters whose wait is over at `now`, removed."""
        ended = []
        while self._by_end and self._by_end[0][0] <= now:
            _, _, waiter = heapq.heappop(self._by_end)
            if waiter in self._by_key.get(waiter.key, ()):
                self.remove(waiter)
                ended.append(waiter)
        self._drop_answered()
        return ended

    def older_than(self, since: float) -> list[str]:
        """The keys of intents waited for since before `since`."""
        return [key for key, waiting in self._by_key.items() if any(w.since < since for w in waiting)]

    def next_end(self) -> float | None:
        self._drop_answered()
        return self._by_end[0][0] if self._by_end else None

    def _drop_answered(self) -> None:
        """Heap entries of waiters answered otherwise go once they reach the top."""
        while self._by_end and self._by_end[0][2] not in self._by_key.get(self._by_end[0][2].key, ()):
            heapq.heappop(self._by_end)
