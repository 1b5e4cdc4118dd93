"""`exoarmur gates --quick` as a user runs it: every gate measured from a
real run (processes started, SIGKILLed, restarted), its report on stdout as
JSON alone, its evidence written; and a gate without a measurement is FAIL.

Speed is not judged here: a p99 ratio, throughput held under overload and
the load's own punctuality are timing figures of a short run on a shared
machine (the suite runs beside it), so those thresholds are not held; every
other threshold of every gate is."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from exoarmur.benchmarks import PYTHON
from exoarmur.benchmarks.gates_report import NAMES, Gate, describe, markdown, table

RUN_SECONDS = 420
TIMING = {"steady's p99 with the flood", "throughput held", "the load kept up"}  # thresholds on timing figures


@pytest.mark.xdist_group("heavy")  # one at a time with the other long runs of the suite
@pytest.mark.timeout(RUN_SECONDS + 30)
def test_the_quick_form_measures_every_gate_and_writes_its_evidence(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    evidence = tmp_path / "evidence"
    done = subprocess.run(
        [sys.executable, "-m", "exoarmur", "gates", "--quick", "--json", "--evidence", str(evidence)],
        cwd=tmp_path, capture_output=True, text=True, timeout=RUN_SECONDS, env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)  # stdout is the report and nothing else
    gates = {gate["gate"]: gate for gate in report["gates"]}
    assert sorted(gates) == sorted(NAMES)
    for number, gate in gates.items():
        assert gate["error"] is None, (number, gate["error"])
        assert gate["thresholds"] and gate["ran"], number
        assert gate["result"] == ("PASS" if all(t["passed"] for t in gate["thresholds"]) else "FAIL")
        missed = [t for t in gate["thresholds"] if not t["passed"] and t["name"] not in TIMING]
        assert missed == [], number
        for name in gate["evidence"]:
            assert (evidence / name).is_file(), name
    assert (done.returncode == 0) == report["all_pass"]
    assert json.loads((evidence / "gates.json").read_text())["gates"] == report["gates"]
    assert "| 1 | durable persistence |" in (evidence / "gates.md").read_text()
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if str(scratch) in " ".join(p.info["cmdline"] or ())]
    assert leftovers == [], "a server or exoarmur process outlived the run"


def test_a_gate_without_a_measurement_fails():
    assert not Gate(3).passed
    assert not Gate(3, error="the run failed").passed
    measured = Gate(3)
    measured.check("replay --verify", True, "exit 0", "exit 0")
    assert measured.passed
    measured.check("replay time", False, "400 s", "<= 300 s")
    assert not measured.passed
    shown = table([Gate(1), measured])
    assert "nothing was measured" in shown and "FAIL  replay time: 400 s (threshold: <= 300 s)" in shown
    assert "| 1 | durable persistence | FAIL | 0 of 0 |" in markdown([Gate(1)], header={})


def test_an_error_group_is_described_by_the_errors_it_holds():
    group = ExceptionGroup("unhandled errors in a TaskGroup", [TimeoutError("no ack"), OSError("refused")])
    assert describe(group) == "TimeoutError: no ack; OSError: refused"


def test_only_the_gates_asked_for_are_run_the_others_fail_unmeasured(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "exoarmur", "gates", "--quick", "--json", "--gate", "5", "--evidence", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    gates = {gate["gate"]: gate for gate in json.loads(done.stdout)["gates"]}
    assert gates[5]["result"] == "PASS", gates[5]
    assert all(gates[n]["result"] == "FAIL" and gates[n]["error"] == "not measured in this run" for n in NAMES if n != 5)


@pytest.mark.parametrize(
    "argv",
    [["--gate", "9"], ["--gate", "abc"], ["--checkout", "/nonexistent"], ["--bogus"], ["--evidence", "/proc/gates"],
     ["--evidence", "{used}"]],  # fmt: skip
)
def test_bad_options_and_unusable_evidence_directories_exit_2(argv, tmp_path):
    """Nothing runs: a bad option, or an evidence directory that cannot be
    written or holds another run's files (runs are never mixed)."""
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "gates.json").write_text("{}")
    argv = [arg.format(used=tmp_path / "used") for arg in argv]
    done = subprocess.run([sys.executable, "-m", "exoarmur", "gates", "--json", *argv], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.strip() and "Traceback" not in done.stderr
    assert (tmp_path / "used" / "gates.json").read_text() == "{}"


def test_the_children_it_starts_import_the_installed_exoarmur_not_a_folder_in_the_working_directory(tmp_path):
    """A folder named `exoarmur` where the command runs (a checkout) is not
    imported by the processes it starts."""
    (tmp_path / "exoarmur").mkdir()
    (tmp_path / "exoarmur" / "__init__.py").write_text("")
    (tmp_path / "exoarmur" / "__main__.py").write_text("raise SystemExit(97)")
    done = subprocess.run([*PYTHON, "-m", "exoarmur", "version"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
