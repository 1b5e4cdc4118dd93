"""Submission over NATS: request/reply with the tenant in the subject.

    exoarmur.intents.<tenant>.submit  {"id", "type", "params"?, "timeout"?, "tenant"?}
    exoarmur.intents.<tenant>.get     {"id"}
    exoarmur.intents.<tenant>.list    {"state"?, "limit"?}
    exoarmur.intents.<tenant>.revert  {"id"}

Every process serves them in one queue group: a request is answered by one.
Replies are JSON: `{"ok": true, "code": "", "intent": {...}}` (`"intents":
[...]` for list), or `{"ok": false, "code": CODE, "detail": "..."}`. An
intent is shown as id, tenant, type, params, state, code, detail, attempts,
owner (the process driving it), revision and its times (`view`).

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

from exoarmur.actors.intents.intent import IntentSetting
from exoarmur.actors.intents.messages import Activate
from exoarmur.actors.intents.record import IntentRecord, check_id
from exoarmur.actors.intents.requests import PREFIX, new_record, only, parse_request
from exoarmur.actors.intents.states import TERMINAL, IntentState
from exoarmur.actors.nats import Delivery, Publish, Subscribe
from exoarmur.runtime import (
    Actor,
    ActorRef,
    ExoarmurError,
    InvalidInput,
    ReasonCode,
    error_for,
    handles,
)

__all__ = ["PREFIX", "IntentService", "view"]

QUEUE = "exoarmur-intents"
LIST_LIMIT = 1000
LIST_CONCURRENCY = 64
LIST_SCAN = 10_000  # records read by one list at most
LIST_BYTES = 512 * 1024  # a reply stays well under NATS's 1 MiB payload


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
    mailbox_capacity = 10_000
    concurrency = 256

    def __init__(
        self, *, connection: str, setting: IntentSetting, router: str, default_timeout: float = 30.0
    ) -> None:
        self.connection_path = connection
        self.setting = setting
        self.router_path = router
        self.default_timeout = default_timeout

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.connection: ActorRef = lookup(self.connection_path)
        self.router: ActorRef = lookup(self.router_path)
        self.store = self.setting.store(self.context.system)
        await self.connection.ask(Subscribe(f"{PREFIX}.*.*", self.context.path, queue=QUEUE))

    @handles(Delivery, concurrent=True)
    async def on_request(self, m: Delivery) -> None:
        try:
            reply = await self._answer(m.subject, m.data)
        except ExoarmurError as exc:
            reply = {"ok": False, "code": exc.code.value, "detail": exc.detail}
        except Exception as exc:  # a bug met by one request: coded and audited, the rest still served
            detail = f"{type(exc).__name__} answering {m.subject[:200]}"
            self.context.report_failure(ReasonCode.FATAL, f"{detail}: {exc!r}")
            reply = {"ok": False, "code": ReasonCode.FATAL.value, "detail": detail}
        if m.reply:
            await self.connection.ask(Publish(m.reply, orjson.dumps(reply)))

    async def _answer(self, subject: str, data: bytes) -> dict[str, Any]:
        tenant, operation, body = parse_request(subject, data)
        if operation == "submit":
            return await self.submit(tenant, body)
        if operation == "get":
            only(body, ("id", "tenant"))
            return {"ok": True, "code": "", "intent": view(await self._existing(tenant, body.get("id")))}
        if operation == "list":
            return await self.list(tenant, body)
        return await self.revert(tenant, body)

    async def submit(self, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
        record = new_record(
            tenant,
            body,
            types=self.setting.types,
            owner=self.setting.owner,
            now=time.time(),
            default_timeout=self.default_timeout,
        )
        existing = await self.store.load(tenant, record.id)
        if existing is not None:
            return await self._again(existing)
        intent_id = record.id
        await self.store.mark_open(self.setting.owner, tenant, intent_id)
        stored, created = await self.store.create(record)
        if not created:
            if stored.owner != self.setting.owner:  # another process's: our entry is stale
                await self.store.mark_settled(self.setting.owner, tenant, intent_id)
            return await self._again(stored)
        try:
            await self.router.ask(Activate(tenant, intent_id))
        except ExoarmurError as exc:  # durable and indexed: the resumer starts it later
            self.context.report_failure(exc.code, f"{record.kv_key} accepted, its actor not started: {exc.detail}")
        return {"ok": True, "code": "", "intent": view(stored)}

    async def _again(self, record: IntentRecord) -> dict[str, Any]:
        """A submission of an id that exists: that intent, DUPLICATE_SUPPRESSED.
        One of ours still unsettled has its actor running (it may have
        stopped in a race; the resumer would start it too, later)."""
        if record.owner == self.setting.owner and record.state not in TERMINAL:
            await self.router.ask(Activate(record.tenant, record.id))
        return _duplicate(record)

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
            page = await self._loaded(tenant, ids[start : start + LIST_CONCURRENCY])
            for record in page:
                if state is not None and record.state != state:
                    continue
                item = view(record)
                size += len(orjson.dumps(item))
                if len(shown) == limit or size > LIST_BYTES:
                    return {"ok": True, "code": "", "intents": shown, "truncated": True}
                shown.append(item)
        return {"ok": True, "code": "", "intents": shown, "truncated": len(ids) > LIST_SCAN}

    async def _loaded(self, tenant: str, ids: list[str]) -> list[IntentRecord]:
        """These intents' records, read at once, in the order of `ids`."""
        found: dict[str, IntentRecord] = {}

        async def load(intent_id: str) -> None:
            record = await self.store.load(tenant, intent_id)
            if record is not None:
                found[intent_id] = record

        async with anyio.create_task_group() as group:
            for intent_id in ids:
                group.start_soon(load, intent_id)
        return [found[i] for i in ids if i in found]

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
        try:
            written = await self.store.write(record, record.moved(IntentState.REVERTING, now=time.time(), owner=me))
        except ExoarmurError as exc:  # another revert won the compare-and-set: that one stands
            now = await self.store.load(tenant, record.id)
            if exc.code not in (ReasonCode.KV_CONFLICT, ReasonCode.LEASE_LOST) or now is None:
                raise
            if now.state not in (IntentState.REVERTING, IntentState.REVERTED):
                raise
            return _duplicate(now)
        await self.store.mark_open(me, tenant, record.id)
        await self.router.ask(Activate(tenant, record.id))
        return {"ok": True, "code": "", "intent": view(written)}

    async def _existing(self, tenant: str, intent_id: object) -> IntentRecord:
        record = await self.store.load(tenant, check_id(intent_id))
        if record is None:
            raise error_for(ReasonCode.INTENT_NOT_FOUND, f"no intent {intent_id!r} in tenant {tenant!r}")
        return record


def _duplicate(record: IntentRecord) -> dict[str, Any]:
    return {"ok": True, "code": ReasonCode.DUPLICATE_SUPPRESSED.value, "intent": view(record)}
