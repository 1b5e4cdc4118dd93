"""What a load run proves at its end, read back from the system, not from
the load's own counts:

    terminal   every intent the system accepted has a record in KV in a
               terminal state (read by key, each one)
    made       every intent of the phase in the bucket (listed by key) is
               one the load counted accepted, and the other way round
    sources    the distinct sources (nodes, peers) whose intents the system
               stored, from each record's `params.source`
    ledger     exactly one apply in the ledger per SUCCEEDED intent, and no
               apply for any other accepted intent of the run
    replay     `exoarmur replay --verify --json` run as a user runs it:
               exit 0 and `"ok": true`

Each check is a `Check`: its name, whether it passed, the figures it
counted, and what was wrong (a few examples, never thousands).
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import attrs
import orjson
from nats.js.errors import KeyNotFoundError

from exoarmur.benchmarks import PYTHON
from exoarmur.actors.execution.ledger import read_ledger
from exoarmur.actors.intents.record import intent_key
from exoarmur.benchmarks.intents_system import live_keys

__all__ = ["Check", "ledger_check", "made_check", "made_ids", "records_check", "replay_check"]

RECORDS = "exoarmur_intents"
READS_AT_ONCE = 128
EXAMPLES = 5
REPLAY_SECONDS = 600.0


@attrs.frozen
class Check:
    name: str
    passed: bool
    figures: dict[str, Any]
    problems: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "figures": self.figures, "problems": list(self.problems)}


async def read_records(js: Any, accepted: dict[str, str], tenant_of: dict[str, str]) -> dict[str, dict[str, Any] | None]:
    """The stored record of each accepted intent (None: no record)."""
    kv = await js.key_value(RECORDS)
    found: dict[str, dict[str, Any] | None] = {}
    limiter = anyio.Semaphore(READS_AT_ONCE)

    async def read(intent: str) -> None:
        async with limiter:
            try:
                entry = await kv.get(intent_key(tenant_of[accepted[intent]], intent))
            except KeyNotFoundError:
                found[intent] = None
                return
        found[intent] = orjson.loads(entry.value) if entry.value else None

    async with anyio.create_task_group() as group:  # one failed read ends them all
        for intent in accepted:
            group.start_soon(read, intent)
    return found


async def made_ids(js: Any, prefix: str) -> set[str]:
    """The ids of every intent record in the bucket whose id starts with
    `prefix` (the phase's): what the system made, whatever the load heard."""
    return {key.split(".", 1)[1] for key in await live_keys(js, RECORDS) if key.split(".", 1)[1].startswith(prefix)}


def made_check(made: set[str], accepted: dict[str, str]) -> Check:
    """Every intent the system made was one the load counted accepted:
    none made behind a refusal it believed, none it believed made missing."""
    unheard = sorted(made - set(accepted))
    missing = sorted(set(accepted) - made)
    problems = [f"made, counted refused: {i}" for i in unheard[:EXAMPLES]]
    problems += [f"counted accepted, not made: {i}" for i in missing[:EXAMPLES]]
    return Check(
        "every intent made was counted accepted",
        not problems and bool(made),
        {"made": len(made), "accepted": len(accepted), "made_not_accepted": len(unheard), "accepted_not_made": len(missing)},
        tuple(problems) if made else ("no intent was made",),
    )


def records_check(
    records: dict[str, dict[str, Any] | None], accepted: dict[str, str], terminal: frozenset[str]
) -> tuple[Check, Check]:
    """(terminal, sources): every accepted intent's record terminal; the
    distinct sources of the stored records, exactly those the client was
    answered "accepted" for (`accepted`: intent -> source)."""
    missing = [intent for intent, record in records.items() if record is None]
    states = Counter(record["state"] for record in records.values() if record is not None)
    # Why the others ended as they did: state -> code -> intents.
    codes: dict[str, Counter[str]] = {}
    for record in records.values():
        if record is not None and record["state"] != "SUCCEEDED":
            codes.setdefault(record["state"], Counter())[record.get("code") or "-"] += 1
    unended = [intent for intent, r in records.items() if r is not None and r["state"] not in terminal]
    problems = [f"no record: {i}" for i in missing[:EXAMPLES]] + [f"not terminal: {i}" for i in unended[:EXAMPLES]]
    terminal_check = Check(
        "every accepted intent terminal",
        not missing and not unended and bool(records),
        {"accepted": len(records), "missing": len(missing), "not_terminal": len(unended), "states": dict(states),
         "codes": {state: dict(counted) for state, counted in codes.items()}},  # fmt: skip
        tuple(problems) if records else ("no intent was accepted",),
    )
    seen = {str(r["params"].get("source")) for r in records.values() if r is not None}
    answered = set(accepted.values())
    counted = {"nodes": sum(s.startswith("node-") for s in seen), "peers": sum(s.startswith("peer-") for s in seen)}
    problems = [f"stored, never accepted: {s}" for s in sorted(seen - answered)[:EXAMPLES]]
    problems += [f"accepted, not stored: {s}" for s in sorted(answered - seen)[:EXAMPLES]]
    sources_check = Check(
        "distinct sources stored", seen == answered and bool(seen), {**counted, "accepted_sources": len(answered)}, tuple(problems)
    )
    return terminal_check, sources_check


def ledger_check(path: Path, records: dict[str, dict[str, Any] | None], run: str) -> Check:
    """One apply per SUCCEEDED intent of this run (ids start with `run`),
    none for the others; reverts are not expected (no TTL is asked)."""
    applies = Counter(line["intent"] for line in read_ledger(path) if line["op"] == "apply" and line["intent"].startswith(run))
    succeeded = {intent for intent, r in records.items() if r is not None and r["state"] == "SUCCEEDED"}
    twice = sorted(intent for intent, n in applies.items() if n > 1)
    never = sorted(succeeded - set(applies))
    stray = sorted(set(applies) - succeeded)
    problems = (
        [f"applied {applies[i]} times: {i}" for i in twice[:EXAMPLES]]
        + [f"SUCCEEDED without an apply: {i}" for i in never[:EXAMPLES]]
        + [f"applied, not SUCCEEDED: {i} ({(records.get(i) or {}).get('state')})" for i in stray[:EXAMPLES]]
    )
    return Check(
        "one ledger effect per SUCCEEDED intent",
        not problems and bool(succeeded),
        {"succeeded": len(succeeded), "applies": sum(applies.values()), "duplicates": len(twice),
         "missing": len(never), "stray": len(stray)},  # fmt: skip
        tuple(problems) if succeeded else ("no intent SUCCEEDED",),
    )


async def replay_check(target: list[str], *, token: str | None) -> Check:
    """`exoarmur replay --verify --json` with `target` (--state-dir DIR or
    --nats-url URL), as a subprocess; the token, if any, in its environment."""
    env = {**os.environ}
    if token:
        env["EXOARMUR_NATS_TOKEN"] = token
    argv = [*PYTHON, "-m", "exoarmur", "replay", "--verify", "--json", *target]
    with anyio.fail_after(REPLAY_SECONDS):
        done = await anyio.run_process(argv, env=env, check=False, stdin=subprocess.DEVNULL)
    try:
        report = orjson.loads(done.stdout)
    except orjson.JSONDecodeError:
        report = {}
    summary = report.get("summary", {})
    problems = [f"{p.get('kind')}: {p.get('message')}" for p in report.get("problems", [])[:EXAMPLES]]
    if done.returncode != 0 and not problems:
        problems = [f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}"]
    keep = ("records", "chains", "intents", "intent_records", "kv_records", "duplicates", "seconds")
    return Check(
        "replay --verify",
        done.returncode == 0 and report.get("ok") is True,
        {"exit": done.returncode, **{name: summary.get(name) for name in keep}},
        tuple(problems),
    )
