"""The breaker gate on a mailbox: how a supervisor's open breaker makes sends
to its child fail fast, and how HALF_OPEN lets a few probes through.

- `fail_fast(cell, code)`: every send is refused with `code` (BREAKER_OPEN)
  and what is queued is dead-lettered with it (askers told at once).
- `admit(cell)`: the gate is lifted. `admit(cell, probes=n)`: only n more
  envelopes may enter (the HALF_OPEN probes); the drain handles them one at a
  time (`drain_probes`) and reports each outcome to the parent: handled well,
  failed (a dependency failure reported while handling it), or never handled.
- A stop's code stands: a gate never replaces it, and admit never lifts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.endings import dead_letter
from exoarmur.runtime.handling import handle_async, handle_sync
from exoarmur.runtime.lifecycle import RUNNING, STOPPED, STOPPING

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell
    from exoarmur.runtime.deferred import Deferred
    from exoarmur.runtime.envelope import Envelope

__all__ = ["Gate", "admit", "drain_probes", "fail_fast"]


class Gate:
    """One cell's probes (made when its mailbox is first gated)."""

    __slots__ = ("left", "pending", "probing", "deferred")

    def __init__(self) -> None:
        self.left = 0  # probes that may still enter the gated mailbox
        self.pending = 0  # probes admitted and not yet handled
        self.probing = False  # a probe's handler is running
        self.deferred: Deferred | None = None  # ... and the Deferred it returned, if it did


def fail_fast(cell: Cell, code: ReasonCode) -> None:
    mailbox = cell.mailbox
    if mailbox.closed is not None and mailbox.closed is not code:
        return  # stopping: the stop's code stands
    mailbox.closed = code
    if cell.gate is None:
        cell.gate = Gate()
    cell.gate.left = 0
    mailbox.wake_all_waiters()
    queue = mailbox.queue
    while queue:
        dead_letter(cell, queue.popleft(), code)
    cell.gate.pending = 0  # every queued probe went with the queue


def admit(cell: Cell, *, probes: int | None = None) -> None:
    mailbox = cell.mailbox
    if mailbox.closed is None or cell.state is STOPPING or cell.state is STOPPED:
        return
    if cell.gate is None:
        cell.gate = Gate()
    if probes is None:
        mailbox.closed = None
        cell.gate.left = 0
    else:
        cell.gate.left = probes


def let_probe_in(cell: Cell, env: Envelope) -> bool:
    """A send to a gated mailbox: True (queued) if a probe may enter."""
    gate = cell.gate
    mailbox = cell.mailbox
    if gate is None or not gate.left or len(mailbox.queue) >= mailbox.capacity:
        return False
    gate.left -= 1
    gate.pending += 1
    mailbox.queue.append(env)
    mailbox.accepted += 1
    cell.schedule()
    return True


async def drain_probes(cell: Cell) -> None:
    """Handle admitted probes one by one and report each outcome to the parent."""
    gate = cell.gate
    assert gate is not None
    queue = cell.mailbox.queue
    now = cell.system.now
    while gate.pending and queue and cell.state is RUNNING:
        env = queue.popleft()
        gate.pending -= 1
        if env.deadline <= now():
            cell.mailbox.expired += 1
            dead_letter(cell, env, ReasonCode.DEADLINE_EXCEEDED)
            cell.parent.child_probed(cell, None)
            continue
        cell.failure_reported = False
        fn, is_async = cell.dispatch[type(env.message)]
        gate.probing, gate.deferred = True, None
        try:
            crash = await handle_async(cell, fn, env) if is_async else handle_sync(cell, fn, env)
        finally:
            gate.probing = False
        if crash is None and gate.deferred is not None:
            await _probe_settled(cell, gate, env)
        if crash is not None:
            cell.down(crash)  # the parent counts the crash
            return
        cell.parent.child_probed(cell, not cell.failure_reported)


async def _probe_settled(cell: Cell, gate: Gate, env: Envelope) -> None:
    """A probe answered later is judged when its answer comes (or its
    deadline passes), so the dependency failures it reports count."""
    deferred, gate.deferred = gate.deferred, None
    assert deferred is not None
    if deferred.settled:
        return
    settled = anyio.Event()
    deferred.on_settled = settled.set
    with anyio.move_on_after(max(env.deadline - cell.system.now(), 0.0)):
        await settled.wait()
