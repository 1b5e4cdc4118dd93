"""The process's watch on the decisions intents wait for: an approval
stored, a kill switch changed. Each change is told to the router as a
`Recheck`, which tells the live intent actors it concerns to look at their
gates again now, rather than at their next poll (APPROVAL_POLL); a switch
changed is told to the gates first (`SwitchesChanged`), so those checks
read it rather than a clear reading the gates keep for SWITCHES_SHARED.

    exoarmur_approvals  <tenant>.<id>        Recheck(tenant, id)
    exoarmur_controls   kill.tenant.<T>      Recheck(T): every intent of T
                        kill.global          Recheck(): every intent

The watch only hastens: no decision is taken from what it delivers (the
gates read the leader every time), so a watch lost and not yet made again
delays a wake-up by at most the poll, and never lets anything through.
"""

from __future__ import annotations

from exoarmur.actors.intents.gates import SwitchesChanged
from exoarmur.actors.intents.messages import Recheck
from exoarmur.actors.nats import KvChange, KvWatch
from exoarmur.runtime import Actor, ExoarmurError, handles

__all__ = ["ControlWatch"]

KILL_PREFIX = "kill."
TENANT_PREFIX = "kill.tenant."


class ControlWatch(Actor):
    mailbox_capacity = 10_000

    def __init__(self, *, connection: str, router: str, gates: str, controls: str, approvals: str) -> None:
        self.connection_path = connection
        self.router_path = router
        self.gates_path = gates
        self.buckets = {"controls": controls, "approvals": approvals}  # bucket names
        self.watches: dict[int, str] = {}  # watch id -> "controls" | "approvals"

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
        elif which == "controls" and m.key.startswith(TENANT_PREFIX):
            recheck = Recheck(m.key[len(TENANT_PREFIX) :])
        elif which == "controls":
            recheck = Recheck()
        else:
            return  # a watch of a former instance
        if which == "controls":
            self._tell(self.gates_path, SwitchesChanged(recheck.tenant or None))
        self._tell(self.router_path, recheck)

    def _tell(self, path: str, message: object) -> None:
        actor = self.context.system.find(path)  # None while it starts
        if actor is None:
            return
        try:
            actor.tell_nowait(message)
        except ExoarmurError:  # busy or restarting: the intents' own poll finds the change
            pass
