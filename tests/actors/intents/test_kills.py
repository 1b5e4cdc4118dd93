"""A kill names the switch revision that caused it, and replay holds every
such kill to an audited set of that switch (actors/intents/kills.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exoarmur.actors.intents.kills import CONTROLS_CHAIN, KILL_EVENT, KillCheck, failing_closed, kill_detail, named_switch
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.reducer import reduce
from exoarmur.actors.intents.replay_chains import chained
from exoarmur.actors.intents.replay_problems import ProblemKind
from exoarmur.actors.intents.states import IntentState
from exoarmur.actors.intents.trail import chain_of, transition_event
from exoarmur.runtime import ReasonCode

S = IntentState
tenants = st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


@given(tenants, st.text(max_size=40), st.text(max_size=200), st.integers(1, 2**63 - 1))
def test_a_kills_detail_names_its_switch_and_revision_whatever_who_and_why_say(tenant, who, reason, revision):
    assert named_switch(kill_detail(tenant, who=who, reason=reason, revision=revision)) == (tenant, revision)


def test_a_detail_that_names_no_revision_names_no_switch():
    for detail in ("the kill switches could not be read (TIMEOUT_KV_GET: x): failing closed",
                   "the global kill switch is active (set by a: b)", "", "tenant a b's kill switch is active (x; revision 3)"):  # fmt: skip
        assert named_switch(detail) is None


def switch_event(action: str, tenant: str | None, revision: int) -> dict:
    switch = {"tenant": tenant, "active": action == "set", "who": "ann", "reason": "drill", "at": 1.0, "revision": revision}
    return {"kind": KILL_EVENT, "action": action, "switch": switch}


def killed(intent_id: str, detail: str, *, tenant: str = "acme") -> list[IntentRecord]:
    record = IntentRecord.received(
        intent_id=intent_id, tenant=tenant, type="noop", params={}, owner="p", now=1.0, deadline=99.0
    ).at(1)
    return [record, record.moved(S.KILLED, now=2.0, code=ReasonCode.KILL_SWITCH_ACTIVE.value, detail=detail).at(2)]


def test_replay_finds_a_kill_whose_switch_revision_no_audited_set_records():
    sets = chained(CONTROLS_CHAIN, [switch_event("set", "acme", 5), switch_event("clear", "acme", 6),
                                    switch_event("set", None, 7), switch_event("set", "globex", 8)])  # fmt: skip
    trails = {
        "k-tenant": killed("k-tenant", kill_detail("acme", who="ann", reason="drill", revision=5)),
        "k-global": killed("k-global", kill_detail(None, who="", reason="", revision=7)),
        "k-closed": killed("k-closed", failing_closed("TIMEOUT_KV_GET", "no answer")),
        "k-clear": killed("k-clear", kill_detail("acme", who="ann", reason="drill", revision=6)),  # a clear's revision
        "k-other": killed("k-other", kill_detail("globex", who="ann", reason="drill", revision=8)),  # another tenant's
        "k-vague": killed("k-vague", "stopped by someone"),  # names no switch, does not fail closed
    }
    intents = chained(chain_of("acme"), [transition_event(r) for trail in trails.values() for r in trail])
    # The kills come first in the stream: a set is audited after its write, so order is not held against it.
    reduction = reduce([*intents, *sets])
    found = [(p.kind, p.intent, p.details["switch_revision"]) for p in reduction.problems]
    assert found == [(ProblemKind.KILL_UNRECORDED, "k-clear", 6), (ProblemKind.KILL_UNRECORDED, "k-other", 8),
                     (ProblemKind.KILL_UNRECORDED, "k-vague", None)]  # fmt: skip


def test_only_the_controls_chain_records_a_set():
    elsewhere = chained("somewhere-else", [switch_event("set", "acme", 5)])
    kill = chained(chain_of("acme"), [transition_event(r) for r in killed("k", kill_detail("acme", who="", reason="", revision=5))])
    assert [p.kind for p in reduce([*elsewhere, *kill]).problems] == [ProblemKind.KILL_UNRECORDED]


def test_an_unreadable_set_event_records_nothing():
    check = KillCheck()
    for event in ({"kind": KILL_EVENT, "action": "set"}, {"kind": KILL_EVENT, "action": "set", "switch": {"revision": "5"}},
                  {"kind": KILL_EVENT, "action": "set", "switch": {"tenant": 3, "revision": 5}}):  # fmt: skip
        check.add_event(event)
    assert check.sets == set()
