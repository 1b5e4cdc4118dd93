"""Admission: whether a send's envelope enters an actor's mailbox, and what
its sender sees if not. The mailbox (runtime/mailbox.py) is the data; the
codes are decided here.

    open, with room     queued; a drain is scheduled if none is
    no room             the mailbox's overflow policy:
                          reject       OVERLOAD_MAILBOX_FULL at once
                          wait         the sender waits for a slot, in FIFO
                                       order, until its own deadline
                          shed_oldest  the oldest is dead-lettered (OVERLOAD_SHED)
    closed              the closing code: the stop's, or BREAKER_OPEN while the
                        breaker gate is shut (a HALF_OPEN probe may pass)
    urgent              a type the actor handles with `urgent=True`: queued
                        behind the urgent envelopes waiting, ahead of the
                        rest; refused (OVERLOAD_MAILBOX_FULL) only past twice
                        the capacity, whatever the policy; never shed for
                        ordinary mail, and a waiting sender gets a slot only
                        once the queue is below the capacity

`offer` is the one fast path, shared by `tell` and `tell_nowait` (as anyio's
`send` shares `send_nowait`'s) and by `ask`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.endings import dead_letter
from exoarmur.runtime.gate import let_probe_in
from exoarmur.runtime.mailbox import Overflow

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell
    from exoarmur.runtime.envelope import Envelope

__all__ = ["offer", "offer_nowait", "offer_waiting", "redeliver", "reject"]

WAIT, SHED_OLDEST = Overflow.WAIT, Overflow.SHED_OLDEST


def offer(cell: Cell, env: Envelope) -> bool:
    """True: accepted. False: policy `wait` and no room (await `offer_waiting`).
    Raises the coded error for a refusal."""
    mailbox = cell.mailbox
    if mailbox.closed is None:
        queue = mailbox.queue
        if cell.urgent and type(env.message) in cell.urgent:
            return _offer_urgent(cell, env)
        if len(queue) < mailbox.capacity and not mailbox.waiters:
            queue.append(env)
            mailbox.accepted += 1
            if not cell.scheduled:
                cell.schedule()
            return True
        overflow = mailbox.overflow
        if overflow is WAIT:
            return False
        if overflow is SHED_OLDEST:
            oldest = _oldest_ordinary(cell) if cell.urgent else queue.popleft()
            if oldest is None:  # all urgent: nothing ordinary to shed for it
                reject(cell, env, ReasonCode.OVERLOAD_MAILBOX_FULL)
            mailbox.shed += 1
            dead_letter(cell, oldest, ReasonCode.OVERLOAD_SHED)
            queue.append(env)
            mailbox.accepted += 1
            return True
        reject(cell, env, ReasonCode.OVERLOAD_MAILBOX_FULL)
    if let_probe_in(cell, env):
        return True
    reject(cell, env, mailbox.closed)


def _oldest_ordinary(cell: Cell) -> Envelope | None:
    """Taken out of the queue: its oldest envelope that is not urgent (urgent
    mail is never shed for ordinary mail); None if every one is urgent."""
    queue, urgent = cell.mailbox.queue, cell.urgent
    for index, queued in enumerate(queue):
        if type(queued.message) not in urgent:
            del queue[index]
            return queued
    return None


def _offer_urgent(cell: Cell, env: Envelope) -> bool:
    mailbox, queue, urgent = cell.mailbox, cell.mailbox.queue, cell.urgent
    if len(queue) >= 2 * mailbox.capacity:
        reject(cell, env, ReasonCode.OVERLOAD_MAILBOX_FULL)
    ahead = 0  # the urgent envelopes at the head: few, as they are handled first
    for queued in queue:
        if type(queued.message) not in urgent:
            break
        ahead += 1
    queue.insert(ahead, env)
    mailbox.accepted += 1
    if not cell.scheduled:
        cell.schedule()
    return True


def offer_nowait(cell: Cell, env: Envelope) -> None:
    """As `offer`, but a `wait`-policy mailbox without room rejects at once."""
    if not offer(cell, env):
        reject(cell, env, ReasonCode.OVERLOAD_MAILBOX_FULL)


async def offer_waiting(cell: Cell, env: Envelope) -> None:
    """Wait for a slot (FIFO behind earlier waiters) until `env`'s deadline."""
    if await cell.mailbox.wait_for_room(env):
        cell.schedule()
        return
    reject(cell, env, cell.mailbox.closed or ReasonCode.DEADLINE_EXCEEDED)


def reject(cell: Cell, env: Envelope, code: ReasonCode) -> NoReturn:
    """Refuse a send: counted, audited, raised to the sender."""
    cell.mailbox.rejected += 1
    raise cell.system.failure("rejected", code, path=cell.path, envelope=env)


def redeliver(cell: Cell, env: Envelope) -> bool:
    """Put `env` at the head of the mailbox (a retry of the envelope a crash
    interrupted): handled first by the fresh instance. False, and nothing
    queued, if the mailbox is closed or full (the capacity is never exceeded)."""
    mailbox = cell.mailbox
    if mailbox.closed is not None or len(mailbox.queue) >= mailbox.capacity:
        return False
    mailbox.queue.appendleft(env)
    mailbox.accepted += 1
    cell.schedule()
    return True
