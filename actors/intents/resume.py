"""Finding the intents this process must drive, after any restart.

The `Resumer` reads the index of unsettled intents (actors/intents/store.py)
when it starts and every `interval` seconds after, and has an intent actor
running (`Activate`, told to the tenants' router) for each entry:

    its own entries      those with no actor running as the index is read:
                         after a crash of the process, or of a tenant's
                         subtree, the actors are started again. One whose
                         actor runs is left alone (by the time the walk
                         reached it, it may have settled, and a fresh actor
                         would only read that back); if that actor stops
                         without settling it, the next scan finds the entry.
    another owner's      only once that owner's lease has lapsed (`Lapsed`,
                         actors/intents/leases.py): the actor takes it over

A scan that fails (the store unreachable) is reported and tried again at the
next interval: nothing is lost, the index is in KV.
"""

from __future__ import annotations

import anyio

from exoarmur.actors.intents.intent import IntentSetting
from exoarmur.actors.intents.leases import Lapsed
from exoarmur.actors.intents.messages import Activate, intent_actor_path
from exoarmur.runtime import Actor, ActorRef, ExoarmurError

__all__ = ["Resumer"]


class Resumer(Actor):
    def __init__(self, *, setting: IntentSetting, router: str, tenants: str, interval: float = 5.0) -> None:
        self.setting = setting
        self.router_path = router
        self.tenants_path = tenants  # the tenants' supervisor: an intent's live actor is under it
        self.interval = interval

    async def started(self) -> None:
        lookup = self.context.system.lookup
        self.store = self.setting.store(self.context.system)
        self.lease: ActorRef = lookup(self.setting.lease)
        self.router: ActorRef = lookup(self.router_path)
        self.context.start_task(self._scanning)

    async def _scanning(self) -> None:
        while True:
            try:
                await self.scan()
            except ExoarmurError as exc:
                self.context.report_failure(exc.code, f"scan of unsettled intents: {exc.detail}")
            await anyio.sleep(self.interval)

    async def _lapsed(self, owner: str) -> bool:
        try:
            return bool(await self.lease.ask(Lapsed(owner)))
        except ExoarmurError as exc:
            self.context.report_failure(exc.code, f"lease of {owner} not read: {exc.detail}")
            return False

    async def scan(self) -> None:
        me = self.setting.owner
        find = self.context.system.find
        entries = [
            (owner, tenant, intent_id)
            for owner, tenant, intent_id in await self.store.unsettled()
            if owner != me or find(intent_actor_path(self.tenants_path, tenant, intent_id)) is None
        ]
        lapsed = {owner for owner in sorted({o for o, _, _ in entries if o != me}) if await self._lapsed(owner)}
        for owner, tenant, intent_id in entries:
            if owner == me or owner in lapsed:
                try:
                    await self.router.ask(Activate(tenant, intent_id, take_over=owner != me, entry_owner=owner))
                except ExoarmurError as exc:  # this tenant's trouble: the others go on
                    self.context.report_failure(exc.code, f"{tenant}.{intent_id} not resumed: {exc.detail}")
