"""The gates the load measures (the load script's machinery, load_*.py): a
nats-server of its own (JetStream fsync on every write) and `exoarmur run`
reaching it through a TCP proxy, loaded by the fleet of nodes and peers.

    ramp      capacity, measured
    overload  2 x capacity                              gate 8
    chaos     kill -9, NATS SIGKILLed, a flap, a slow
              consumer, every submission three times    gate 7
              around the NATS SIGKILL: stored intent
              records and the audit stream's head read
              before it, and after the run, byte for
              byte                                      gate 1 (one server)
    replay    `exoarmur replay --verify` of it all      gate 3

Every target and check of a scenario (load_nodes_peers.py) is a threshold
of its gate.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import attrs
import orjson

from exoarmur.actors.intents.record import intent_key
from exoarmur.benchmarks.gates_reads import SNAPSHOT, admission_refusals, mailbox_capacities, read_back, snapshot
from exoarmur.benchmarks.gates_report import Gate, describe
from exoarmur.benchmarks.load_chaos import Chaos
from exoarmur.benchmarks.load_fleet import Driving, fleet, sources
from exoarmur.benchmarks.load_nodes_peers import CHAOS_COPIES, NOMINAL_SHARE, OVERLOAD_FACTOR, Shape, scenario
from exoarmur.benchmarks.load_phases import ramp
from exoarmur.benchmarks.load_record import Recorder, Sampler
from exoarmur.benchmarks.load_system import System
from exoarmur.benchmarks.load_verify import replay_check
from exoarmur.runtime import TimeoutCategory, TimeoutPolicy
from exoarmur.runtime.margins import REFUSALS_WINDOW

__all__ = ["load_gates"]

ADMITTED_BY_DESK = ("OVERLOAD_TENANT_QUOTA", "RATE_LIMITED")  # the refusals the admission chain audits


def load_gates(evidence: Path, root: Path, shape: Shape, *, backend: str) -> list[Gate]:
    gates = {n: Gate(n) for n in (8, 7, 3, 1)}
    report: dict[str, Any] = {"shape": attrs.asdict(shape)}
    try:
        anyio.run(_run, root, shape, backend, gates, report, backend="asyncio")
    except Exception as exc:  # (an ExceptionGroup too) what was measured stays; the rest FAIL with why
        for gate in gates.values():
            if not gate.thresholds:
                gate.error = f"the load run failed: {describe(exc)}"
    finally:
        (evidence / "load.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str))
    for gate in gates.values():
        gate.evidence.append("load.json")
    return list(gates.values())


class DurableChaos(Chaos):
    """The chaos run, with what gate 1 reads taken right before its NATS
    SIGKILL (read back once the run is over, so the fault's recovery time
    is the fault's own)."""

    def __init__(self, system: System, sampler: Sampler, *, gap: float, subject: str, tenant_of: dict[str, str]) -> None:
        super().__init__(system, sampler, gap=gap, subject=subject)
        self.tenant_of = tenant_of  # source name -> tenant
        self.recorder: Recorder | None = None
        self.before: dict[str, Any] | None = None

    async def inject(self, recorder: Recorder) -> None:
        self.recorder = recorder
        await super().inject(recorder)

    async def _nats(self) -> str:
        accepted = self.recorder.accepted_ids if self.recorder else {}
        keys = [intent_key(self.tenant_of[source], intent_id) for intent_id, source in list(accepted.items())]
        self.before = await snapshot(self.system, keys)
        return await super()._nats()


async def _run(root: Path, shape: Shape, backend: str, gates: dict[int, Gate], report: dict[str, Any]) -> None:
    args = argparse.Namespace(state_dir=None, nats_url=None, metrics_url=None, ledger=None, backend=backend)
    run = f"G{secrets.token_hex(3)}"
    base = sources(nodes=shape.nodes, peers=shape.peers, tenants=shape.tenants)
    async with AsyncExitStack() as stack:
        system = System(args, root, quota=shape.quota, chaos=True)
        await system.start(stack)
        report["environment"] = system.facts
        async with fleet(base, urls=system.urls, credentials=system.credentials) as ready:
            sampler = Sampler(pid=system.pid, metrics_url=system.metrics_url, server_pid=system.server_pid)
            capacity, steps = await ramp(ready, sampler, base, start_rate=shape.start_rate, step_factor=shape.step_factor,
                                         step_seconds=shape.step_seconds, interval=shape.interval, run=run,
                                         stream=sys.stderr, driving=Driving(kind="ledger"))  # fmt: skip
        report["ramp"] = {"capacity_per_s": capacity, "steps": steps}
        common = {"capacity": capacity, "run": run, "kind": "ledger"}
        overload = report["overload"] = await scenario("overload", system, shape, base, rate=OVERLOAD_FACTOR * capacity,
                                                       **common)  # fmt: skip
        gate = gates[8]
        _scenario_gate(gate, overload, f"ramp to capacity ({capacity:,.1f}/s), then {OVERLOAD_FACTOR:g} x capacity "
                       f"for {shape.seconds:g} s from {shape.nodes:,} nodes and {shape.peers:,} peers over "
                       f"{shape.tenants} tenants (each tenant's quota {shape.quota})")  # fmt: skip
        _mailboxes_bounded(gate, overload, mailbox_capacities(system.metrics_url))
        await anyio.sleep(REFUSALS_WINDOW + 1.0)  # every owner's last window of refusals written
        refused = sum((Counter(step["rejected_by"]) for step in steps), Counter(overload["figures"]["rejected_by"]))
        _refusals_audited(gate, refused, *(await admission_refusals(system)))
        rate = NOMINAL_SHARE * capacity / CHAOS_COPIES
        made: list[DurableChaos] = []

        def durable(system: System, sampler: Sampler, *, gap: float, subject: str) -> DurableChaos:
            made.append(DurableChaos(system, sampler, gap=gap, subject=subject, tenant_of={s.name: s.tenant for s in base}))
            return made[-1]

        chaos = report["chaos"] = await scenario("chaos", system, shape, base, rate=rate, chaos_class=durable, **common)
        _scenario_gate(gates[7], chaos, f"{rate:,.1f} submissions/s, each delivered {CHAOS_COPIES} times, while "
                       "`exoarmur run` is SIGKILLed and restarted, the nats-server SIGKILLed and restarted, the link "
                       "to NATS cut and slowed, and a slow consumer subscribes")  # fmt: skip
        before = made[0].before if made else None
        durable_figures = report["durable"] = await read_back(system, before) if before is not None else {}
        _durable_gate(gates[1], chaos, durable_figures)
        replay = report["replay"] = (await replay_check(system.replay_target, token=system.credentials.token)).as_json()
        accepted = sum(report[name]["figures"]["accepted"] for name in ("overload", "chaos"))
        _replay_gate(gates[3], replay, at_least=accepted)


def _scenario_gate(gate: Gate, result: dict[str, Any], ran: str) -> None:
    gate.ran.append(ran)
    f = result["figures"]
    gate.figures.update({name: f.get(name) for name in ("submitted", "accepted", "rejected_by", "completed_by",
                                                         "throughput_per_s", "latency", "rss_mb_warm", "rss_mb_end",
                                                         "depth_max", "faults")})  # fmt: skip
    for t in result["targets"]:
        gate.check(t["name"], t["passed"], t["measured"], t["threshold"])
    for c in result["checks"]:
        measured = ", ".join(f"{k} {v}" for k, v in c["figures"].items() if not isinstance(v, dict))
        gate.check(c["name"], c["passed"], measured + ("; " + "; ".join(c["problems"]) if c["problems"] else ""), "holds")


def _mailboxes_bounded(gate: Gate, overload: dict[str, Any], capacity: dict[str, float]) -> None:
    """Each interval's deepest actor type (its mailboxes' depth, summed)
    against its mailboxes' capacity, summed: /metrics gives both per type."""
    rows = [r for r in overload["intervals"] if r.get("depth_max_type")]
    over = [r for r in rows if r["depth_max"] > capacity.get(r["depth_max_type"], -1.0)]
    deepest = max(rows, key=lambda r: r["depth_max"], default=None)
    shown = "no depth sampled" if deepest is None else (
        f"deepest {deepest['depth_max']:,.0f} ({deepest['depth_max_type']}, capacity "
        f"{capacity.get(deepest['depth_max_type'], 0):,.0f}); {len(over)} of {len(rows)} samples over")  # fmt: skip
    gate.check("no mailbox deeper than its capacity", bool(rows) and not over, shown,
               "depth <= capacity per actor type, every sample")  # fmt: skip


def _refusals_audited(gate: Gate, seen: Counter[str], audited: Counter[str], records: int) -> None:
    """The refusals the load was answered, by code, against those the
    owners wrote to the admission chain (ramp and overload)."""
    seen_here = {code: seen.get(code, 0) for code in ADMITTED_BY_DESK}
    audited_here = {code: audited.get(code, 0) for code in ADMITTED_BY_DESK}
    gate.figures["refusals_audited"] = {"seen": seen_here, "audited": audited_here, "records": records}
    gate.check("every refusal audited (the admission chain)", seen_here == audited_here and sum(seen_here.values()) > 0,
               f"answered {seen_here}, audited {audited_here} in {records} records", "equal, > 0")  # fmt: skip


def _durable_gate(gate: Gate, chaos: dict[str, Any], d: dict[str, Any]) -> None:
    gate.ran.append(f"right before the chaos run's NATS SIGKILL: up to {SNAPSHOT:,} stored terminal intent records "
                    "and the audit stream's last record read; the nats-server started again on its data; after the "
                    "run, each read back")  # fmt: skip
    gate.figures["one_server"] = d
    records, same = d.get("records", 0), d.get("records_same", 0)
    gate.check("records read back byte for byte", records > 0 and same == records,
               f"{same:,} of {records:,} identical (value and revision), {d.get('records_missing', 0)} gone",
               "all, > 0")  # fmt: skip
    gate.check("the audit stream's head read back byte for byte", d.get("audit_same") is True,
               f"record {d.get('audit_seq')}: " + ("identical" if d.get("audit_same") else
                                                   "different" if d.get("audit_found") else "not found"),
               "identical")  # fmt: skip
    made = next((c for c in chaos["checks"] if c["name"] == "every intent made was counted accepted"), None)
    gate.check("no acknowledged intent lost (whole chaos run)", made is not None and made["passed"],
               "not checked" if made is None else ", ".join(f"{k} {v}" for k, v in made["figures"].items()),
               "stored = acknowledged")  # fmt: skip


def _replay_gate(gate: Gate, replay: dict[str, Any], *, at_least: int) -> None:
    budget = TimeoutPolicy()[TimeoutCategory.REPLAY_PROCESSING]
    f = replay["figures"]
    intents = f.get("intents") or 0
    gate.ran.append("`exoarmur replay --verify --json` over the load system's whole audit trail (ramp, overload, chaos)")
    gate.figures.update(f)
    gate.check("replay --verify", replay["passed"] and intents >= at_least > 0,
               f"exit {f.get('exit')}; {f.get('records') or 0:,} records, {intents:,} intents"
               + ("; " + "; ".join(replay["problems"]) if replay["problems"] else ""),
               f"exit 0, equivalent to KV, >= {at_least:,} intents (overload's and chaos's accepted)")  # fmt: skip
    seconds = f.get("seconds")
    gate.check("replay time", seconds is not None and seconds <= budget, f"{seconds or 0:,.1f} s",
               f"<= {budget:g} s (REPLAY_PROCESSING)")  # fmt: skip
