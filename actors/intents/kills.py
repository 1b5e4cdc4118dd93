"""A kill and the switch that caused it, as the audit trail must show both.

An intent the gates stop with an active kill switch ends KILLED,
KILL_SWITCH_ACTIVE, with a detail that names the switch and the revision of
it the gates read (`kill_detail`). Every set and clear of a switch is
audited on the `controls` chain, with that revision (actors/controls/
killswitch.py). Replay holds the two together (`KillCheck`): a kill that
names a revision no audited set has is `kill_unrecorded`, a decision whose
cause is not in the record; so is a kill by another tenant's switch.

A kill failing closed (the switches could not be read: `failing_closed`)
names no revision: nothing in the chain explains it, and nothing must. A
kill that neither names a switch nor fails closed is `kill_unrecorded` too.
Order in the stream is not checked: the set is audited after its write, so
an intent may be killed, and its kill audited, before the set's record is
appended.
"""

from __future__ import annotations

import re
from typing import Any

from exoarmur.actors.intents.record import TENANT
from exoarmur.actors.intents.replay_problems import Problem, ProblemKind

__all__ = ["CONTROLS_CHAIN", "KILL_EVENT", "KillCheck", "failing_closed", "kill_detail", "named_switch"]

CONTROLS_CHAIN = "controls"  # the audit chain of the kill switches
KILL_EVENT = "killswitch"  # its events: {"kind", "action": "set"|"clear", "switch": {...}}

_NAMED = re.compile(rf"^(?:the global kill switch|tenant (?P<tenant>{TENANT.pattern})'s kill switch) is active "
                    r"\(.*; revision (?P<revision>[1-9][0-9]{0,18})\)$", re.DOTALL)  # fmt: skip
_CLOSED = re.compile(r"^the kill switches could not be read \(.*\): failing closed$", re.DOTALL)

Scope = str | None  # a tenant, or None: the global switch


def kill_detail(tenant: Scope, *, who: str, reason: str, revision: int) -> str:
    """Why an intent was killed: the switch, who set it and why, its revision."""
    which = "the global kill switch" if tenant is None else f"tenant {tenant}'s kill switch"
    by = f" by {who}" if who else ""
    return f"{which} is active (set{by}: {reason or 'no reason given'}; revision {revision})"


def failing_closed(code: str, why: str) -> str:
    """Why an intent was killed when its switches could not be read."""
    return f"the kill switches could not be read ({code}: {why}): failing closed"


def named_switch(detail: str) -> tuple[Scope, int] | None:
    """The switch and revision a kill's detail names; None if it names none."""
    found = _NAMED.match(detail)
    return None if found is None else (found["tenant"], int(found["revision"]))


class KillCheck:
    """Fed the controls chain's events and the intents' kills, in any order."""

    def __init__(self) -> None:
        self.sets: set[tuple[Scope, int]] = set()
        self.kills: list[tuple[Scope, int | None, dict[str, Any]]] = []  # revision None: names no switch

    def add_event(self, event: dict[str, Any]) -> None:
        """A killswitch event: its set remembered (one that is not readable
        records nothing, and a kill naming it is then unrecorded)."""
        switch = event.get("switch")
        if event.get("action") != "set" or not isinstance(switch, dict):
            return
        tenant, revision = switch.get("tenant"), switch.get("revision")
        if (tenant is None or isinstance(tenant, str)) and type(revision) is int:
            self.sets.add((tenant, revision))

    def add_kill(self, detail: str, about: dict[str, Any]) -> None:
        """A KILLED record with KILL_SWITCH_ACTIVE; `about` locates it."""
        named = named_switch(detail)
        if named is not None:
            self.kills.append((*named, about))
        elif not _CLOSED.match(detail):
            self.kills.append((None, None, about))

    def finish(self) -> list[Problem]:
        problems = []
        for tenant, revision, about in self.kills:
            if (tenant, revision) in self.sets and tenant in (None, about["tenant"]):
                continue  # an audited set of a switch that covers the intent
            name = f"intent {about['tenant']}/{about['intent']} revision {about['revision']}"
            which = "the global kill switch" if tenant is None else f"tenant {tenant}'s kill switch"
            if revision is None:
                message = f"{name} was KILLED with a detail that names no kill switch and does not fail closed"
            else:
                message = f"{name} was KILLED by {which} at revision {revision}, a set the {CONTROLS_CHAIN} chain does not record"
            problems.append(Problem(kind=ProblemKind.KILL_UNRECORDED, message=message, **about,
                                    details={"switch_tenant": tenant, "switch_revision": revision}))  # fmt: skip
        return problems
