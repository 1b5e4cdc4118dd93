"""Setting, clearing and showing the kill switches over NATS.

    exoarmur.killswitch.set     {"tenant"?, "who"?, "reason"?}
    exoarmur.killswitch.clear   {"tenant"?, "who"?, "reason"?}
    exoarmur.killswitch.status  {"tenant"?}

Without `tenant` a request is about the global switch (status: the global
switch and every tenant's that was ever written). Replies are JSON:
`{"ok": true, "code": "", "switch": {...}}` (`"switches": [...]` and
`"active"` for status), or `{"ok": false, "code", "detail"}`.

A change is written to KV (a leader-acknowledged put), then audited on the
`controls` chain with who and why (message id: the key and its revision, so
a retry is not recorded twice). A set is answered only KILL_CHECK_FRESH
after its write was acknowledged: from its answer on, no apply starts
anywhere (actors/controls/switches.py says why). `who` is what the caller
says it is (the CLI sends user@host); NATS credentials decide who may ask.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import attrs
import orjson

from exoarmur.actors.controls.switches import Switch, invalid, parse_change, read_switches, switch_key
from exoarmur.actors.intents.kills import CONTROLS_CHAIN as CHAIN
from exoarmur.actors.intents.kills import KILL_EVENT as EVENT
from exoarmur.actors.nats import Append, Delivery, Get, Keys, Put, Subscribe
from exoarmur.actors.nats.json_replies import json_body, reply_json
from exoarmur.runtime import Actor, ActorRef, ReasonCode, handles
from exoarmur.runtime.margins import KILL_CHECK_FRESH

__all__ = ["CHAIN", "SUBJECT", "KillSwitches"]

SUBJECT = "exoarmur.killswitch"
OPERATIONS = ("set", "clear", "status")
QUEUE = "exoarmur-killswitch"
MAX_REQUEST = 16 * 1024
OVERLOADED = orjson.dumps(
    {"ok": False, "code": ReasonCode.OVERLOAD_MAILBOX_FULL.value, "detail": "the kill-switch service is overloaded: try again"}
)


class KillSwitches(Actor):
    mailbox_capacity = 256
    concurrency = 32

    def __init__(self, *, connection: str, controls: str, audit: str) -> None:
        self.connection_path = connection
        self.controls_path = controls  # the KvBucket of `exoarmur_controls`
        self.audit_path = audit  # the AuditStream of the `controls` chain

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.connection: ActorRef = lookup(self.connection_path)
        self.controls: ActorRef = lookup(self.controls_path)
        self.audit: ActorRef = lookup(self.audit_path)
        await self.connection.ask(Subscribe(f"{SUBJECT}.*", self.context.path, queue=QUEUE, refusal=OVERLOADED))

    @handles(Delivery, concurrent=True)
    async def on_request(self, m: Delivery) -> None:
        await reply_json(self.context, self.connection, m, self._answer)

    async def _answer(self, subject: str, data: bytes, reply: str) -> dict[str, Any]:
        operation = subject.rpartition(".")[2]
        if subject.count(".") != 2 or operation not in OPERATIONS:
            raise invalid(f"subject must be {SUBJECT}.<{'|'.join(OPERATIONS)}>")
        body = json_body(data, limit=MAX_REQUEST, code=ReasonCode.CONTROL_INVALID)
        if operation == "status":
            return await self.status(body)
        return await self.change(body, active=operation == "set")

    async def change(self, body: dict[str, Any], *, active: bool) -> dict[str, Any]:
        tenant, who, reason = parse_change(body)
        switch = Switch(tenant=tenant, active=active, who=who, reason=reason, at=time.time())
        key = switch_key(tenant)
        switch = attrs.evolve(switch, revision=await self.controls.ask(Put(key, switch.to_bytes())))
        event = {"kind": EVENT, "action": "set" if active else "clear", "switch": switch.view()}
        await self.audit.ask(Append(event, msg_id=f"{EVENT}.{key}.{switch.revision}"))
        if active:
            await anyio.sleep(KILL_CHECK_FRESH)  # every apply cleared before the write is started by now
        return {"ok": True, "code": "", "switch": switch.view()}

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        if set(body) - {"tenant"}:
            raise invalid("status takes only `tenant`")
        tenant, _, _ = parse_change(body)
        if tenant is not None:
            switches = list(await read_switches(self.controls, tenant))
        else:
            switches = [Switch.from_entry(None, await self.controls.ask(Get(switch_key(None))))]
            prefix = switch_key("")
            for key in await self.controls.ask(Keys(f"{prefix}*")):
                name = key[len(prefix) :]
                switches.append(Switch.from_entry(name, await self.controls.ask(Get(key))))
        return {
            "ok": True,
            "code": "",
            "active": any(s.active for s in switches),
            "switches": [s.view() for s in switches],
        }


