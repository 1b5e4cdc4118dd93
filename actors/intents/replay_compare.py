"""The intents rebuilt from the audit, against the records bucket: pure.

Every record in KV must be the audit's record at the same revision, and
every audited intent must be in KV. Replay reads the stream, marks it
(`Reducer.mark`), reads KV, then reads the stream's tail: the audit may move
on while KV is read (an intent still running), but it is appended after its
KV write, so what it held at the mark is never newer than what KV holds.

    KV's revision         audit                                  finding
    r, same content       holds r                                equivalent
    r, other content      holds r                                record_differs (fields, both values)
    r                     last revision below r                  audit_behind
    r                     held a later one at the mark           kv_behind
    r                     lacks r, has later ones (after mark)   revision_not_audited
    (no key)              audited before the mark                missing_from_kv
    r                     no record of the intent                missing_from_audit
    not an intent record                                         kv_unreadable

A record whose audit is one append behind KV because its intent was written
just before KV was read and audited just after the tail was read shows as
audit_behind: on a running system, run replay again to tell that from an
audit left behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from exoarmur.actors.intents.record import IntentRecord
from exoarmur.actors.intents.reducer import IntentTrail, Reduction, digest
from exoarmur.actors.intents.replay_problems import Problem, ProblemKind
from exoarmur.actors.nats import KvEntry
from exoarmur.runtime import InvalidInput

__all__ = ["compare"]

_SHOWN = 60  # characters of a value shown in a message (details hold it whole)


def compare(reduction: Reduction, entries: Iterable[KvEntry]) -> list[Problem]:
    """Every difference between the records bucket's `entries` (each key's
    latest) and the intents of `reduction`, intents in key order. An entry
    equal to an audited record (checked when it was folded) is not checked
    again; any other is read as strictly as the intent actor reads it."""
    found: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for entry in sorted(entries, key=lambda e: e.key):
        tenant, _, intent_id = entry.key.partition(".")
        trail = reduction.intents.get((tenant, intent_id))
        content, fingerprint = _content(entry.value)
        if trail is None or trail.digests.get(entry.revision) != fingerprint:
            unreadable = _unreadable(entry)
            if unreadable is not None:
                found.append(unreadable)
                continue
        assert content is not None and fingerprint is not None  # a valid record is a JSON object
        key = (tenant, intent_id)
        seen.add(key)
        problem = (
            _problem(ProblemKind.MISSING_FROM_AUDIT, key, entry.revision, "is in KV and has no audit record")
            if trail is None
            else _against(trail, content, fingerprint, entry.revision, marked=_marked(reduction, trail))
        )
        if problem is not None:
            found.append(problem)
    for key, trail in sorted(reduction.intents.items()):
        if key not in seen and _marked(reduction, trail)[0]:
            found.append(_problem(ProblemKind.MISSING_FROM_KV, key, trail.revision, "is audited and absent from KV"))
    return found


def _content(value: bytes) -> tuple[dict[str, Any] | None, bytes | None]:
    """A KV value as a JSON object and its digest; (None, None) if it is not one."""
    try:
        content = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    return (content, digest(content)) if isinstance(content, dict) else (None, None)


def _unreadable(entry: KvEntry) -> Problem | None:
    """Why the entry is not the intent record its key names; None if it is."""
    tenant, _, intent_id = entry.key.partition(".")
    try:
        record = IntentRecord.from_bytes(entry.value)
    except InvalidInput as exc:
        what = exc.detail
    else:
        if (record.tenant, record.id) == (tenant, intent_id):
            return None
        what = f"it holds the record of {record.tenant}/{record.id}"
    return Problem(
        kind=ProblemKind.KV_UNREADABLE,
        message=f"KV key {entry.key!r} revision {entry.revision}: not an intent record: {what}",
        revision=entry.revision,
        details={"key": entry.key},
    )


def _marked(reduction: Reduction, trail: IntentTrail) -> tuple[int, dict[str, Any] | None]:
    """The intent's last revision and record as of the mark (a reduction
    never marked: as of its end)."""
    if reduction.marked:
        return trail.marked_revision, trail.marked_record
    return trail.revision, trail.record


def _against(
    trail: IntentTrail,
    content: dict[str, Any],
    fingerprint: bytes,
    revision: int,
    *,
    marked: tuple[int, dict[str, Any] | None],
) -> Problem | None:
    key = (trail.tenant, trail.id)
    marked_revision, marked_record = marked
    audited = trail.digests.get(revision)
    if audited is not None:
        if audited != fingerprint:
            audit_record = {trail.revision: trail.record, marked_revision: marked_record}.get(revision)
            return _differs(key, revision, content, audit_record)
        if marked_revision > revision:
            return _behind_kv(key, revision, marked_revision)
        return None
    if revision > trail.revision:
        return _problem(
            ProblemKind.AUDIT_BEHIND, key, revision,
            f"is at revision {revision} ({content['state']}) in KV, the audit only at {trail.revision} "
            f"({trail.record['state']}): the audit is behind",
            audit_revision=trail.revision, kv_state=content["state"], audit_state=trail.record["state"],
        )  # fmt: skip
    if marked_revision > revision:
        return _behind_kv(key, revision, marked_revision)
    return _problem(
        ProblemKind.REVISION_NOT_AUDITED, key, revision,
        f"is at revision {revision} in KV, which the audit lacks (it has {trail.revision})",
        audit_revision=trail.revision,
    )  # fmt: skip


def _differs(key: tuple[str, str], revision: int, kv: dict[str, Any], audit: dict[str, Any] | None) -> Problem:
    if audit is None:
        return _problem(ProblemKind.RECORD_DIFFERS, key, revision, "differs in KV from its audit record")
    fields = sorted(f for f in kv.keys() | audit.keys() if kv.get(f) != audit.get(f))
    both = {f: {"kv": kv.get(f), "audit": audit.get(f)} for f in fields}
    shown = "; ".join(f"{f}: KV {_short(kv.get(f))}, audit {_short(audit.get(f))}" for f in fields)
    what = f"differs in KV from its audit record: {shown}"
    return _problem(ProblemKind.RECORD_DIFFERS, key, revision, what, fields=both)


def _behind_kv(key: tuple[str, str], revision: int, audited: int) -> Problem:
    return _problem(
        ProblemKind.KV_BEHIND, key, revision,
        f"is at revision {revision} in KV, though the audit had revision {audited} before KV was read",
        audit_revision=audited,
    )  # fmt: skip


def _problem(kind: ProblemKind, key: tuple[str, str], revision: int, what: str, **details: Any) -> Problem:
    tenant, intent = key
    return Problem(
        kind=kind,
        message=f"intent {tenant}/{intent} (revision {revision}) {what}",
        tenant=tenant,
        intent=intent,
        revision=revision,
        details=details,
    )


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
