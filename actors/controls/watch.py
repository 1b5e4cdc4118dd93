"""The process's watch on the decisions intents wait for: an approval
stored, a kill switch changed. Each change is told to the router as a
`Recheck`, which tells the live intent actors it concerns to look at their
gates again now, rather than at their next poll (APPROVAL_POLL).

    exoarmur_approvals  <tenant>.<id>        Recheck(tenant, id)
    exoarmur_controls   kill.tenant.<T>      Recheck(T): every intent of T
                        kill.global          Recheck(): every intent

The watch only hastens: no decision is taken from what it delivers (the
gates read the leader every time), so a watch lost and not yet made again
delays a wake-up by at most the poll, and never lets anything through.

It also keeps the switches as last delivered, for one question that needs
no fresh read: which code a submission that its tenant's limits refuse
gets (`SwitchesSeen`). The gates' order puts the kill switches first, so a
tenant stopped and flooding is answered KILL_SWITCH_ACTIVE, not
RATE_LIMITED, without a read per refusal.
"""

from __future__ import annotations

from exoarmur.actors.controls.switches import Switch, switch_key
from exoarmur.actors.intents.messages import Recheck, SwitchesSeen
from exoarmur.actors.nats import KvChange, KvEntry, KvWatch
from exoarmur.runtime import Actor, ExoarmurError, handles

__all__ = ["ControlWatch"]

KILL_PREFIX = "kill."
TENANT_PREFIX = "kill.tenant."


class ControlWatch(Actor):
    mailbox_capacity = 10_000

    def __init__(self, *, connection: str, router: str, controls: str, approvals: str) -> None:
        self.connection_path = connection
        self.router_path = router
        self.buckets = {"controls": controls, "approvals": approvals}  # bucket names
        self.watches: dict[int, str] = {}  # watch id -> "controls" | "approvals"
        self.switches: dict[str | None, Switch] = {}  # as last delivered, by tenant (None: global)

    async def started(self) -> None:
        connection = self.context.system.lookup(self.connection_path)
        path = self.context.path
        for name, bucket in self.buckets.items():
            keys = f"{KILL_PREFIX}>" if name == "controls" else ">"
            self.watches[await connection.ask(KvWatch(bucket, path, keys))] = name

    @handles(KvChange)
    def changed(self, m: KvChange) -> None:
        which = self.watches.get(m.watch)
        if which == "approvals":
            tenant, _, intent_id = m.key.partition(".")
            recheck = Recheck(tenant, intent_id)
        elif which == "controls":
            tenant = m.key[len(TENANT_PREFIX) :] if m.key.startswith(TENANT_PREFIX) else None
            if m.key == switch_key(tenant):
                entry = None if m.deleted else KvEntry(m.key, m.value, m.revision)
                self.switches[tenant] = Switch.from_entry(tenant, entry)
            recheck = Recheck(tenant or "")
        else:
            return  # a watch of a former instance
        router = self.context.system.find(self.router_path)  # None while it starts
        if router is None:
            return
        try:
            router.tell_nowait(recheck)
        except ExoarmurError:  # the router is busy or restarting: the intents' own poll finds it
            pass

    @handles(SwitchesSeen)
    def seen(self, m: SwitchesSeen) -> str:
        for tenant in (None, m.tenant):
            switch = self.switches.get(tenant)
            if switch is not None and switch.active:
                return switch.says()
        return ""
