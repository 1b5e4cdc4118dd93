"""The gates the load measures (the load script's machinery, load_*.py): a
nats-server of its own (JetStream fsync on every write) and `exoarmur run`
reaching it through a TCP proxy, loaded by the fleet of nodes and peers.

    ramp      capacity, measured
    overload  2 x capacity                              gate 8
    chaos     kill -9, NATS SIGKILLed, a flap, a slow
              consumer, every submission three times    gate 7
              around the NATS SIGKILL: stored intent
              records and the audit stream's head read
              before and after, byte for byte           gate 1 (one server)
    replay    `exoarmur replay --verify` of it all      gate 3

Every target and check of a scenario (load_nodes_peers.py) is a threshold
of its gate.
"""

from __future__ import annotations

import argparse
import functools
import secrets
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import attrs
import nats
import orjson

from exoarmur.actors.intents.record import intent_key
from exoarmur.benchmarks.gates_report import Gate
from exoarmur.benchmarks.load_chaos import Chaos
from exoarmur.benchmarks.load_fleet import Driving, fleet, sources
from exoarmur.benchmarks.load_nodes_peers import CHAOS_COPIES, NOMINAL_SHARE, OVERLOAD_FACTOR, Shape, scenario
from exoarmur.benchmarks.load_phases import ramp
from exoarmur.benchmarks.load_record import Recorder, Sampler
from exoarmur.benchmarks.load_system import System
from exoarmur.benchmarks.load_verify import RECORDS, replay_check
from exoarmur.runtime.timeouts import DEFAULT_SECONDS, TimeoutCategory

__all__ = ["load_gates"]

AUDIT_STREAM = "EXOARMUR_AUDIT"
SNAPSHOT = 1000  # stored records read before the NATS SIGKILL, at most
TERMINAL = {"SUCCEEDED", "FAILED", "DENIED", "EXPIRED", "KILLED", "REVERTED"}
READ_BACK_SECONDS = 30.0


def load_gates(evidence: Path, root: Path, shape: Shape, *, backend: str) -> dict[int, Gate]:
    gates = {n: Gate(n) for n in (1, 3, 7, 8)}
    report: dict[str, Any] = {"shape": attrs.asdict(shape)}
    try:
        anyio.run(_run, root, shape, backend, gates, report, backend="asyncio")
    except (AssertionError, OSError, TimeoutError, nats.errors.Error, RuntimeError) as exc:
        for gate in gates.values():
            gate.error = gate.error or f"the load run failed: {type(exc).__name__}: {str(exc)[:1000]}"
    (evidence / "load.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str))
    for gate in gates.values():
        gate.evidence.append("load.json")
    return gates


class DurableChaos(Chaos):
    """The chaos run, with gate 1 measured around its NATS SIGKILL."""

    def __init__(self, *args: Any, tenant_of: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant_of = tenant_of  # source name -> tenant
        self.recorder: Recorder | None = None
        self.durable: dict[str, Any] = {}

    async def inject(self, recorder: Recorder) -> None:
        self.recorder = recorder
        await super().inject(recorder)

    async def _nats(self) -> str:
        accepted = self.recorder.accepted_ids if self.recorder else {}
        keys = [intent_key(self.tenant_of[source], intent_id) for intent_id, source in list(accepted.items())]
        before = await _snapshot(self.system, keys)
        detail = await super()._nats()
        self.durable = await _read_back(self.system, before)
        return detail

    def figures(self) -> dict[str, Any]:
        return {"durable": self.durable}


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
        overload = await scenario("overload", system, shape, base, rate=OVERLOAD_FACTOR * capacity, **common)
        report["overload"] = overload
        _scenario_gate(gates[8], overload, f"ramp to capacity ({capacity:,.1f}/s), then {OVERLOAD_FACTOR:g} x capacity "
                       f"for {shape.seconds:g} s from {shape.nodes:,} nodes and {shape.peers:,} peers over "
                       f"{shape.tenants} tenants (each tenant's quota {shape.quota})")  # fmt: skip
        rate = NOMINAL_SHARE * capacity / CHAOS_COPIES
        durable = functools.partial(DurableChaos, tenant_of={s.name: s.tenant for s in base})
        chaos = await scenario("chaos", system, shape, base, rate=rate, chaos_class=durable, **common)
        report["chaos"] = chaos
        _scenario_gate(gates[7], chaos, f"{rate:,.1f} submissions/s, each delivered {CHAOS_COPIES} times, while "
                       "`exoarmur run` is SIGKILLed and restarted, the nats-server SIGKILLed and restarted, the link "
                       "to NATS cut and slowed, and a slow consumer subscribes")  # fmt: skip
        _durable_gate(gates[1], chaos)
        replay = await replay_check(system.replay_target, token=system.credentials.token)
        report["replay"] = replay.as_json()
        _replay_gate(gates[3], replay.as_json())


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


def _durable_gate(gate: Gate, chaos: dict[str, Any]) -> None:
    d = chaos["figures"].get("durable") or {}
    gate.ran.append("during the chaos run's NATS fault: up to "
                    f"{SNAPSHOT:,} stored terminal intent records and the audit stream's last record read, the "
                    "nats-server SIGKILLed and started again on its data, each read back")  # fmt: skip
    gate.figures["one_server"] = d
    records, same = d.get("records", 0), d.get("records_same", 0)
    gate.check("records read back byte for byte", records > 0 and same == records,
               f"{same:,} of {records:,} identical (value and revision)", "all, > 0")  # fmt: skip
    gate.check("the audit stream's head read back byte for byte", d.get("audit_same") is True,
               f"record {d.get('audit_seq')}: {'identical' if d.get('audit_same') else d.get('audit_problem', 'not read')}",
               "identical; later records only appended")  # fmt: skip
    made = next((c for c in chaos["checks"] if c["name"] == "every intent made was counted accepted"), None)
    if made is not None:
        gate.check("no acknowledged intent lost (whole chaos run)", made["passed"],
                   ", ".join(f"{k} {v}" for k, v in made["figures"].items()), "stored = acknowledged")  # fmt: skip


def _replay_gate(gate: Gate, replay: dict[str, Any]) -> None:
    budget = DEFAULT_SECONDS[TimeoutCategory.REPLAY_PROCESSING]
    f = replay["figures"]
    gate.ran.append("`exoarmur replay --verify --json` over the load system's whole audit trail (ramp, overload, chaos)")
    gate.figures.update(f)
    gate.check("replay --verify", replay["passed"],
               f"exit {f.get('exit')}; {f.get('records') or 0:,} records, {f.get('intents') or 0:,} intents"
               + ("; " + "; ".join(replay["problems"]) if replay["problems"] else ""), "exit 0, equivalent to KV")  # fmt: skip
    seconds = f.get("seconds")
    gate.check("replay time", seconds is not None and seconds <= budget, f"{seconds or 0:,.1f} s",
               f"<= {budget:g} s (REPLAY_PROCESSING)")  # fmt: skip


async def _connect(system: System) -> Any:
    return await nats.connect(list(system.urls), name="exoarmur-gates-durable", max_reconnect_attempts=-1,
                              reconnect_time_wait=0.2, **system.credentials_kwargs())  # fmt: skip


async def _snapshot(system: System, keys: list[str]) -> dict[str, Any]:
    """Of `keys`, the terminal records (key -> (revision, bytes)), and the
    audit stream's last record."""
    nc = await _connect(system)
    try:
        js = nc.jetstream()
        kv = await js.key_value(RECORDS)
        records: dict[str, tuple[int, bytes]] = {}
        for key in keys:
            if len(records) >= SNAPSHOT:
                break
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue
            if orjson.loads(entry.value).get("state") in TERMINAL:
                records[key] = (entry.revision, entry.value)
        last = (await js.stream_info(AUDIT_STREAM)).state.last_seq
        head = (await js.get_msg(AUDIT_STREAM, last)).data
        return {"records": records, "audit_seq": last, "audit": head}
    finally:
        await nc.close()


async def _read_back(system: System, before: dict[str, Any]) -> dict[str, Any]:
    with anyio.fail_after(READ_BACK_SECONDS):
        nc = await _connect(system)
    try:
        js = nc.jetstream()
        same = 0
        with anyio.fail_after(READ_BACK_SECONDS):
            kv = await js.key_value(RECORDS)
            for key, (revision, value) in before["records"].items():
                entry = await kv.get(key)
                same += entry.revision == revision and entry.value == value
            head = (await js.get_msg(AUDIT_STREAM, before["audit_seq"])).data
        out = {"records": len(before["records"]), "records_same": same, "audit_seq": before["audit_seq"],
               "audit_same": head == before["audit"]}  # fmt: skip
        if head != before["audit"]:
            out["audit_problem"] = "different bytes"
        return out
    finally:
        await nc.close()
