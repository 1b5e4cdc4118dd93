"""The drain: the task that runs an actor's handlers.

An idle actor holds no task. The send that makes its mailbox non-empty
schedules `drain` in the actor's host task group (the system's, or its
supervisor's: `ActorCell.schedule`). The drain handles up to `throughput`
envelopes per turn without yielding, yields once between turns, lingers
LINGER_PASSES scheduler passes when the mailbox empties (so a ping-pong asker
finds it still running), then returns. On asyncio it lingers one pass and
then stays parked a moment (runtime/backend.py's park): the next send wakes
it, which costs less than anyio's spawn.

Each turn begins with what must come first, in this order: the control lane
(runtime/control.py), a stop (`drain_stopping`), a wind-down asked by
`suspend` (`wind_down`), the linger of a suspended actor, HALF_OPEN probes
(runtime/gate.py), a fresh instance after a crash (runtime/instances.py),
room among the concurrent handlers (runtime/inflight.py).

Where timeouts come from: the envelope's deadline, checked when the envelope
is taken (a plain `def` handler cannot suspend, so that is enough); an
`async def` handler runs in a cancel scope at that deadline or the stop's
(runtime/handling.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outcome import Value

from exoarmur.runtime.batch import handle_run, take_run
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.control import dead_letter_signals, take_control
from exoarmur.runtime.deferred import Deferred
from exoarmur.runtime.endings import answered_with, cancelled, crashed, dead_letter
from exoarmur.runtime.errors import ExoarmurError
from exoarmur.runtime.gate import drain_probes
from exoarmur.runtime.handling import handle_async, handle_sync
from exoarmur.runtime.inflight import start_concurrent
from exoarmur.runtime.instances import fresh, replaced_at_once, run_stopping
from exoarmur.runtime.lifecycle import RUNNING, STOPPING, SUSPENDED

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell
    from exoarmur.runtime.envelope import Envelope

__all__ = ["LINGER_PASSES", "drain"]

LINGER_PASSES = 2
# Where an idle drain then parks (asyncio), one pass is enough: a later send wakes it.
LINGER_PASSES_BEFORE_PARKING = 1


async def drain(cell: Cell) -> None:
    CURRENT.set(cell.context)
    mailbox = cell.mailbox
    queue = mailbox.queue
    now = cell.system.now
    checkpoint = cell.system.backend.checkpoint
    park = cell.system.backend.park
    linger_passes = LINGER_PASSES if park is None else LINGER_PASSES_BEFORE_PARKING
    context = cell.context
    dispatch = cell.dispatch
    concurrent = cell.concurrent
    batched = cell.batched
    inflight = cell.inflight
    popleft = queue.popleft
    current: Envelope | None = None
    budget = 0
    carry = False  # a crash ended the last inner loop: its turn's budget goes on
    try:
        while True:
            if mailbox.control:
                await take_control(cell)
            state = cell.state
            if state is STOPPING:
                await drain_stopping(cell)
                return
            if state is RUNNING and cell.suspend_deadline is not None:
                await wind_down(cell)
                state = cell.state
            if state is SUSPENDED:
                # Linger (and park) as an idle drain does: a parent that
                # resumes soon reuses this task instead of a new one.
                for _ in range(linger_passes):
                    await checkpoint()
                    if cell.state is not SUSPENDED:
                        break
                else:
                    cell.scheduled = False  # resume() schedules (or wakes) a drain
                    if park is None or not await park(cell):
                        return
                continue
            if cell.gate is not None and cell.gate.pending and not cell.instance_dead:
                await drain_probes(cell)
                continue
            if cell.instance_dead:
                failure = await fresh(cell)
                if failure is not None:
                    cell.down(failure)  # the parent decides again
                    continue
            if inflight is not None and inflight.full:
                await inflight.wait_for_room()  # the mail waits in the mailbox meanwhile
                continue
            if carry:
                carry = False
            else:
                budget = cell.throughput
            actor = cell.actor
            while queue and budget:
                budget -= 1
                env = current = popleft()
                if mailbox.waiters:
                    mailbox.hand_over_slot()
                if env.deadline <= now():
                    mailbox.expired += 1
                    dead_letter(cell, env, ReasonCode.DEADLINE_EXCEEDED)
                    continue
                message = env.message
                fn, is_async = dispatch[type(message)]
                if is_async:
                    if type(message) in concurrent:
                        start_concurrent(cell, fn, take_run(cell, env) if type(message) in batched else env)
                        if inflight.full:  # type: ignore[union-attr]
                            break
                        continue
                    if type(message) in batched:
                        crash = await handle_run(cell, fn, take_run(cell, env))
                    else:
                        crash = await handle_async(cell, fn, env)
                    if crash is not None:
                        cell.down(crash)
                    if (
                        cell.state is not RUNNING
                        or cell.instance_dead
                        or cell.suspend_deadline is not None
                        or (cell.gate is not None and cell.gate.pending)
                    ):
                        break
                    continue
                # The plain `def` handler, inline: the tell path is decided by
                # these lines (runtime/handling.py's handle_sync, unrolled).
                reply = env.reply_to
                if reply is not None:
                    reply.started = True
                context.envelope = env
                mailbox.processed += 1
                try:
                    result = fn(actor, message)
                except Exception as exc:
                    if isinstance(exc, ExoarmurError) and answered_with(cell, env, exc):
                        continue
                    cell.down(crashed(cell, env, exc))
                    if budget and replaced_at_once(cell):
                        actor = cell.actor
                        continue  # the fresh instance goes on with this turn
                    break  # the loop top makes a fresh instance, if resumed
                if reply is not None and type(result) is not Deferred and not reply.resolve(Value(result)):
                    cell.system.late_replies += 1
            current = None
            context.envelope = None
            if cell.state is SUSPENDED:
                continue  # straight to the linger above: it checkpoints
            if cell.instance_dead and budget and not mailbox.control and cell.state is RUNNING:
                # Resumed at once (its parent decided in this stack): the
                # fresh instance goes on with this turn, no pass lost.
                carry = True
                continue
            if mailbox.control or queue or cell.instance_dead:
                await checkpoint()
                continue
            # Linger a scheduler pass or two before giving the task up (or
            # parking it), so a ping-pong asker finds the drain still
            # running (trio may run the drain before the asker in a batch).
            for _ in range(linger_passes):
                await checkpoint()
                if queue or mailbox.control:
                    break
            else:
                cell.scheduled = False
                if park is None or not await park(cell):
                    return
                # woken by schedule(), which set `scheduled` again
    except BaseException:
        # Cancelled (the host is going away) or a fatal error: the envelope in
        # hand, if its asker still waits, ends with SHUTTING_DOWN.
        cell.scheduled = False
        if current is not None:
            cancelled(cell, current)
        raise


async def wind_down(cell: Cell) -> None:
    """The drain's half of `suspend()`: what runs is cut by the suspend's
    deadline, `stopping` runs (bounded by it), the instance is dropped."""
    deadline = cell.suspend_deadline
    assert deadline is not None
    cell.suspend_deadline = None
    if cell.inflight is not None:
        await cell.inflight.wait_empty()  # each is cut at `deadline` at the latest
    await run_stopping(cell, deadline=deadline)
    await _signals_sent_while_stopping(cell)
    if cell.tasks is not None:
        cell.tasks.cancel_all()
    cell.instance_dead = True
    cell.move(SUSPENDED)
    event, cell.suspended = cell.suspended, None
    if event is not None:
        event.set()


async def _signals_sent_while_stopping(cell: Cell) -> None:
    """Signals sent to the instance while its `stopping` hook ran (a
    supervisor's children exiting as it shuts them down) are its own: they
    are handled now, after the hook, before the instance ends, so each ends
    and none reaches a later instance as a stale dead letter."""
    if cell.mailbox.control and not cell.instance_dead:
        await take_control(cell)
        cell.context.envelope = None


async def drain_stopping(cell: Cell) -> None:
    """Handle what is queued until the stop deadline, dead-letter the rest,
    run `stopping`, and end. A crashed instance handles nothing more (no
    restart while stopping): its queue is dead-lettered, its hook skipped."""
    mailbox = cell.mailbox
    queue = mailbox.queue
    now = cell.system.now
    code = mailbox.closed or ReasonCode.SHUTTING_DOWN
    if mailbox.control and not cell.instance_dead:
        await take_control(cell)
    while queue and now() < cell.stop_deadline and not cell.instance_dead:
        env = queue.popleft()
        if env.deadline <= now():
            mailbox.expired += 1
            dead_letter(cell, env, ReasonCode.DEADLINE_EXCEEDED)
            continue
        fn, is_async = cell.dispatch[type(env.message)]
        if is_async:
            await handle_async(cell, fn, env)
        else:
            handle_sync(cell, fn, env)
    while queue:
        dead_letter(cell, queue.popleft(), code)
    dead_letter_signals(cell, code)
    cell.context.envelope = None
    if cell.inflight is not None:
        await cell.inflight.wait_empty()  # each is cut at the stop deadline at the latest
    if cell.owed:
        await cell.owed.settle_by_stop(cell, code)
    await run_stopping(cell, deadline=cell.stop_deadline)
    await _signals_sent_while_stopping(cell)
    dead_letter_signals(cell, code)
    if cell.tasks is not None:
        cell.tasks.cancel_all()
    cell.scheduled = False
    cell.finish()
