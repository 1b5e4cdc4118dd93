"""The gates the kill sweeps measure (kill_sweep.py: `exoarmur run` as a
subprocess with its embedded NATS, `ledger` intents over the NATS
subjects, every acknowledged submission counted):

    gate 2   SIGKILLs at random moments and at each fault point, restarted
             each time; on asyncio and on trio
    gate 1   (its cluster half) a 3-node cluster, R3 buckets and stream,
             fsync always, one node SIGKILLed mid-run

A sweep counts what it finds (kill_sweep.py `check(strict=False)`) and the
thresholds judge the counts; a sweep that cannot go on (a submission never
acknowledged, a process that does not start) is the gate's error, with the
process's last log lines in the evidence.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
import orjson

from exoarmur.actors.intents.faults import POINTS
from exoarmur.benchmarks.gates_report import Gate, describe
from exoarmur.benchmarks.kill_sweep import Sweep, run_sweep
from exoarmur.benchmarks.sweep_runner import Runner, shared_config

__all__ = ["SweepShape", "cluster_sweep", "gate_2"]


@attrs.frozen(kw_only=True)
class SweepShape:
    count: int  # intents submitted
    kills: int  # SIGKILLs at random moments (the fault points come on top)
    tenants: int
    trio_count: int  # the trio sweep's (0: none)
    cluster_count: int


def run_counted(sweep: Sweep, evidence: Path, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """The sweep's figures (None, and why, if it could not finish), written
    to `<name>.json` in the evidence either way."""
    started = time.monotonic()
    figures: dict[str, Any] | None
    try:
        figures, error = run_sweep(sweep, strict=False), None
    except (AssertionError, RuntimeError, OSError, TimeoutError) as exc:
        figures, error = None, describe(exc, limit=2000)
    log = sweep.runner.log
    written = figures or {"error": error, "log_tail": log.read_text(errors="replace")[-4000:] if log and log.exists() else ""}
    written["seconds"] = round(time.monotonic() - started, 1)
    written["nodes_killed"] = sweep.nodes_killed
    (evidence / f"{name}.json").write_bytes(orjson.dumps(written, option=orjson.OPT_INDENT_2))
    return figures, error


def gate_2(evidence: Path, root: Path, shape: SweepShape, *, seed: int) -> Gate:
    gate = Gate(2)
    points = sorted(POINTS - {"mid_revert"})
    runs = [("asyncio", shape.count, True)] + ([("trio", shape.trio_count, False)] if shape.trio_count else [])
    for backend, count, faults in runs:
        gate.ran.append(f"{count} ledger intents over {shape.tenants} tenants into `exoarmur run --backend {backend}` "
                        f"(embedded NATS), SIGKILLed at {shape.kills} random moments"
                        + (f" and at each fault point ({', '.join(points)}; 3 intents more for each)" if faults else "")
                        + ", restarted each time; then every intent read back, the ledger counted, replay --verify")  # fmt: skip
        sweep = Sweep(Runner(root / f"g2-{backend}" / "state", backend=backend), count=count, kills=shape.kills,
                      tenants=shape.tenants, seed=seed, faults=faults)  # fmt: skip
        name = f"gate2-{backend}"
        figures, error = run_counted(sweep, evidence, name)
        gate.evidence.append(f"{name}.json")
        if figures is None:
            gate.error = f"{backend}: {error}"
            return gate
        gate.figures[backend] = figures
        wanted = shape.kills + (len(points) if faults else 0)
        gate.check(f"{backend}: killed as planned", figures["kills"] >= wanted, f"{figures['kills']} SIGKILLs",
                   f">= {wanted}")  # fmt: skip
        check_applied_once(gate, backend, figures)
        gate.check(f"{backend}: every intent SUCCEEDED", figures["succeeded"] == figures["intents"],
                   f"{figures['succeeded']:,} of {figures['intents']:,}", "all: nothing here has a reason to fail")  # fmt: skip
        looked = figures["servers_looked_for"]
        gate.check(f"{backend}: no nats-server outlives its process", figures["servers_left"] == 0 and looked >= wanted,
                   f"{figures['servers_left']} left, looked for after {looked} deaths", "0 left 5 s after each death")  # fmt: skip
        check_replay(gate, backend, figures)
    return gate


def check_applied_once(gate: Gate, label: str, f: dict[str, Any]) -> None:
    """Every acknowledged intent read back terminal; one ledger apply per
    SUCCEEDED intent, none for any other."""
    gate.check(f"{label}: every acknowledged intent terminal, none lost", f["terminal"] == f["intents"] > 0,
               f"{f['terminal']:,} of {f['intents']:,} read back terminal", "all, > 0")  # fmt: skip
    wrong = f["applied_twice"] + f["applied_not_succeeded"] + f["succeeded_not_applied"]
    gate.check(f"{label}: one effect per SUCCEEDED intent, none for others", wrong == 0 and f["applies"] == f["succeeded"],
               f"{f['succeeded']:,} SUCCEEDED, {f['applies']:,} applies: {f['applied_twice']} twice, "
               f"{f['applied_not_succeeded']} not SUCCEEDED, {f['succeeded_not_applied']} missing",
               "exactly one each")  # fmt: skip
    others = [p for p in f["problems"] if not p.startswith("replay")]
    gate.check(f"{label}: nothing applied that was not submitted or reverted as asked", not others,
               "; ".join(others) or "none", "none")  # fmt: skip


def check_replay(gate: Gate, label: str, f: dict[str, Any]) -> None:
    gate.check(f"{label}: replay --verify", f["replay_ok"] == 1 and f["audit_records"] > 0,
               f"{f['audit_records']:,} intent records, {'equivalent to KV' if f['replay_ok'] else 'NOT equivalent'}"
               + (f" (run {f['replay_attempts']} times: it failed on the way before)" if f["replay_attempts"] > 1 else "")
               + "".join(f"; {p}" for p in f["problems"] if p.startswith("replay")),
               "exit 0, ok")  # fmt: skip


def cluster_sweep(gate: Gate, evidence: Path, root: Path, shape: SweepShape, *, seed: int) -> Gate:
    """Gate 1's cluster half, checked into `gate`."""
    (root / "g1-cluster").mkdir(parents=True)
    config = shared_config(root / "g1-cluster", replicas=3, lease_ttl=18.0)
    gate.ran.append(f"{shape.cluster_count} ledger intents into `exoarmur run` on a 3-node cluster (R3 buckets and "
                    "stream, fsync always), one node SIGKILLed mid-run and the process once; then every intent read "
                    "back from the survivors, the ledger counted, replay --verify")  # fmt: skip
    sweep = Sweep(Runner(root / "g1-cluster" / "a", args=("--config", str(config))), count=shape.cluster_count,
                  kills=1, tenants=3, seed=seed, faults=False, ledger=root / "g1-cluster" / "ledger.jsonl",
                  server_dir=root / "g1-cluster" / "nats", nodes=3, node_kills=1)  # fmt: skip
    figures, error = run_counted(sweep, evidence, "gate1-cluster")
    gate.evidence.append("gate1-cluster.json")
    if figures is None:
        gate.error = f"cluster: {error}"
        return gate
    gate.figures["cluster"] = figures
    gate.check("cluster: a node SIGKILLed mid-run", sweep.nodes_killed == 1, f"{sweep.nodes_killed} of 3", "1")
    check_applied_once(gate, "cluster", figures)
    ended = figures["succeeded"] + figures["fail_closed"]
    gate.check("cluster: each applied once or killed at its gate", ended == figures["intents"],
               f"{figures['succeeded']:,} SUCCEEDED (one apply each), {figures['fail_closed']:,} KILLED failing closed",
               f"{figures['intents']:,} in all")  # fmt: skip
    check_replay(gate, "cluster", figures)
    return gate
