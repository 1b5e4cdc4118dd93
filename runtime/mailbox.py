"""Where a message waits: a bounded FIFO of envelopes, plus a control lane.

Invariants (each checked by tests/runtime/test_mailbox.py):
- `len(queue) <= capacity`, always.
- accepted == processed + expired + shed + dead-lettered-at-stop + len(queue).
- The control lane is separate and small: a full queue never delays a stop or
  a supervision signal, and user sends never enter it.
- A sender waiting for room (policy `wait`) waits in FIFO order behind earlier
  waiters, and never past its envelope's deadline. A freed slot is handed to
  the first waiter's envelope directly, so no later sender can overtake it.

The mailbox is a plain data structure: what happens to an envelope that does
not fit (reject, wait, shed) is decided by the actor cell, which owns the codes.
"""

from __future__ import annotations

import enum
import math
from collections import deque

import anyio
import attrs

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.envelope import Envelope


class Overflow(enum.StrEnum):
    REJECT = "reject"  # the sender gets OVERLOAD_MAILBOX_FULL at once
    WAIT = "wait"  # the sender waits for room until its own deadline
    SHED_OLDEST = "shed_oldest"  # the oldest envelope is dead-lettered (OVERLOAD_SHED)


def validate_capacity(capacity: object) -> int:
    """Capacity is a positive int: zero, negative, infinite or non-int is a ValueError."""
    if isinstance(capacity, bool) or not isinstance(capacity, int | float):
        raise ValueError(f"mailbox capacity must be a positive int, got {capacity!r}")
    if isinstance(capacity, float):
        if not math.isfinite(capacity) or not capacity.is_integer():
            raise ValueError(f"mailbox capacity must be a finite int, got {capacity!r}")
        capacity = int(capacity)
    if capacity <= 0:
        raise ValueError(f"mailbox capacity must be > 0, got {capacity!r}")
    return capacity


def _optional(convert):
    return lambda value: None if value is None else convert(value)


@attrs.frozen
class MailboxConfig:
    """Mailbox settings; a None field keeps what the spawn call or class says."""

    capacity: int | None = attrs.field(default=None, converter=_optional(validate_capacity))
    overflow: Overflow | None = attrs.field(default=None, converter=_optional(Overflow))


@attrs.frozen
class MailboxStatistics:
    depth: int
    capacity: int
    accepted: int
    rejected: int
    expired: int
    processed: int
    shed: int
    waiting_senders: int


class _Waiter:
    __slots__ = ("envelope", "event", "delivered")

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.event = anyio.Event()
        self.delivered = False


class Mailbox:
    __slots__ = (
        "queue",
        "capacity",
        "overflow",
        "accepted",
        "rejected",
        "expired",
        "processed",
        "shed",
        "closed",
        "control",
        "waiters",
    )

    def __init__(self, *, capacity: int, overflow: Overflow) -> None:
        self.queue: deque[Envelope] = deque()
        self.capacity = validate_capacity(capacity)
        self.overflow = Overflow(overflow)
        self.accepted = 0
        self.rejected = 0
        self.expired = 0
        self.processed = 0
        self.shed = 0
        # Set once: the code every later send is refused with.
        self.closed: ReasonCode | None = None
        # Control signals, created on first use so an idle mailbox stays small.
        self.control: deque[object] | None = None
        # Senders waiting for room (policy `wait`), FIFO.
        self.waiters: deque[_Waiter] | None = None

    def push_control(self, signal: object) -> None:
        """Signals from the runtime itself, never from user sends: a stop, and the
        signals a supervisor gets from its children (at most one outstanding per
        child, since a crashed child stays suspended until resumed). That bound,
        not a capacity, keeps the lane small."""
        if self.control is None:
            self.control = deque()
        self.control.append(signal)

    def hand_over_slot(self) -> bool:
        """A slot was freed: the first waiting sender's envelope takes it, in FIFO
        order (senders never barge past a waiter: the fast path requires no waiters).
        True if one did."""
        waiters = self.waiters
        if not waiters or len(self.queue) >= self.capacity:  # urgent mail past the capacity: no slot yet
            return False
        waiter = waiters.popleft()
        self.queue.append(waiter.envelope)
        self.accepted += 1
        waiter.delivered = True
        waiter.event.set()
        return True

    def wake_all_waiters(self) -> None:
        """The mailbox closed: every waiting sender returns undelivered."""
        waiters = self.waiters
        while waiters:
            waiters.popleft().event.set()

    async def wait_for_room(self, envelope: Envelope) -> bool:
        """Queue `envelope` behind earlier waiters until a slot is handed to it
        (True), the mailbox closes, or its deadline passes (False)."""
        if self.waiters is None:
            self.waiters = deque()
        waiter = _Waiter(envelope)
        self.waiters.append(waiter)
        with anyio.CancelScope(deadline=envelope.deadline):
            try:
                await waiter.event.wait()
            finally:
                if not waiter.event.is_set():
                    self.waiters.remove(waiter)
        return waiter.delivered

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            depth=len(self.queue),
            capacity=self.capacity,
            accepted=self.accepted,
            rejected=self.rejected,
            expired=self.expired,
            processed=self.processed,
            shed=self.shed,
            waiting_senders=len(self.waiters) if self.waiters else 0,
        )
