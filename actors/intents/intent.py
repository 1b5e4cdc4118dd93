"""One actor per live intent: it drives the intent from its KV record and
stops once the intent is settled. How an intent survives kill -9 is this file.

0. Gated before it executes. The gates (kill switches, ...) are asked from
   RECEIVED, and the kill switches again before an apply whenever their
   last check is older than KILL_CHECK_FRESH; the type's actor refuses to
   start an apply past that (actors/intents/gating.py). A refusal ends the
   intent (KILLED, DENIED, FAILED) and is kept until it is written.
1. Written before it takes effect. Every step is a compare-and-set of the
   record on the revision it was read at (actors/intents/store.py), made
   before the step acts: EXECUTING is durable before `apply` is called,
   REVERTING before `revert`.
2. Audited before the next step. The audit record of a revision is appended
   (deduplicated by intent and revision, actors/intents/trail.py) before the
   next revision is written; a fresh instance first appends the revision it
   finds, unless the intent is settled (out of the index: its end is
   audited). A crash between a write and its append is repaired by whoever
   drives the intent next.
3. Reconciled, never re-applied blindly. An intent found EXECUTING (or
   REVERTING) that this instance did not just write is the window between
   an effect and its record: the type is asked (`Reconcile`). APPLIED ->
   SUCCEEDED; NOT_APPLIED -> a new attempt (EXECUTING again, written first,
   at most `max_attempts` in all); UNKNOWN -> FAILED with RECONCILE_UNKNOWN,
   for an operator. An apply whose outcome is UNCERTAIN (a timeout, a crash
   of the type's actor) is reconciled the same way.
4. Found again after any restart. The intent stays in the `open` index
   until it is terminal and audited; at start the process resumes every
   unsettled intent it owns, and takes over those whose owner's lease has
   lapsed (actors/intents/resume.py, actors/intents/leases.py). A record
   whose owner is not this process is left alone: its writes would be
   refused (LEASE_LOST) anyway.

The steps run in one task of the actor (`_drive`), each under a deadline of
its own. A step that fails on the store, the audit or its own time is
reported and tried again after a pause (INTENT_RETRY_FIRST doubling to
INTENT_RETRY_MAX, jittered) from the record as KV has it: the actor never
crashes on a dependency, so an outage is waited out, not turned into a
restart storm; a bug crashes it, and its tenant's supervisor restarts it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

import anyio
import attrs

from exoarmur.actors.intents.effects import Apply, Effect, Outcome, Reconcile, Reconciled, Revert, TypeInfo
from exoarmur.actors.intents.faults import FaultPoints
from exoarmur.actors.intents.gates import Stage
from exoarmur.actors.intents.gating import Gating
from exoarmur.actors.intents.leases import Lapsed, LeaseRemaining, LeaseView
from exoarmur.actors.intents.messages import FirstRead, Recheck
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.states import TERMINAL, IntentState
from exoarmur.actors.intents.store import IntentStore
from exoarmur.actors.intents.tally import IntentTally
from exoarmur.actors.intents.trail import message_id, transition_event
from exoarmur.actors.intents.waiters import Settled
from exoarmur.actors.nats import Append
from exoarmur.runtime import (
    Actor,
    ActorRef,
    DependencyFailed,
    ExoarmurError,
    Overloaded,
    ReasonCode,
    System,
    TimeoutCategory,
    error_for,
    handles,
)
from exoarmur.runtime.margins import (
    EXECUTION_ANSWER,
    INDEX_ORPHAN_AGE,
    INTENT_RETRY_FIRST,
    INTENT_RETRY_MAX,
    LEASE_SPARE,
    REVERT_WAIT,
)

__all__ = ["IntentActor", "IntentSetting"]

S = IntentState
# An ask refused with these was never taken in: its handler never ran.
REFUSED_UNSTARTED = frozenset({ReasonCode.BREAKER_OPEN, ReasonCode.OVERLOAD_MAILBOX_FULL})


@attrs.frozen(kw_only=True)
class IntentSetting:
    """What every intent actor of one process shares: who it is, where the
    stores, the lease and the types are."""

    owner: str
    records: str
    open: str
    lease: str
    types: Mapping[str, TypeInfo]
    faults: FaultPoints = attrs.field(factory=FaultPoints, eq=False)
    max_attempts: int = 3
    service: str = ""  # the intent service, told when an intent ends ("": none)
    # The gates actor (actors/controls/gates.py) and the approvals' bucket;
    # "": a process without them, only for tests of the intent machinery itself.
    gates: str = ""
    approvals: str = ""
    # The tenants' desk (actors/tenants/desk.py): owners and limits; "": none.
    tenants: str = ""
    tally: IntentTally | None = attrs.field(default=None, eq=False)  # counts for /metrics
    drain: float = 0.0  # seconds a stop waits for an apply or revert in flight to end and be written

    def store(self, system: System) -> IntentStore:
        """The intent store on this process's bucket actors."""
        return IntentStore(system.lookup(self.records), system.lookup(self.open))


class IntentActor(Actor):
    mailbox_capacity = 4

    def __init__(
        self,
        *,
        tenant: str,
        intent_id: str,
        setting: IntentSetting,
        audit: str,
        take_over: bool = False,
        entry_owner: str = "",
        first_read: FirstRead | None = None,
    ) -> None:
        self.tenant = tenant
        self.take_over = take_over
        self.entry_owner = entry_owner  # a lapsed owner's index entry to drop once the record is not its
        self.intent_id = intent_id
        self.setting = setting
        self.audit_path = audit
        # As last read or written; None: read it again.
        self.record: IntentRecord | None = None if first_read is None else first_read.take()
        self.audited = 0  # the revision whose audit record is known appended
        self.told = 0  # the revision of the end the service was told of (0: none)
        self.in_effect: anyio.Event | None = None  # set once the attempt in flight has ended
        self.unborn = 0.0  # the last pause waiting for the record of a young index entry

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.store = self.setting.store(self.context.system)
        self.audit: ActorRef = lookup(self.audit_path)
        self.lease: ActorRef = lookup(self.setting.lease)
        gates = lookup(self.setting.gates) if self.setting.gates else None
        self.gating = Gating(gates=gates, types=self.setting.types, now=self.context.now, write=self._write)
        self.context.start_task(self._drive)

    async def _drive(self) -> None:
        """Step until settled, each step in a deadline of its own (the
        EXECUTION_INTENT category's seconds, from when it starts: never what
        is left of whoever started this actor). A step that fails on a
        dependency, or runs out of time, is reported (audited, and counted by
        the tenant's supervisor) and tried again from the record as KV has
        it, after a jittered pause that doubles up to INTENT_RETRY_MAX."""
        pause = INTENT_RETRY_FIRST
        budget = self.context.system.timeouts[TimeoutCategory.EXECUTION_INTENT]
        while True:
            outcome: bool | None = None  # True: settled; False: more to do; None: failed
            with anyio.CancelScope(deadline=self.context.now() + budget) as scope:
                try:
                    outcome = await self._step()
                except ExoarmurError as exc:
                    if exc.code is ReasonCode.LEASE_LOST:
                        outcome = True  # another process drives it now
                    else:
                        self.context.report_failure(exc.code, f"{self.tenant}.{self.intent_id}: {exc.detail}")
            if outcome:
                self.context.stop()
                return
            if outcome is False and not scope.cancelled_caught:
                pause = INTENT_RETRY_FIRST
                continue
            self.record = None
            await anyio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, INTENT_RETRY_MAX)

    # ---- one step ---------------------------------------------------------------

    async def _step(self) -> bool:
        """One step of the intent; True once it is settled (or not ours)."""
        me = self.setting.owner
        record = self.record
        if record is None:
            record = await self.store.load(self.tenant, self.intent_id)
            if record is None:  # an entry of a submission not (yet) acknowledged
                if await self.store.drop_orphan(me, self.tenant, self.intent_id, older_than=INDEX_ORPHAN_AGE):
                    return True
                # Young: its create may land yet, and this actor's name keeps the
                # submitter's own Activate from starting another: look again.
                self.unborn = min(self.unborn * 2, INTENT_RETRY_MAX) if self.unborn else INTENT_RETRY_FIRST
                await anyio.sleep(self.unborn)
                return False
            self.record = record
        if self.entry_owner not in ("", me, record.owner):  # that owner's entry is stale now
            await self.store.mark_settled(self.entry_owner, self.tenant, self.intent_id)
            self.entry_owner = ""
        if record.owner != me:
            if not (self.take_over and await self.lease.ask(Lapsed(record.owner))):
                await self.store.mark_settled(me, self.tenant, self.intent_id)  # ours, if any, is stale
                return True  # another owner drives it
            record = await self._take_over(record)
        info = self.setting.types.get(record.type)
        if record.state in TERMINAL and self._fresh_on_own_entry():
            # Out of the index, it settled before this instance started (the
            # resumer's snapshot of the index can be older than the end): its
            # end is audited, nothing is appended again.
            if not await self.store.is_open(me, self.tenant, self.intent_id):
                return await self._settled(record, info)
        await self._audited(record)
        if record.state is S.SUCCEEDED and record.revert_at and info is not None and info.revertible:
            await self._expire(record, info)
            return False
        if record.state in TERMINAL:
            return await self._settled(record, info)
        await self.STEPS[record.state](self, record, info)
        return False

    # ---- the step from each state that is not terminal (STEPS) ------------------

    async def _approve(self, record: IntentRecord, info: TypeInfo | None) -> None:
        """From RECEIVED or AWAITING_APPROVAL: the gates, then APPROVED (with
        who approved it, if anyone had to)."""
        if not await self._ended_before_effect(record, info):
            passed = await self.gating.check(record, Stage.ENTER)
            if passed is not None:
                await self._write(record, S.APPROVED, detail=passed.detail)

    async def _execute(self, record: IntentRecord, info: TypeInfo | None) -> None:
        if not await self._ended_before_effect(record, info) and await self.gating.switches_clear(record):
            assert info is not None
            await self._attempt(record, info, S.EXECUTING)

    async def _in_effect(self, record: IntentRecord, info: TypeInfo | None) -> None:
        """EXECUTING or REVERTING: reconciled, never applied again blindly."""
        if info is None:  # its type was configured away since: only it can say what happened
            raise error_for(
                ReasonCode.EXECUTION_TYPE_UNKNOWN, f"{record.kv_key} is {record.state}; no type {record.type!r}"
            )
        await self._reconcile(record, info)

    async def _expire(self, record: IntentRecord, info: TypeInfo) -> None:
        """SUCCEEDED with a revert due at `revert_at` (its `ttl`): wait for it
        (the actor and the index entry stay, so a restart finds it), then
        revert, REVERTING written first as every attempt is."""
        wait = record.revert_at - time.time()
        if wait > 0:
            await anyio.sleep(min(wait, REVERT_WAIT))
            return
        await self._attempt(record, info, S.REVERTING)

    async def _ended_before_effect(self, record: IntentRecord, info: TypeInfo | None) -> bool:
        """Ended here if its deadline passed (EXPIRED) or its type is unknown
        (FAILED): before any effect, either is certain."""
        if time.time() >= record.deadline:
            await self._write(record, S.EXPIRED, code=ReasonCode.DEADLINE_EXCEEDED, detail="deadline passed before executing")
        elif info is None:
            await self._write(
                record, S.FAILED, code=ReasonCode.EXECUTION_TYPE_UNKNOWN, detail=f"no execution type {record.type!r}"
            )
        else:
            return False
        return True

    STEPS = {
        S.RECEIVED: _approve,
        S.AWAITING_APPROVAL: _approve,
        S.APPROVED: _execute,
        S.EXECUTING: _in_effect,
        S.REVERTING: _in_effect,
    }

    async def _attempt(self, record: IntentRecord, info: TypeInfo, state: IntentState) -> None:
        """Write a new attempt (EXECUTING or REVERTING) and make it, under
        one generation of the owner's lease from the write to the call. None
        starts once the process is stopping: the intent stays as written,
        and whoever resumes it goes on from there."""
        if self.context.system.stopping:
            await anyio.sleep_forever()  # until this instance ends with the stop
        generation = await self._lease_covers(info)
        record = await self._write(record, state, attempt=True)
        await self._audited(record)
        faults = self.setting.faults
        if state is S.EXECUTING:
            faults.reached("after_executing_written")
        else:
            faults.reached("mid_revert")
        await self._lease_covers(info, generation=generation)
        if self.context.system.stopping:
            await anyio.sleep_forever()  # written, not made: the next start reconciles it
        self.in_effect = anyio.Event()  # a stop from now on waits for the outcome (`stopping`)
        try:
            await self._effect_and_outcome(record, info, state)
        finally:
            self.in_effect.set()

    async def stopping(self) -> None:
        """A stop lets an apply or revert in flight end and its outcome be
        written, for up to `drain` seconds (and no later than the stop's own
        deadline); one cut short is reconciled by whoever resumes the intent."""
        if self.in_effect is not None and not self.in_effect.is_set():
            with anyio.move_on_after(self.setting.drain):
                await self.in_effect.wait()

    async def _effect_and_outcome(self, record: IntentRecord, info: TypeInfo, state: IntentState) -> None:
        if state is S.EXECUTING:
            effect = await self._apply(record, info)
            if effect is None:
                return  # KILLED
        else:
            effect = await self._effect(Revert(record, record.key), info)
        if effect.outcome is Outcome.APPLIED:
            await self._applied(record)
        elif effect.outcome is Outcome.FAILED:
            await self._write(record, S.FAILED, code=effect.code, detail=effect.detail)
        # UNCERTAIN: the record stays as it is; the next step reconciles it.

    async def _applied(self, record: IntentRecord) -> None:
        faults = self.setting.faults
        done = S.SUCCEEDED if record.state is S.EXECUTING else S.REVERTED
        if done is S.SUCCEEDED:
            faults.reached("after_apply")
        record = await self._write(record, done)
        if done is S.SUCCEEDED:
            faults.reached("after_succeeded_written")

    async def _reconcile(self, record: IntentRecord, info: TypeInfo) -> None:
        answer = await self._ask(Reconcile(record, record.key), info)
        if answer is Reconciled.APPLIED:
            await self._applied(record)
        elif answer is Reconciled.UNKNOWN:
            await self._write(
                record, S.FAILED, code=ReasonCode.RECONCILE_UNKNOWN, detail=f"{info.name} could not tell whether it took effect"
            )
        elif record.attempts >= self._attempt_limit(record):
            await self._write(
                record, S.FAILED, code=ReasonCode.RETRY_EXHAUSTED, detail=f"{record.attempts} attempts did not take effect"
            )
        else:
            await self._attempt(record, info, record.state)

    async def _settled(self, record: IntentRecord, info: TypeInfo | None) -> bool:
        """Out of the index; then, if it SUCCEEDED with a type that reverts,
        read again, since a revert may have been written meanwhile (the index
        entry is put back and it goes on). Nothing else is ever written over
        a terminal record."""
        me = self.setting.owner
        await self.store.mark_settled(me, self.tenant, self.intent_id)
        revertible = record.state is S.SUCCEEDED and info is not None and info.revertible
        again = await self.store.load(self.tenant, self.intent_id) if revertible else record
        if again is None or again.owner != me:
            return True
        if again.state in TERMINAL:
            if again.revision > self.told:
                self._tell_ended(again)
            return True
        await self.store.mark_open(me, self.tenant, self.intent_id)
        self.record = again
        return False

    async def _take_over(self, record: IntentRecord) -> IntentRecord:
        """Make the intent this process's: its last revision audited first
        (the former owner may have died before it), this process's index
        entry written (before the record, as a submission's is: a crash
        between the two leaves an entry to resume from), then the record
        written under the new owner (the former one is fenced from here
        on), then the former owner's entry dropped."""
        await self._audited(record)
        me = self.setting.owner
        await self.store.mark_open(me, self.tenant, self.intent_id)
        written = await self.store.write(record, record.owned_by(me, now=time.time()))
        self.record = written
        await self.store.mark_settled(record.owner, self.tenant, self.intent_id)
        return written

    def _fresh_on_own_entry(self) -> bool:
        """Nothing done by this instance yet, started for this process's own
        entry (not a takeover, whose index move a crash may have cut short)."""
        return self.audited == 0 and not self.take_over and not self.entry_owner

    def _tell_ended(self, record: IntentRecord) -> None:
        """The service answers the requests that wait for this end; one that
        cannot be told finds it by reading (actors/intents/waiters.py)."""
        self.told = record.revision
        service = self.context.system.find(self.setting.service) if self.setting.service else None
        if service is not None:
            try:
                service.tell_nowait(Settled(record))
            except Overloaded:  # requests fill its mailbox: its poll finds the end
                pass
            except ExoarmurError as exc:
                self.context.report_failure(exc.code, f"{record.kv_key} ended; the service was not told: {exc.detail}")

    def _attempt_limit(self, record: IntentRecord) -> int:
        limit = self.setting.max_attempts
        return limit if record.state is S.EXECUTING else 2 * limit  # reverts count on top of the applies

    # ---- the stores, the lease, the type ------------------------------------------

    async def _write(self, record: IntentRecord, state: IntentState, **change: object) -> IntentRecord:
        after = record.moved(state, now=time.time(), **change)  # type: ignore[arg-type]
        self.record = None  # unknown until the write is answered
        self.record = written = await self.store.write(record, after)
        if self.setting.tally is not None:
            self.setting.tally.written(written, was=record.state)
        if state in TERMINAL:
            self._tell_ended(written)  # durable now: its audit record follows
        await self._audited(written)
        return written

    async def _audited(self, record: IntentRecord) -> None:
        """Append `record`'s audit record unless it is known appended."""
        if self.audited >= record.revision:
            return
        await self.audit.ask(Append(transition_event(record), msg_id=message_id(record)))
        self.audited = record.revision

    async def _lease_covers(self, info: TypeInfo, *, generation: int | None = None) -> int:
        """The lease's generation, if it outlasts one call of the type (and is
        still `generation`); LEASE_LAPSING otherwise (the step is tried again
        from KV: a revoked lease may mean the intent is another's now)."""
        lease: LeaseView = await self.lease.ask(LeaseRemaining())
        if generation is not None and lease.generation != generation:
            raise DependencyFailed(ReasonCode.LEASE_LAPSING, "the owner's lease was revoked and taken anew")
        if lease.remaining < info.timeout + EXECUTION_ANSWER + LEASE_SPARE:
            raise DependencyFailed(
                ReasonCode.LEASE_LAPSING, f"the owner's lease holds {lease.remaining:.1f} s, less than one {info.name} call"
            )
        return lease.generation

    async def _apply(self, record: IntentRecord, info: TypeInfo) -> Effect | None:
        """Apply, started only within KILL_CHECK_FRESH of a kill-switch check
        that passed (checked again while it is not); None if the intent was
        KILLED instead."""
        while True:
            if not await self.gating.switches_clear(record):
                return None
            effect = await self._effect(Apply(record, record.key, not_after=self.gating.not_after), info)
            if effect.outcome is not Outcome.NOT_STARTED:
                return effect
            if effect.code == ReasonCode.BREAKER_OPEN:  # opened since the gates: certain, no attempt spent
                await self._write(record, S.FAILED, code=effect.code, detail=effect.detail)
                return None
            if effect.code != ReasonCode.KILL_SWITCH_ACTIVE:  # its mailbox was full: a moment, then again
                await anyio.sleep(INTENT_RETRY_FIRST)

    async def _effect(self, call: Apply | Revert, info: TypeInfo) -> Effect:
        """The type's answer. An ask refused before it was taken in (the
        type's breaker open, its mailbox full) is NOT_STARTED; one that fails
        otherwise (the type's actor down, no answer in time) is UNCERTAIN."""
        try:
            return await self._ask(call, info)
        except ExoarmurError as exc:
            outcome = Outcome.NOT_STARTED if exc.code in REFUSED_UNSTARTED else Outcome.UNCERTAIN
            return Effect(outcome, exc.code, exc.detail)

    @handles(Recheck)
    def recheck(self, m: Recheck) -> None:
        self.gating.recheck()

    async def _ask(self, message: object, info: TypeInfo) -> object:
        ref = self.context.system.lookup(info.path)
        return await ref.ask(message, deadline=self.context.now() + info.timeout + EXECUTION_ANSWER)
