"""The load script runs as a user runs it: its quick form starts a real
nats-server and `exoarmur run`, measures capacity with a ramp, runs nominal,
overload and chaos (the process SIGKILLed and restarted, the server too, a
network flap, a slow consumer, every submission three times), and ends
verified (every accepted intent terminal, the sources counted from the
stored records, one ledger effect per SUCCEEDED intent, replay --verify). Speed is not judged here, correctness is: its
checks must pass, and it exits 1 exactly when something failed, each named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import psutil
import pytest

from exoarmur.benchmarks import load_nodes_peers
from exoarmur.benchmarks.load_fleet import sources
from exoarmur.benchmarks.load_record import percentiles
from exoarmur.benchmarks.load_system import System

RUN_SECONDS = 240


def run_load(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "exoarmur.benchmarks.load_nodes_peers", "--quick", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=RUN_SECONDS,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]
    [report_path] = (tmp_path / "benchmark-results").glob("load-*.json")
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if str(scratch) in " ".join(p.info["cmdline"] or ())]
    assert leftovers == [], "a server or exoarmur process outlived the run"
    return done, json.loads(report_path.read_text())


@pytest.mark.xdist_group("heavy")  # one at a time with the other long runs of the suite
@pytest.mark.timeout(RUN_SECONDS + 30)
def test_the_quick_run_measures_capacity_runs_its_scenarios_and_chaos_and_verifies_them(tmp_path):
    done, report = run_load(tmp_path, "--chaos")
    shape = load_nodes_peers.QUICK
    assert report["capacity_per_s"] > 0 and report["ramp"]["steps"]
    assert set(report["scenarios"]) == {"nominal", "overload", "chaos"}
    for name, result in report["scenarios"].items():
        figures = result["figures"]
        assert (figures["nodes"], figures["peers"], figures["tenants"]) == (shape.nodes, shape.peers, shape.tenants)
        # Every submission answered one way or the other, none left unaccounted.
        ended = figures["accepted"] + sum(figures["rejected_by"].values())
        assert ended == figures["submitted"] > 0, figures
        checks = {check["name"]: check for check in result["checks"]}
        assert all(check["passed"] for check in checks.values()), (name, checks)
        stored = checks["distinct sources stored"]["figures"]
        if name == "nominal" and not figures["rejected_by"]:  # none refused: every source has intents stored
            assert (stored["nodes"], stored["peers"]) == (shape.nodes, shape.peers)
        assert checks["one ledger effect per SUCCEEDED intent"]["figures"]["duplicates"] == 0
        assert checks["every intent made was counted accepted"]["figures"]["made"] == figures["accepted"]
        accounted = {t["name"]: t for t in result["targets"]}["every submission accounted for"]
        assert accounted["passed"], accounted  # the load's own counts add up, whatever the machine
        measured = [row["rss_mb"] is not None for row in result["intervals"]]
        assert measured and (any if name == "chaos" else all)(measured)  # none while the process is dead
    overload = report["scenarios"]["overload"]["figures"]
    assert overload["offered_per_s"] == pytest.approx(2 * report["capacity_per_s"])
    assert all(code.startswith(("OVERLOAD_", "RATE_LIMITED")) for code in overload["rejected_by"]), overload
    chaos = report["scenarios"]["chaos"]["figures"]
    assert [fault["fault"] for fault in chaos["faults"]] == ["kill", "nats", "flap", "slow"]
    assert chaos["created_twice"] == 0 and chaos["duplicates"] > 0  # every delivery three times, one intent each
    assert all(code.startswith(("OVERLOAD_", "RATE_LIMITED")) for code in chaos["rejected_by"]), chaos
    [replay] = report["checks"]
    assert replay["passed"] and replay["figures"]["exit"] == 0, replay
    assert Path(report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "exoarmur bench load" in done.stdout and "parameters:" in done.stdout and "environment:" in done.stdout
    # The verdict: exit 1 exactly when something failed, each named on stderr.
    assert report["all_targets_pass"] == (not report["failures"])
    assert done.returncode == (1 if report["failures"] else 0)
    for line in report["failures"]:
        assert f"  {line}\n" in done.stderr


def test_sources_are_exactly_the_counts_asked_dealt_over_the_tenants():
    made = sources(nodes=1000, peers=500, tenants=10)
    assert len({s.name for s in made}) == 1500
    assert sum(s.kind == "node" for s in made) == 1000 and sum(s.kind == "peer" for s in made) == 500
    by_tenant = {t: sum(s.tenant == t for s in made) for t in {s.tenant for s in made}}
    assert len(by_tenant) == 10 and set(by_tenant.values()) == {150}


def test_percentiles_are_nearest_rank_in_milliseconds():
    samples = [i * 1_000_000 for i in range(1, 101)]  # 1..100 ms
    assert percentiles(samples) == {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert percentiles([]) == {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}


@pytest.mark.parametrize(
    "argv",
    [["--nodes", "0"], ["--peers", "-1"], ["--seconds", "0"], ["--rate", "nan"], ["--state-dir", "x", "--nats-url", "nats://127.0.0.1:1"]],
)
def test_bad_options_exit_2_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        load_nodes_peers.parse_args(argv, "exoarmur bench load")
    assert raised.value.code == 2
    assert "--" in capsys.readouterr().err


class TestARunningProcess:
    """`--state-dir` and `--nats-url`: what the script takes from a running
    process's connection file or from the environment, and the coded exit
    when there is none."""

    async def found(self, argv: list[str], tmp_path: Path) -> System:
        args = load_nodes_peers.parse_args(argv, "exoarmur bench load")
        system = System(args, tmp_path, quota=1, chaos=False)
        async with AsyncExitStack() as stack:
            await system.start(stack)
        return system

    @pytest.mark.anyio
    async def test_the_state_dir_gives_nats_credentials_pid_metrics_and_ledger(self, tmp_path):
        state = tmp_path / "state"
        state.mkdir()
        (state / "connection.json").write_bytes(json.dumps(
            {"urls": ["nats://127.0.0.1:4"], "token": "s3cret", "pid": 42, "embedded": True, "http": "http://127.0.0.1:9"}
        ).encode())  # fmt: skip
        system = await self.found(["--state-dir", str(state)], tmp_path)
        assert system.urls == ("nats://127.0.0.1:4",) and system.credentials.token == "s3cret"
        assert (system.pid, system.metrics_url) == (42, "http://127.0.0.1:9/metrics")
        assert system.ledger == state / "ledger.jsonl"
        assert system.replay_target == ["--state-dir", str(state)]

    @pytest.mark.anyio
    async def test_a_nats_url_takes_its_credentials_from_the_environment(self, tmp_path, monkeypatch):
        monkeypatch.setenv("EXOARMUR_NATS_TOKEN", "t0ken")
        system = await self.found(["--nats-url", "nats://127.0.0.1:5", "--ledger", str(tmp_path / "l")], tmp_path)
        assert system.urls == ("nats://127.0.0.1:5",) and system.credentials.token == "t0ken"
        assert (system.pid, system.metrics_url, system.ledger) == (None, None, tmp_path / "l")

    @pytest.mark.anyio
    async def test_a_state_dir_without_a_running_process_exits_2_saying_so(self, tmp_path, capsys):
        with pytest.raises(SystemExit) as raised:
            await self.found(["--state-dir", str(tmp_path)], tmp_path)
        assert raised.value.code == 2
        assert "connection.json: cannot be read" in capsys.readouterr().err

    def test_chaos_against_a_running_process_is_refused(self, capsys):
        with pytest.raises(SystemExit) as raised:
            load_nodes_peers.parse_args(["--chaos", "--state-dir", "x"], "exoarmur bench load")
        assert raised.value.code == 2 and "chaos" in capsys.readouterr().err


@pytest.mark.anyio
async def test_the_ramp_bisects_the_knee_and_counts_only_nominal_steps(monkeypatch):
    """A system that holds up to 300/s: the ramp steps x1.5 until a step is
    past it, then bisects twice; capacity is the best step that held, not
    the burst a step past capacity took in."""
    from exoarmur.benchmarks import load_phases

    offered: list[float] = []

    async def phase(fleet, sampler, sources, phase, **kwargs):
        offered.append(phase.rate)
        held = phase.rate <= 300.0
        throughput = phase.rate if held else 400.0  # past it: a burst into empty queues
        return None, {"rejected_by": {} if held else {"OVERLOAD_TENANT_QUOTA": 5}, "throughput_per_s": throughput}

    monkeypatch.setattr(load_phases, "run_phase", phase)
    capacity, steps = await load_phases.ramp(
        None, None, [], start_rate=40.0, step_factor=1.5, step_seconds=1.0, interval=1.0, run="r", stream=sys.stderr,
        driving=None,
    )  # fmt: skip
    assert offered[:6] == pytest.approx([40, 60, 90, 135, 202.5, 303.75])
    assert offered[6:] == pytest.approx([(202.5 * 303.75) ** 0.5, (248.0 * 303.75) ** 0.5], rel=1e-3)
    assert [step["nominal"] for step in steps] == [True] * 5 + [False, True, True]
    assert capacity == pytest.approx(offered[-1]) and 274 < capacity <= 300
