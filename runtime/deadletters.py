"""Dead letters: envelopes that were accepted but never handled.

Every accepted envelope ends exactly once: handed to a handler (processed) or
recorded here with a code. Counts are exact; the record list keeps the most
recent `capacity` entries so memory stays bounded under a storm.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping

import attrs

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.envelope import Envelope


@attrs.frozen
class DeadLetter:
    path: str
    code: ReasonCode
    envelope: Envelope
    at: float


class DeadLetters:
    def __init__(self, *, capacity: int = 10_000) -> None:
        if capacity <= 0:
            raise ValueError("dead-letter capacity must be > 0")
        self._recent: deque[DeadLetter] = deque(maxlen=capacity)
        self._counts: Counter[ReasonCode] = Counter()

    def record(self, letter: DeadLetter) -> None:
        self._recent.append(letter)
        self._counts[letter.code] += 1

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def counts(self) -> Mapping[ReasonCode, int]:
        return dict(self._counts)

    def count(self, code: ReasonCode) -> int:
        return self._counts[code]

    def recent(self) -> list[DeadLetter]:
        return list(self._recent)
