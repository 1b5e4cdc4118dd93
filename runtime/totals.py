"""What every actor of one type did, in total: the figures behind /metrics.

Counters only grow: an actor that stops hands its counts to its type's
retired totals (`ActorSystem.unregister`), so a type whose actors come and go
(an intent actor per intent) keeps counting. Depth, capacity and the number
of actors are gauges: live actors only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from exoarmur.runtime.contracts import ActorInfo

__all__ = ["ActorTotals", "totals_of"]

COUNTERS = ("accepted", "rejected", "expired", "processed", "shed", "restarts")


@attrs.define
class ActorTotals:
    actors: int = 0  # live ones
    depth: int = 0  # envelopes waiting in their mailboxes now
    capacity: int = 0
    accepted: int = 0
    rejected: int = 0  # refused by a full mailbox
    expired: int = 0  # dropped at their deadline, unhandled
    processed: int = 0
    shed: int = 0
    restarts: int = 0

    def count(self, info: ActorInfo) -> None:
        """Add one actor's counters (not its gauges)."""
        mailbox = info.mailbox
        self.accepted += mailbox.accepted
        self.rejected += mailbox.rejected
        self.expired += mailbox.expired
        self.processed += mailbox.processed
        self.shed += mailbox.shed
        self.restarts += info.restarts


def totals_of(live: Iterable[ActorInfo], retired: Mapping[str, ActorTotals]) -> dict[str, ActorTotals]:
    """Per actor type (its class's qualified name): the retired counters plus
    every live actor's counters and gauges."""
    result = {name: attrs.evolve(totals) for name, totals in retired.items()}
    for info in live:
        totals = result.setdefault(info.actor, ActorTotals())
        totals.count(info)
        totals.actors += 1
        totals.depth += info.mailbox.depth
        totals.capacity += info.mailbox.capacity
    return result
