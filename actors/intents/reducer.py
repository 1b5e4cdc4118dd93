"""The replay reducer: the audit stream in, every intent's state out. Pure:
no I/O, no clock; the same records give the same result.

Input: the stream's messages in stream order (`Reducer.add_message`), or
audit records (`add`). Every chain is checked as it comes
(actors/intents/replay_chains.py). Every intent event (`{"kind": "intent",
"revision": r, "record": {...}}`, actors/intents/trail.py) whose record's hash
holds is folded into its intent's trail, by (tenant, id):

- the first record of an intent is RECEIVED (`allowed(None, state)`);
- each next one has a higher revision, and its state follows from the last
  one's by the transition table (actors/intents/states.py), or stays the same
  with only `owner` and `updated` changed (a takeover); the fields fixed at
  submission (FIXED) never change;
- a revision seen before with the same content is a duplicate (an append
  repeated where neither the stream nor the chain could tell: past the
  stream's duplicate window, or in a batch record): counted, harmless, wherever
  it appears; the same revision with other content is revision_conflict; a
  lower revision never seen is revision_regressed; neither moves the trail;
- the record's tenant is the one its chain is for (`trail.chain_of`).

A batch record (`{"kind": "batch", "events": [...]}`, appends queued
together: actors/nats/audit_stream.py) is its events, folded in their order.
Trails are folded in stream order: a record stored out of order is named
by its chain, and its intent's trail shows the step out of place too.
Events of other kinds (the kernel's own audit events) are counted and left
alone, but for the kill switches' sets: every kill must name one that is
audited (actors/intents/kills.py). Output (`reduction`): per intent its last record and revision, the
counts, and every problem found (actors/intents/replay_problems.py).

`mark` notes, for every intent, the last revision read so far: replay reads
KV after the mark and the stream's tail after KV, and the comparison with KV
(actors/intents/replay_compare.py) tells an audit that moved on meanwhile
from a KV that fell behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import orjson

from exoarmur.actors.intents.kills import CONTROLS_CHAIN, KILL_EVENT, KillCheck
from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.replay_chains import ChainCheck
from exoarmur.actors.intents.replay_problems import Problem, ProblemKind
from exoarmur.actors.intents.states import TRANSITIONS, IntentState, allowed, code_allowed
from exoarmur.actors.intents.trail import KIND, chain_of
from exoarmur.actors.nats import Record, StreamMessage, events_of
from exoarmur.actors.nats.audit_stream import BATCH
from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = [
    "FIXED",
    "IntentTrail",
    "Reducer",
    "Reduction",
    "ReplayCounts",
    "decode_record",
    "digest",
    "intent_of",
    "reduce",
]

IntentKey = tuple[str, str]  # (tenant, intent id)

# Set at submission, never changed by a transition or a takeover.
FIXED = ("type", "params", "key", "created", "deadline")
# What a takeover changes: the owner, and the time of the write.
TAKEOVER = frozenset({"owner", "updated"})
_RECORD_FIELDS = frozenset({"chain", "position", "prev", "event", "hash"})
_LOCATION = ("chain", "position", "seq", "tenant", "intent", "revision")  # a Problem's own fields
_EVENT_FIELDS = frozenset({"kind", "revision", "record"})


def digest(record: Mapping[str, Any]) -> bytes:
    """A record's content, for telling a repeat from a different record."""
    return hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


@attrs.define(slots=True, eq=False)
class IntentTrail:
    """One intent as its audit records tell it."""

    tenant: str
    id: str
    revision: int  # the last (highest) revision audited
    record: dict[str, Any]  # the record at that revision, as stored
    chain: str  # where that record is
    position: int
    digests: dict[int, bytes]  # every revision audited -> its content
    marked_revision: int = 0  # the last revision as of `Reducer.mark` (0: none then)
    marked_record: dict[str, Any] | None = None

    @property
    def state(self) -> IntentState:
        return IntentState(self.record["state"])


@attrs.frozen
class ReplayCounts:
    records: int  # stream messages read
    chains: int
    intents: int
    intent_records: int  # intent events whose hash holds
    other_records: int  # events of other kinds (the kernel's own)
    duplicates: int  # intent records repeated with the same content


@attrs.frozen
class Reduction:
    intents: Mapping[IntentKey, IntentTrail]
    counts: ReplayCounts
    problems: tuple[Problem, ...]
    chains: Mapping[str, int]  # chain -> its length (one past its highest position)
    last_seq: int  # the last stream sequence read (0: none)
    marked: bool  # `Reducer.mark` was called (each trail's marked_* are set)


class Reducer:
    """Feed the stream in order; `reduction` at any point. `subject_prefix`:
    the stream's subjects are `<prefix>.<chain>` (None: not checked)."""

    def __init__(self, *, subject_prefix: str | None = "exoarmur.audit") -> None:
        self.subject_prefix = subject_prefix
        self.chains: dict[str, ChainCheck] = {}
        self.intents: dict[IntentKey, IntentTrail] = {}
        self.problems: list[Problem] = []
        self.records = self.intent_records = self.other_records = self.duplicates = 0
        self.last_seq = 0
        self.marked = False
        self.kills = KillCheck()

    # ---- input ------------------------------------------------------------------------

    def add_message(self, msg: StreamMessage) -> None:
        """One stream message: decoded, placed, added."""
        self.records += 1
        self.last_seq = max(self.last_seq, msg.seq)
        record = decode_record(msg.data)
        if isinstance(record, str):
            self._problem(ProblemKind.RECORD_UNREADABLE, f"stream sequence {msg.seq} on {msg.subject!r}: {record}",
                          seq=msg.seq, subject=msg.subject)  # fmt: skip
            return
        if self.subject_prefix is not None and msg.subject and msg.subject != f"{self.subject_prefix}.{record.chain}":
            self._problem(ProblemKind.RECORD_MISPLACED,
                          f"stream sequence {msg.seq}: a record of chain {record.chain!r} on subject {msg.subject!r}",
                          chain=record.chain, position=record.position, seq=msg.seq, subject=msg.subject)  # fmt: skip
        self._add(record, msg.seq)

    def add(self, record: Record, *, seq: int | None = None) -> None:
        """One audit record (`seq`: its stream sequence, if known)."""
        self.records += 1
        if seq is not None:
            self.last_seq = max(self.last_seq, seq)
        self._add(record, seq)

    def mark(self) -> None:
        """Note every intent's last revision as of now (see the module's end)."""
        self.marked = True
        for trail in self.intents.values():
            trail.marked_revision, trail.marked_record = trail.revision, trail.record

    def _add(self, record: Record, seq: int | None) -> None:
        check = self.chains.get(record.chain)
        if check is None:
            check = self.chains[record.chain] = ChainCheck(record.chain)
        found = check.add(record, seq)
        self.problems += found
        if any(problem.kind is ProblemKind.RECORD_ALTERED for problem in found):
            return  # its content is not what was appended: nothing to fold
        if not isinstance(record.event, dict):
            self.other_records += 1
            return
        events = events_of(record.event)
        if events[0] is record.event and record.event.get("kind") == BATCH:
            self._problem(ProblemKind.EVENT_INVALID, f"chain {record.chain!r} position {record.position}: "
                          "a batch that is not a non-empty list of events", chain=record.chain,
                          position=record.position, seq=seq)  # fmt: skip
            return
        for index, event in enumerate(events):
            where = {"chain": record.chain, "position": record.position, "seq": seq}
            if len(events) > 1:
                where["event"] = index
            self._event(record.chain, event, where)

    def _event(self, chain: str, event: dict[str, Any], where: dict[str, Any]) -> None:
        if event.get("kind") != KIND:
            self.other_records += 1
            if chain == CONTROLS_CHAIN and event.get("kind") == KILL_EVENT:
                self.kills.add_event(event)
            return
        self.intent_records += 1
        self._fold(chain, event, where)

    # ---- one intent event --------------------------------------------------------------

    def _fold(self, chain: str, event: dict[str, Any], where: dict[str, Any]) -> None:
        place = f"chain {chain!r} position {where['position']}" + (f" event {where['event']}" if "event" in where else "")
        read = intent_of(event)
        if isinstance(read, str):
            self._problem(ProblemKind.EVENT_INVALID, f"{place}: an intent event that is not one: {read}", **where)
            return
        revision, intent = read
        content: dict[str, Any] = event["record"]
        name = f"intent {intent.tenant}/{intent.id} revision {revision}"
        about = {**where, "tenant": intent.tenant, "intent": intent.id, "revision": revision}
        if chain != chain_of(intent.tenant):
            self._problem(ProblemKind.TENANT_MISMATCH, f"{name} is on chain {chain!r}, "
                          f"not its tenant's {chain_of(intent.tenant)!r}", **about)  # fmt: skip
        if not code_allowed(intent.state, intent.code):
            self._problem(ProblemKind.CODE_INVALID, f"{name} is {intent.state} with code {intent.code!r}, "
                          "which that state never carries", state=intent.state.value, code=intent.code, **about)  # fmt: skip
        if intent.state is IntentState.KILLED and intent.code == ReasonCode.KILL_SWITCH_ACTIVE:
            self.kills.add_kill(intent.detail, about)
        key = (intent.tenant, intent.id)
        trail = self.intents.get(key)
        fingerprint = digest(content)
        if trail is None:
            if not allowed(None, intent.state):
                self._problem(ProblemKind.FIRST_NOT_RECEIVED,
                              f"{name} is the intent's first record, in {intent.state}, not RECEIVED",
                              state=intent.state.value, **about)  # fmt: skip
            self.intents[key] = IntentTrail(
                intent.tenant, intent.id, revision, content, chain, where["position"], {revision: fingerprint}
            )
            return
        known = trail.digests.get(revision)
        if known is not None:
            if known == fingerprint:
                self.duplicates += 1
            else:
                self._problem(ProblemKind.REVISION_CONFLICT,
                              f"{name} was audited before with other content", **about)  # fmt: skip
            return
        if revision < trail.revision:
            trail.digests[revision] = fingerprint
            self._problem(ProblemKind.REVISION_REGRESSED, f"{name} comes after revision {trail.revision}",
                          last_revision=trail.revision, **about)  # fmt: skip
            return
        self._check_step(trail, content, name, about)
        trail.digests[revision] = fingerprint
        trail.revision, trail.record, trail.chain, trail.position = revision, content, chain, where["position"]

    def _check_step(self, trail: IntentTrail, after: dict[str, Any], name: str, about: dict[str, Any]) -> None:
        before = trail.record
        old, new = IntentState(before["state"]), IntentState(after["state"])
        if new is old and new not in TRANSITIONS[old]:
            changed = sorted(f for f in after if f not in TAKEOVER and after[f] != before.get(f))
            if changed:
                self._problem(ProblemKind.TAKEOVER_INVALID,
                              f"{name} stays {new} (a takeover) but changes {', '.join(changed)}",
                              fields=_both(before, after, changed), **about)  # fmt: skip
        elif not allowed(old, new):
            self._problem(ProblemKind.TRANSITION_INVALID,
                          f"{name} moves {old} -> {new} (revision {trail.revision} before it): not in the table",
                          before=old.value, after=new.value, last_revision=trail.revision, **about)  # fmt: skip
        fixed = [f for f in FIXED if after.get(f) != before.get(f)]
        if fixed:
            self._problem(ProblemKind.FIELD_CHANGED, f"{name} changes {', '.join(fixed)}, set at submission",
                          fields=_both(before, after, fixed), **about)  # fmt: skip

    # ---- output -------------------------------------------------------------------------

    def _problem(self, kind: ProblemKind, message: str, **fields: Any) -> None:
        located = {k: fields.pop(k) for k in _LOCATION if k in fields}
        self.problems.append(Problem(kind=kind, message=message, **located, details=fields))

    def reduction(self) -> Reduction:
        problems = list(self.problems)
        for check in self.chains.values():
            problems += check.finish()
        problems += self.kills.finish()
        counts = ReplayCounts(
            records=self.records,
            chains=len(self.chains),
            intents=len(self.intents),
            intent_records=self.intent_records,
            other_records=self.other_records,
            duplicates=self.duplicates,
        )
        return Reduction(
            intents=MappingProxyType(self.intents),
            counts=counts,
            problems=tuple(problems),
            chains=MappingProxyType({name: check.length for name, check in self.chains.items()}),
            last_seq=self.last_seq,
            marked=self.marked,
        )


def reduce(records: Iterable[Record], *, subject_prefix: str | None = None) -> Reduction:
    """The reduction of these records, in this order."""
    reducer = Reducer(subject_prefix=subject_prefix)
    for record in records:
        reducer.add(record)
    return reducer.reduction()


def decode_record(data: bytes) -> Record | str:
    """An audit record as stored (actors/nats/audit_stream.py: exactly its
    five fields, each of its type), or what is wrong with `data`."""
    try:
        fields = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(fields, dict) or set(fields) != _RECORD_FIELDS:
        return "not an audit record (chain, position, prev, event, hash)"
    chain, position, prev, event, hash_ = (fields[k] for k in ("chain", "position", "prev", "event", "hash"))
    if not (isinstance(chain, str) and isinstance(prev, str) and isinstance(hash_, str)):
        return "chain, prev and hash must be strings"
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        return f"position must be an integer >= 0, got {position!r}"
    if not isinstance(event, dict):
        return "event must be an object"
    return Record(chain, position, prev, event, hash_)


def intent_of(event: dict[str, Any]) -> tuple[int, IntentRecord] | str:
    """An intent event's revision and record (checked as strictly as KV's
    are read), or what is wrong with it."""
    if set(event) != _EVENT_FIELDS:
        return "an intent event has exactly the fields kind, revision and record"
    revision = event["revision"]
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        return f"revision must be an integer >= 1, got {revision!r}"
    try:
        return revision, IntentRecord.from_dict(event["record"])
    except InvalidInput as exc:
        return exc.detail


def _both(before: Mapping[str, Any], after: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {f: {"before": before.get(f), "after": after.get(f)} for f in fields}
