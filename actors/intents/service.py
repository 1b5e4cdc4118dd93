"""Submission over NATS: request/reply with the tenant in the subject.

    exoarmur.intents.<tenant>.submit  {"id", "type", "params"?, "timeout"?, "wait"?, "tenant"?}
    exoarmur.intents.<tenant>.get     {"id", "wait"?}
    exoarmur.intents.<tenant>.list    {"state"?, "limit"?}
    exoarmur.intents.<tenant>.revert  {"id"}
    exoarmur.intents.<tenant>.approve {"id", "who"?, "reason"?}   (approving.py)
    exoarmur.intents.<tenant>.deny    {"id", "who"?, "reason"?}

Every process serves them in one queue group: a request is answered by one.
Replies are JSON: `{"ok": true, "code": "", "intent": {...}}` (`"intents":
[...]` for list), or `{"ok": false, "code": CODE, "detail": "..."}`. An
intent is shown as id, tenant, type, params, state, code, detail, attempts,
owner (the process driving it), revision and its times (`view`).

With `"wait": SECONDS` (at most MAX_WAIT), a submit or get is answered
once the intent is terminal, or when the wait is over with the intent as it
is then (waiters.py): one request instead of polling.

Submit is idempotent by id: the record is created by compare-and-set, so an
id that exists (a retry, a duplicate delivery, another process's) is answered
with the existing intent and DUPLICATE_SUPPRESSED and never executes twice.
The reply comes once the record is durable and indexed: an acknowledged
intent survives any crash after it. A `tenant` in the body must be the
subject's (TENANT_MISMATCH); every field is checked (INTENT_INVALID,
EXECUTION_TYPE_UNKNOWN), and a bad request never stops the service.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import orjson

from exoarmur.actors.intents.approvals import Decision
from exoarmur.actors.intents.approving import decide
from exoarmur.actors.intents.intent import IntentSetting
from exoarmur.actors.intents.messages import Activate, Admit, Released, intent_actor_path
from exoarmur.actors.intents.recent import RecentKeys
from exoarmur.actors.intents.record import IntentRecord, check_id
from exoarmur.actors.intents.requests import GET_FIELDS, PREFIX, new_record, only, parse_request, wait_of
from exoarmur.actors.intents.states import TERMINAL, IntentState
from exoarmur.actors.intents.waiters import Settled, Waiter, Waiters
from exoarmur.actors.nats import Delivery, Publish, Subscribe
from exoarmur.actors.nats.json_replies import reply_json
from exoarmur.runtime import (
    Actor,
    ActorRef,
    ExoarmurError,
    InvalidInput,
    ReasonCode,
    error_for,
    handles,
)

from exoarmur.runtime.margins import WAIT_POLL, WAIT_POLL_TOLD

__all__ = ["PREFIX", "IntentService", "view"]

QUEUE = "exoarmur-intents"
FORWARDED = "exoarmur.process"  # <FORWARDED>.<owner>.<PREFIX>.<tenant>.submit: a submission forwarded to its tenant's owner
LIST_LIMIT = 1000
LIST_CONCURRENCY = 64
LIST_SCAN = 10_000  # records read by one list at most
LIST_BYTES = 512 * 1024  # a reply stays well under NATS's 1 MiB payload
WAIT_LIMIT = 10_000  # requests waiting for their intents at once
RECENT_KEYS = 16_384  # intents created lately: delivered again, a duplicate before any limit (recent.py)
POLL_BATCH = 256  # records of waited-for intents read per poll at most
# The answer to a request that finds the mailbox full, given by the connection.
OVERLOADED = orjson.dumps(
    {"ok": False, "code": ReasonCode.OVERLOAD_MAILBOX_FULL.value, "detail": "the intent service is overloaded: try again later"}
)
CLOSING = orjson.dumps(
    {"ok": False, "code": ReasonCode.SHUTTING_DOWN.value, "detail": "this process is stopping: try again (submit is idempotent)"}
)


def view(record: IntentRecord) -> dict[str, Any]:
    """An intent as a reply shows it."""
    return {
        "id": record.id,
        "tenant": record.tenant,
        "type": record.type,
        "params": dict(record.params),
        "state": record.state.value,
        "code": record.code,
        "detail": record.detail,
        "attempts": record.attempts,
        "owner": record.owner,
        "revision": record.revision,
        "created": record.created,
        "updated": record.updated,
        "deadline": record.deadline,
    }


class IntentService(Actor):
    # Past this many requests waiting their turn (some seconds of work), one
    # more is refused at once (OVERLOADED) rather than left to time out.
    mailbox_capacity = 2_000
    concurrency = 256

    def __init__(
        self, *, connection: str, setting: IntentSetting, router: str, tenants: str, default_timeout: float = 30.0
    ) -> None:
        self.connection_path = connection
        self.setting = setting
        self.router_path = router
        self.tenants_path = tenants  # the tenants' supervisor: an intent's live actor is under it
        self.default_timeout = default_timeout
        self.waiters = Waiters(limit=WAIT_LIMIT)
        self.recent = RecentKeys(RECENT_KEYS)
        self.replan = anyio.Event()  # set: a waiter ends sooner than the wait planned

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.connection: ActorRef = lookup(self.connection_path)
        self.router: ActorRef = lookup(self.router_path)
        self.store = self.setting.store(self.context.system)
        self.approvals: ActorRef | None = lookup(self.setting.approvals) if self.setting.approvals else None
        self.desk: ActorRef | None = lookup(self.setting.tenants) if self.setting.tenants else None
        await self.connection.ask(
            Subscribe(f"{PREFIX}.*.*", self.context.path, queue=QUEUE, refusal=OVERLOADED, closing=CLOSING)
        )
        forwarded = f"{FORWARDED}.{self.setting.owner}.{PREFIX}.*.submit"  # from processes that are not the tenant's owner
        await self.connection.ask(Subscribe(forwarded, self.context.path, refusal=OVERLOADED, closing=CLOSING))
        self.context.start_task(self._answer_waits)

    @handles(Delivery, concurrent=True)
    async def on_request(self, m: Delivery) -> None:
        await reply_json(self.context, self.connection, m, self._answer)

    async def _answer(self, subject: str, data: bytes, reply: str) -> dict[str, Any] | None:
        """The reply; None if it is held until the intent ends (a waiter) or
        forwarded to the tenant's owner (which answers `reply` itself)."""
        own = f"{FORWARDED}.{self.setting.owner}."
        forwarded = subject.startswith(own)
        tenant, operation, body = parse_request(subject.removeprefix(own) if forwarded else subject, data)
        if operation == "submit":
            if self.context.system.stopping:  # the stop drains what runs; nothing new starts
                raise error_for(ReasonCode.SHUTTING_DOWN, "this process is stopping: try again (submit is idempotent)")
            return await self.submit(tenant, body, reply, data=data, forwarded=forwarded)
        if operation == "get":
            return await self.get(tenant, body, reply)
        if operation == "list":
            return await self.list(tenant, body)
        if operation in ("approve", "deny"):
            return await self.decide(tenant, body, Decision.APPROVED if operation == "approve" else Decision.DENIED)
        return await self.revert(tenant, body)

    async def decide(self, tenant: str, body: dict[str, Any], decision: Decision) -> dict[str, Any]:
        """Store an operator's approval or denial of an intent that waits for one."""
        if self.approvals is None:
            raise error_for(ReasonCode.INTENT_STATE_INVALID, "this process takes no approvals")
        record, approval, code = await decide(
            store=self.store, approvals=self.approvals, types=self.setting.types, tenant=tenant, body=body, decision=decision
        )
        detail = f"intent {record.id} was already {approval.says()}" if code else ""
        return {"ok": True, "code": code, "detail": detail, "intent": view(record), "approval": approval.view()}

    async def get(self, tenant: str, body: dict[str, Any], reply: str) -> dict[str, Any] | None:
        only(body, GET_FIELDS)
        wait = wait_of(body)
        if wait is not None:
            self.waiters.check_room()
        intent_id = check_id(body.get("id"))
        waiter = self._wait(reply, f"{tenant}.{intent_id}", wait)  # before the read: no end missed
        try:
            record = await self._existing(tenant, intent_id)
        except ExoarmurError:
            if waiter is not None and not self.waiters.remove(waiter):
                return None  # answered meanwhile (its end came): one reply only
            raise
        except BaseException:  # cancelled: nobody waits any more
            if waiter is not None:
                self.waiters.remove(waiter)
            raise
        if waiter is not None:
            if record.state not in TERMINAL:
                waiter.after = record.revision  # an end older than what it saw is not its end
                return None
            if not self.waiters.remove(waiter):
                return None  # answered meanwhile
        return {"ok": True, "code": "", "intent": view(record)}

    async def submit(
        self, tenant: str, body: dict[str, Any], reply: str = "", *, data: bytes = b"", forwarded: bool = False
    ) -> dict[str, Any] | None:
        """A new intent, if its tenant's owner (this process, or the one it is
        forwarded to) admits it under the tenant's limits."""
        wait = wait_of(body)
        if wait is not None:
            self.waiters.check_room()
        record = new_record(
            tenant,
            body,
            types=self.setting.types,
            owner=self.setting.owner,
            now=time.time(),
            default_timeout=self.default_timeout,
        )
        intent_id = record.id
        if record.ttl and not self.setting.types[record.type].revertible:
            raise InvalidInput(ReasonCode.INTENT_INVALID, f"execution type {record.type!r} cannot revert: no ttl")
        if record.kv_key in self.recent:  # delivered again: the duplicate it is, before any limit
            stored = await self.store.load(tenant, intent_id)
            if stored is not None:
                return await self._again(stored, reply=reply, wait=wait, differs=_differs(stored, record))
        if self.desk is not None:
            owner = await self.desk.ask(Admit(tenant, forwarded=forwarded))
            if owner:  # another process owns the tenant: it answers the requester
                await self.connection.ask(Publish(f"{FORWARDED}.{owner}.{PREFIX}.{tenant}.submit", data, reply=reply))
                return None
        self.recent.add(record.kv_key)  # from now: a delivery again is looked up, not refused
        try:
            await self.store.mark_open(self.setting.owner, tenant, intent_id)
            stored, created = await self.store.create(record)
        except BaseException:
            self._release(tenant)  # admitted, never created
            raise
        if not created:
            self._release(tenant)
            if stored.owner != self.setting.owner:  # another process's: our entry is stale
                stored = await self._entry_dropped(stored)
            return await self._again(stored, reply=reply, wait=wait, differs=_differs(stored, record))
        waiter = self._wait(reply, stored.kv_key, wait)  # before its actor starts: no end missed
        try:
            await self.router.ask(Activate(tenant, intent_id, record=stored))
        except ExoarmurError as exc:  # durable and indexed: the resumer starts it later
            self.context.report_failure(exc.code, f"{record.kv_key} accepted, its actor not started: {exc.detail}")
        return None if waiter is not None else {"ok": True, "code": "", "intent": view(stored)}

    def _release(self, tenant: str) -> None:
        """An intent the desk admitted settled, or was never created."""
        if self.desk is not None:
            try:
                self.desk.tell_nowait(Released(tenant))
            except ExoarmurError:  # the desk's recount corrects it
                pass

    async def _again(
        self, record: IntentRecord, *, reply: str = "", wait: float | None = None, differs: str = ""
    ) -> dict[str, Any] | None:
        """A submission of an id that exists: that intent, DUPLICATE_SUPPRESSED
        (`differs`: how the submission differed from it, said in the detail).
        One of ours has its actor running: an unsettled one to drive it (it
        may have stopped in a race; the resumer would start it too, later),
        a settled one to take the index entry this submission wrote."""
        duplicate = _duplicate(record, differs)
        waiter = None
        if record.state not in TERMINAL:
            waiter = self._wait(reply, record.kv_key, wait, code=duplicate["code"], detail=duplicate["detail"])
            if waiter is not None:
                waiter.after = record.revision
        if record.owner == self.setting.owner:
            try:
                await self.router.ask(Activate(record.tenant, record.id))
            except ExoarmurError as exc:  # indexed: the resumer starts it later
                self.context.report_failure(exc.code, f"{record.kv_key} not activated again: {exc.detail}")
        return None if waiter is not None else duplicate

    async def list(self, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
        """The tenant's intents by id, `limit` at most; with `state`, those in
        it. Reads records in pages of LIST_CONCURRENCY, at most LIST_SCAN of
        them, and stops once the page is full or the reply would pass
        LIST_BYTES: `truncated` says whether there was more."""
        only(body, ("state", "limit", "tenant"))
        state = body.get("state")
        if state is not None and (not isinstance(state, str) or state not in IntentState.__members__):
            raise InvalidInput(ReasonCode.INTENT_INVALID, f"state must be one of {', '.join(IntentState)}")
        limit = body.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT:
            raise InvalidInput(ReasonCode.INTENT_INVALID, f"limit must be an integer from 1 to {LIST_LIMIT}")
        ids = await self.store.keys(tenant)
        shown: list[dict[str, Any]] = []
        size = 0
        for start in range(0, min(len(ids), LIST_SCAN), LIST_CONCURRENCY):
            page = await self.store.load_many(tenant, ids[start : start + LIST_CONCURRENCY])
            for record in page:
                if state is not None and record.state != state:
                    continue
                item = view(record)
                size += len(orjson.dumps(item))
                if len(shown) == limit or size > LIST_BYTES:
                    return {"ok": True, "code": "", "intents": shown, "truncated": True}
                shown.append(item)
        return {"ok": True, "code": "", "intents": shown, "truncated": len(ids) > LIST_SCAN}

    async def revert(self, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
        """SUCCEEDED -> REVERTING, written here; the intent's actor reverts it.
        Asked again once it is REVERTING or REVERTED: that intent, with
        DUPLICATE_SUPPRESSED (never a second revert)."""
        only(body, ("id", "tenant"))
        record = await self._existing(tenant, body.get("id"))
        info = self.setting.types.get(record.type)
        if info is None or not info.revertible:
            raise InvalidInput(ReasonCode.INTENT_INVALID, f"execution type {record.type!r} cannot revert")
        if record.state in (IntentState.REVERTING, IntentState.REVERTED):
            return await self._again(record)  # asked again (a lost reply): one revert
        # A terminal intent has no driver: whichever process is asked takes it,
        # the compare-and-set below being the fence.
        me = self.setting.owner
        reverting = record.moved(IntentState.REVERTING, now=time.time(), owner=me)  # refused unless SUCCEEDED
        await self.store.mark_open(me, tenant, record.id)  # before the write: a crash after it resumes the revert
        try:
            written = await self.store.write(record, reverting)
        except ExoarmurError as exc:  # another revert won the compare-and-set: that one stands
            now = await self.store.load(tenant, record.id)
            if exc.code not in (ReasonCode.KV_CONFLICT, ReasonCode.LEASE_LOST) or now is None:
                raise
            if now.state not in (IntentState.REVERTING, IntentState.REVERTED):
                raise
            if now.owner != me:  # the entry written above is stale: the winner has its own
                now = await self._entry_dropped(now)
            return await self._again(now)
        # Indexed again: the intent's actor may have been settling SUCCEEDED
        # and dropped the entry between the first put and the write.
        await self.store.mark_open(me, tenant, record.id)
        await self.router.ask(Activate(tenant, record.id, record=written))
        return {"ok": True, "code": "", "intent": view(written)}

    async def _entry_dropped(self, record: IntentRecord) -> IntentRecord:
        """Drop this process's index entry of another's intent; then read it
        again, and put the entry back if the intent has become this
        process's meanwhile (a takeover by the resumer) and is not settled.
        The record as read last."""
        me = self.setting.owner
        await self.store.mark_settled(me, record.tenant, record.id)
        again = await self.store.load(record.tenant, record.id)
        if again is None:
            return record
        if again.owner == me and again.state not in TERMINAL:
            await self.store.mark_open(me, record.tenant, record.id)
        return again

    async def _existing(self, tenant: str, intent_id: object) -> IntentRecord:
        record = await self.store.load(tenant, check_id(intent_id))
        if record is None:
            raise error_for(ReasonCode.INTENT_NOT_FOUND, f"no intent {intent_id!r} in tenant {tenant!r}")
        return record


    # ---- requests waiting for their intent's end (waiters.py) ------------------------

    def _wait(self, reply: str, key: str, wait: float | None, *, code: str = "", detail: str = "") -> Waiter | None:
        """Hold the reply to `reply` until `key`'s intent ends or `wait` is
        over; None (answered at once) without a wait or a reply subject."""
        if wait is None or not reply:
            return None
        now = self.context.now()
        waiter = self.waiters.add(reply, key, since=now, until=now + wait, code=code, detail=detail)
        self.replan.set()
        return waiter

    @handles(Settled, urgent=True)
    def settled(self, m: Settled) -> None:
        """An intent of this process is terminal: its waiters are answered,
        and its tenant's desk uncounts it. Urgent: a flood of submissions
        queued here must not hold the quota of intents that ended (the
        desk's admissions would fall as the flood grows)."""
        self._ended(m.record)
        self._release(m.record.tenant)

    def _ended(self, record: IntentRecord) -> None:
        for waiter in self.waiters.settled(record):
            self._answered(waiter, record)

    def _answered(self, waiter: Waiter, record: IntentRecord) -> None:
        reply = {"ok": True, "code": waiter.code, "intent": view(record)}
        if waiter.detail:
            reply["detail"] = waiter.detail
        self._reply(waiter, reply)

    def _reply(self, waiter: Waiter, reply: dict[str, Any]) -> None:
        try:
            self.connection.tell_nowait(Publish(waiter.reply, orjson.dumps(reply)))
        except ExoarmurError:  # the connection is full or down: the request's own timeout answers it
            pass

    async def _answer_waits(self) -> None:
        """Answer the waiters whose wait is over, with their intent as it is
        now; then, every WAIT_POLL, read the records of at most POLL_BATCH of
        those that waited that long, oldest first, and answer the ended ones:
        intents with no actor here (another process drives them; an actor
        that could not tell is gone by then); and, once they waited
        WAIT_POLL_TOLD, those whose actor is here (its end may have been told
        before the request waited). A poll stops at its first failed read:
        with KV down it would only delay the next waiters' ends."""
        polled = self.context.now()
        while True:
            self.replan = anyio.Event()
            now = self.context.now()
            end = self.waiters.next_end()
            if end is None:
                await self.replan.wait()
                continue
            with anyio.move_on_after(min(end, polled + WAIT_POLL) - now):
                await self.replan.wait()
                continue
            await self._answer_over(self.waiters.over(self.context.now()))
            now = self.context.now()
            if now >= polled + WAIT_POLL:
                polled = now
                told = set(self.waiters.older_than(now - WAIT_POLL_TOLD))
                due = [key for key in self.waiters.older_than(now - WAIT_POLL) if key in told or not self._driven_here(key)]
                await self._poll(due[:POLL_BATCH])

    def _driven_here(self, key: str) -> bool:
        """Whether the intent's actor runs in this process: it tells its end (`Settled`)."""
        tenant, intent_id = key.split(".", 1)
        return self.context.system.find(intent_actor_path(self.tenants_path, tenant, intent_id)) is not None

    async def _answer_over(self, over: list[Waiter]) -> None:
        found = await self._read([waiter.key for waiter in over])
        for waiter in over:
            record = found.get(waiter.key)
            if isinstance(record, IntentRecord):
                self._answered(waiter, record)
            else:
                error = record or error_for(ReasonCode.INTENT_NOT_FOUND, f"no intent {waiter.key!r}")
                self._reply(waiter, {"ok": False, "code": error.code.value, "detail": error.detail})

    async def _poll(self, keys: list[str]) -> None:
        for record in (await self._read(keys, stop_on_error=True)).values():
            if isinstance(record, IntentRecord) and record.state in TERMINAL:
                self._ended(record)

    async def _read(
        self, keys: list[str], *, stop_on_error: bool = False
    ) -> dict[str, IntentRecord | ExoarmurError | None]:
        """These records (None: absent; the coded error of a failed read),
        read LIST_CONCURRENCY at a time (`stop_on_error`: no page after one
        with a failed read)."""
        found: dict[str, IntentRecord | ExoarmurError | None] = {}

        async def load(key: str) -> None:
            tenant, intent_id = key.split(".", 1)
            try:
                found[key] = await self.store.load(tenant, intent_id)
            except ExoarmurError as exc:
                found[key] = exc

        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), LIST_CONCURRENCY):
            async with anyio.create_task_group() as group:
                for key in unique[start : start + LIST_CONCURRENCY]:
                    group.start_soon(load, key)
            if stop_on_error and any(isinstance(value, ExoarmurError) for value in found.values()):
                break
        return found


def _duplicate(record: IntentRecord, differs: str = "") -> dict[str, Any]:
    detail = f"intent {record.id} exists" + (f" with another {differs}: this submission's was not used" if differs else "")
    return {"ok": True, "code": ReasonCode.DUPLICATE_SUPPRESSED.value, "detail": detail, "intent": view(record)}


def _differs(stored: IntentRecord, submitted: IntentRecord) -> str:
    """What of a submission differs from the intent stored under its id
    ("" if nothing does: a retry)."""
    fields = [name for name in ("type", "params") if getattr(stored, name) != getattr(submitted, name)]
    return " and ".join(fields)
