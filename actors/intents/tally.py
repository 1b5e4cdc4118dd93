"""What this process's intents did, for /metrics: how many entered each
state, and how long each took from its submission to its end.

One `IntentTally` is shared by every intent actor of a process (through
`IntentSetting.tally`). An intent's end is counted where it is written, once:
its terminal write is a compare-and-set, so a retried or resumed one is not
counted twice.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client import Histogram

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.states import TERMINAL, IntentState

__all__ = ["SETTLE_BUCKETS", "IntentTally"]

# Seconds from submission to a terminal state: a noop settles in milliseconds,
# an approval can take an operator's hour.
SETTLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class IntentTally:
    def __init__(self) -> None:
        self.states: Counter[str] = Counter()
        self.settle = Histogram(
            "exoarmur_intent_settle_seconds",
            "Seconds from an intent's submission to its terminal state, per intent ended in this process.",
            buckets=SETTLE_BUCKETS,
            registry=None,
        )

    def written(self, record: IntentRecord, *, was: IntentState) -> None:
        """`record` was written in its new state, moved from `was`. Its time
        is observed at its first end only: a revert after SUCCEEDED
        (REVERTING, then REVERTED) is counted by state, not timed again."""
        self.states[record.state.value] += 1
        if record.state in TERMINAL and was not in TERMINAL and was is not IntentState.REVERTING:
            self.settle.observe(max(record.updated - record.created, 0.0))
