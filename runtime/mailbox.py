"""Where a message waits: a bounded FIFO of envelopes, plus a control lane.

Invariants (each checked by tests/runtime/test_mailbox.py):
- `len(queue) <= capacity`, always.
- accepted == processed + expired + shed + dead-lettered-at-stop + len(queue).
- The control lane is separate and small: a full queue never delays a stop.
- A sender waiting for room (policy `wait`) waits in FIFO order behind earlier
  waiters, and never past its envelope's deadline.

The mailbox is a plain data structure: what happens to an envelope that does
not fit (reject, wait, shed) is decided by the actor cell, which owns the codes.
"""

from __future__ import annotations

import enum
import math
from collections import deque

import anyio
import attrs

from runtime.codes import ReasonCode
from runtime.envelope import Envelope


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


@attrs.frozen
class MailboxConfig:
    capacity: int = attrs.field(converter=validate_capacity)
    overflow: Overflow = attrs.field(converter=Overflow)


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


CONTROL_CAPACITY = 4


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
        self.waiters: deque[anyio.Event] | None = None

    def has_room(self) -> bool:
        return len(self.queue) < self.capacity and not self.waiters

    def push_control(self, signal: object) -> None:
        if self.control is None:
            self.control = deque(maxlen=CONTROL_CAPACITY)
        if len(self.control) == CONTROL_CAPACITY:
            raise RuntimeError("control lane full")  # a bug: signals are few and idempotent
        self.control.append(signal)

    def wake_one_waiter(self) -> None:
        """A slot was freed: let the first waiting sender try again."""
        waiters = self.waiters
        if waiters:
            waiters.popleft().set()

    def wake_all_waiters(self) -> None:
        waiters = self.waiters
        while waiters:
            waiters.popleft().set()

    async def wait_for_room(self, deadline: float) -> bool:
        """Wait, in FIFO order, until there is room, the mailbox closes, or the
        deadline passes. True if there is room now (the caller must use it before
        its next await)."""
        if self.waiters is None:
            self.waiters = deque()
        with anyio.CancelScope(deadline=deadline):
            while self.closed is None:
                event = anyio.Event()
                self.waiters.append(event)
                try:
                    await event.wait()
                finally:
                    if not event.is_set():
                        self.waiters.remove(event)
                if self.closed is None and len(self.queue) < self.capacity:
                    return True
            return False
        # The deadline passed. If a wake-up was addressed to us, pass it on.
        if self.closed is None and len(self.queue) < self.capacity:
            self.wake_one_waiter()
        return False

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
