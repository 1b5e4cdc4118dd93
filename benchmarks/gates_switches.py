"""Gate 5, kill switches: a switch that is on, or cannot be read, stops work.

One `exoarmur run` (embedded NATS) with the `stamped` type (stamped.py: a
ledger whose every apply first notes when it started, on the machine's
monotonic clock). Phases, one after another, each submitting `per` intents
to every tenant of THREE and reading each back terminal:

    tenant    t1's switch set (`exoarmur.killswitch.set`, answered):
              t1's intents must end KILLED, t0's and t2's SUCCEEDED
    global    the global switch set: every tenant's intents KILLED
    unknown   t2's switch key overwritten with bytes no switch is (a write
              around the service: its state unknown): t2's intents KILLED
              (fail closed), the others SUCCEEDED
    cleared   the switches cleared and the bad key deleted: all SUCCEEDED

From the ledger's stamps: no apply of a covered tenant started after its
switch's set was answered. From the audit stream: every KILLED intent has
exactly one audit record of it ending KILLED, with KILL_SWITCH_ACTIVE.

Then (`midway`, not in a quick run) a kill sweep with the global switch set
while intents stream in, some of them applying as the set is answered
(kill_sweep.py): no apply may start after the answer, and every intent
submitted after it must end KILLED.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import orjson

from exoarmur.actors.nats import events_of
from exoarmur.benchmarks.gates_report import Gate, describe
from exoarmur.benchmarks.kill_sweep import Sweep, run_sweep
from exoarmur.benchmarks.stamped import starts
from exoarmur.benchmarks.sweep_runner import TERMINAL, Runner

__all__ = ["gate_5"]

THREE = ("t0", "t1", "t2")
SETTLE_SECONDS = 120.0
AUDIT_STREAM = "EXOARMUR_AUDIT"
CONTROLS = "exoarmur_controls"
PHASES = {  # phase: (what is done first, tenants covered)
    "tenant": ("set t1", {"t1"}),
    "global": ("set global", set(THREE)),
    "unknown": ("t2 unreadable", {"t2"}),
    "cleared": ("clear all", set()),
}


def gate_5(evidence: Path, root: Path, *, per: int, midway: int = 0) -> Gate:
    gate = Gate(5)
    ledger = root / "g5" / "stamped.jsonl"
    config = root / "g5" / "stamped.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[execution_types.stamped]\nclass = "exoarmur.benchmarks.stamped:Stamped"\npath = "{ledger}"\n')
    runner = Runner(root / "g5" / "state", args=("--config", str(config)))
    gate.ran.append(f"`exoarmur run` (embedded NATS, the stamped ledger type); {per} intents to each of "
                    f"{', '.join(THREE)} in each phase: t1's switch set; the global switch set; t2's switch "
                    "unreadable (its key overwritten around the service); all cleared")  # fmt: skip
    try:
        runner.start()
        phases = asyncio.run(_phases(runner, per))
    except (AssertionError, OSError, TimeoutError, RuntimeError, nats.errors.Error) as exc:
        gate.error = describe(exc, limit=2000)
        return gate
    finally:
        if runner.popen is not None and runner.popen.poll() is None:
            try:
                runner.stop()
            except subprocess.TimeoutExpired:  # SIGTERM did not stop it: it must not outlive the run
                runner.popen.kill()
                runner.popen.wait()
    stamps = starts(ledger)
    audit = phases.pop("audit")
    killed_ids = {i for phase in phases.values() for i, r in phase["records"].items() if r["state"] == "KILLED"}
    for name, phase in phases.items():
        covered = PHASES[name][1]
        records = phase["records"]
        mine = {i: r for i, r in records.items() if r["tenant"] in covered}
        others = {i: r for i, r in records.items() if r["tenant"] not in covered}
        turned_away = [key for key in phase["refused"] if key[0] not in covered]  # an uncovered one refused: wrong
        killed = sum(r["state"] == "KILLED" and r["code"] == "KILL_SWITCH_ACTIVE" for r in mine.values())
        refused = [key for key in phase["refused"] if key[0] in covered]  # at admission: nothing made
        killed += len(refused)
        late = [i for i, r in mine.items() if stamps.get(f"{r['tenant']}/{r['id']}", -1.0) >= phase["answered"]]
        gate.figures[name] = {"covered": len(mine), "killed": killed, "applies_after_answer": len(late),
                              "others": len(others), "others_succeeded": sum(r["state"] == "SUCCEEDED" for r in others.values()),
                              "states": dict(Counter(r["state"] for r in records.values()))}  # fmt: skip
        if covered:
            wanted = len(mine) + len(refused)
            gate.check(f"{name}: covered intents KILLED", killed == wanted > 0,
                       f"{killed} of {wanted} KILLED or refused, KILL_SWITCH_ACTIVE ({len(refused)} refused)", "all")  # fmt: skip
            gate.check(f"{name}: no covered apply started after the answer", not late,
                       f"{len(late)} started after", "0")  # fmt: skip
        if covered != set(THREE):
            ok, wanted = gate.figures[name]["others_succeeded"], len(others) + len(turned_away)
            gate.check(f"{name}: the others ran", ok == wanted > 0,
                       f"{ok} of {wanted} SUCCEEDED ({len(turned_away)} refused at admission)", "all")  # fmt: skip
    unreadable = sum("unreadable" in r["detail"] for r in phases["unknown"]["records"].values() if r["state"] == "KILLED")
    gate.check("unknown: the kills say the switch was unreadable", unreadable == per,
               f"{unreadable} of {per}", "all of t2's")  # fmt: skip
    once = sum(audit.get(i, 0) == 1 for i in killed_ids)
    gate.check("every kill audited once", once == len(killed_ids) > 0,
               f"{once} of {len(killed_ids)} KILLED intents with one KILLED record", "all")  # fmt: skip
    gate.figures["killed_audited_once"] = once
    name = "gate5-switches.json"
    (evidence / name).write_bytes(orjson.dumps(
        {n: {**p, "refused": sorted(p["refused"]), "records": sorted(p["records"].values(), key=lambda r: r["id"])}
         for n, p in phases.items()},
        option=orjson.OPT_INDENT_2))  # fmt: skip
    gate.evidence.append(name)
    if midway:
        _midway(gate, evidence, root / "g5-midway", count=midway)
    return gate


def _midway(gate: Gate, evidence: Path, root: Path, *, count: int) -> None:
    """The global switch set while `count` intents stream in (at 40% of them)."""
    ledger = root / "stamped.jsonl"
    root.mkdir(parents=True)
    config = root / "stamped.toml"
    config.write_text(f'[execution_types.stamped]\nclass = "exoarmur.benchmarks.stamped:Stamped"\npath = "{ledger}"\n')
    switch_at = count * 2 // 5
    gate.ran.append(f"a kill sweep of {count} stamped intents over 3 tenants, the global switch set after the "
                    f"first {switch_at} submissions, while they apply")  # fmt: skip
    sweep = Sweep(Runner(root / "state", args=("--config", str(config))), count=count, kills=0, tenants=3, seed=5,
                  faults=False, kind="stamped", ledger=ledger, switch_at=switch_at)  # fmt: skip
    try:
        figures = run_sweep(sweep)
    except (AssertionError, RuntimeError, OSError, TimeoutError) as exc:
        gate.error = f"midway: {describe(exc)}"
        return
    stamps = starts(ledger)
    late = sum(at >= sweep.switched for at in stamps.values())
    after = sorted(sweep.after_switch)
    killed = sum(sweep.states.get(key) == "KILLED" for key in after)
    figures.update(applies_started=len(stamps), started_after_answer=late, submitted_after=len(after), killed_after=killed)
    gate.figures["midway"] = figures
    (evidence / "gate5-midway.json").write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    gate.evidence.append("gate5-midway.json")
    gate.check("midway: no apply started after the set was answered", late == 0 and len(stamps) > 0,
               f"{late} of {len(stamps)} applies started after", "0")  # fmt: skip
    gate.check("midway: every intent submitted after it KILLED", killed == len(after) > 0,
               f"{killed} of {len(after)}", "all")  # fmt: skip


async def _phases(runner: Runner, per: int) -> dict[str, Any]:
    info = runner.connection()
    nc = await nats.connect(servers=info["urls"], token=info.get("token"), name="exoarmur-gates-switches")
    try:
        out: dict[str, Any] = {}
        for name in PHASES:
            answered = await _before(nc, name)
            ids = [(t, f"g5-{name}-{t}-{n}") for t in THREE for n in range(per)]
            refused = [key for key in ids if not await _submit(nc, *key)]
            accepted = [key for key in ids if key not in refused]
            out[name] = {"answered": answered, "refused": refused, "records": await _settled(nc, accepted)}
        out["audit"] = await _killed_records(nc)
        return out
    finally:
        await nc.close()


async def _ask(nc: Any, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = orjson.loads((await nc.request(subject, orjson.dumps(body), timeout=15)).data)
    if not reply.get("ok"):
        raise AssertionError(f"{subject}: {reply}")
    return reply


async def _before(nc: Any, phase: str) -> float:
    """Do what `phase` starts with; when it was answered (monotonic)."""
    js = nc.jetstream()
    who = {"who": "gates", "reason": f"gate 5, {phase}"}
    if phase == "tenant":
        await _ask(nc, "exoarmur.killswitch.set", {**who, "tenant": "t1"})
    elif phase == "global":
        await _ask(nc, "exoarmur.killswitch.clear", {**who, "tenant": "t1"})
        await _ask(nc, "exoarmur.killswitch.set", who)
    elif phase == "unknown":
        await _ask(nc, "exoarmur.killswitch.clear", who)
        kv = await js.key_value(CONTROLS)
        await kv.put("kill.tenant.t2", b"{not a switch")
    else:
        kv = await js.key_value(CONTROLS)
        await kv.delete("kill.tenant.t2")
    return time.monotonic()


async def _submit(nc: Any, tenant: str, intent_id: str) -> bool:
    """Accepted (False: refused at admission with KILL_SWITCH_ACTIVE)."""
    body = {"id": intent_id, "type": "stamped", "params": {"gate": "5"}}
    reply = orjson.loads((await nc.request(f"exoarmur.intents.{tenant}.submit", orjson.dumps(body), timeout=15)).data)
    if not reply["ok"] and reply["code"] != "KILL_SWITCH_ACTIVE":
        raise AssertionError(f"{tenant}/{intent_id}: {reply}")
    return bool(reply["ok"])


async def _settled(nc: Any, ids: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + SETTLE_SECONDS
    found: dict[str, dict[str, Any]] = {}
    while len(found) < len(ids):
        for tenant, intent_id in ids:
            if intent_id in found:
                continue
            reply = await _ask(nc, f"exoarmur.intents.{tenant}.get", {"id": intent_id})
            if reply["intent"]["state"] in TERMINAL:
                found[intent_id] = reply["intent"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not terminal after {SETTLE_SECONDS:g} s: {len(ids) - len(found)} intents")
        await asyncio.sleep(0.1)
    return found


async def _killed_records(nc: Any) -> dict[str, int]:
    """Per intent id, how many audit records show it ending KILLED with
    KILL_SWITCH_ACTIVE (each record read by its sequence)."""
    js = nc.jetstream()
    last = (await js.stream_info(AUDIT_STREAM)).state.last_seq
    counts: Counter[str] = Counter()
    for seq in range(1, last + 1):
        try:
            msg = await js.get_msg(AUDIT_STREAM, seq)
        except nats.js.errors.NotFoundError:
            continue
        for event in events_of(orjson.loads(msg.data).get("event", {})):
            record = event.get("record", {}) if event.get("kind") == "intent" else {}
            if record.get("state") == "KILLED" and record.get("code") == "KILL_SWITCH_ACTIVE":
                counts[record["id"]] += 1
    return dict(counts)
