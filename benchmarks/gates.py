"""`exoarmur gates`: one reality run that computes gates 1-8 from what it
measures. No gate is asserted: each is PASS only when every one of its
thresholds was measured and met, and FAIL otherwise (a run that failed, or
measured nothing, included).

    exoarmur gates                      # the default form: at most 10 minutes on 2 cores
    exoarmur gates --quick              # a short form (the test suite runs it)
    exoarmur gates --json               # the report on stdout, nothing else there
    exoarmur gates --evidence DIR       # where the evidence goes

What runs, in order (each module says how it measures):

    gate 4      the README's two commands in fresh copies     gates_deploy.py
    gate 2      kill sweeps, asyncio and trio                 gates_sweeps.py
    gate 5      kill switches: tenant, global, unreadable     gates_switches.py
    gate 6      a flooding tenant beside a steady one         gates_tenants.py
    gates 8 7 3 the load: overload, chaos, replay             gates_load.py
      and 1     records and audit read back around a NATS SIGKILL,
                then a 3-node cluster with a node SIGKILLed   gates_sweeps.py

The evidence directory (default ./gates-evidence/<UTC time>/) gets
gates.json (the report), gates.md (the same for people) and each step's
own files, named in the report. Progress goes to stderr.

Exit status: 0 every gate PASS; 1 a gate FAIL (each named on stderr); 2 bad
usage, or an evidence directory that is not empty or not writable.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs
import orjson

from exoarmur.benchmarks.gates_deploy import checkout, gate_4
from exoarmur.benchmarks.gates_load import load_gates
from exoarmur.benchmarks.gates_report import NAMES, Gate, describe, markdown, table
from exoarmur.benchmarks.gates_sweeps import SweepShape, cluster_sweep, gate_2
from exoarmur.benchmarks.gates_switches import gate_5
from exoarmur.benchmarks.gates_tenants import gate_6, params_for
from exoarmur.benchmarks.load_nodes_peers import FULL, QUICK, Shape, environment
from exoarmur.benchmarks.report import HelpFormatter, machine_info

__all__ = ["main"]

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EVIDENCE_DIR = "gates-evidence"
SEED = 1


@attrs.frozen(kw_only=True)
class Form:
    sweeps: SweepShape
    switches_per: int  # intents per tenant and phase
    switches_midway: int  # intents of the sweep with the switch set midway (0: none)
    load: Shape
    tenants_quick: bool


DEFAULT = Form(
    sweeps=SweepShape(count=300, kills=5, tenants=4, trio_count=120, cluster_count=120),
    switches_per=20,
    switches_midway=200,
    load=attrs.evolve(FULL, seconds=45.0, step_seconds=6.0, chaos_gap=8.0),
    tenants_quick=False,
)
QUICK_FORM = Form(
    sweeps=SweepShape(count=40, kills=1, tenants=2, trio_count=0, cluster_count=30),
    switches_per=5,
    switches_midway=0,
    load=attrs.evolve(QUICK, seconds=4.0, chaos_gap=5.0),  # long enough for the slow consumer to reach its bound
    tenants_quick=True,
)


def parse_args(argv: list[str] | None, prog: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m exoarmur.benchmarks.gates",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=HelpFormatter,
        epilog="exit status: 0 every gate PASS, 1 a gate FAIL (named on stderr), 2 bad usage",
    )
    parser.add_argument("--quick", action="store_true", help="the short form: fewer intents, shorter phases, only the "
                        "README's first command (a quick run's PASS is a quick run's)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout, nothing else there")
    parser.add_argument("--evidence", type=Path, metavar="DIR", help=f"the evidence here (default ./{EVIDENCE_DIR}/<UTC time>/)")
    parser.add_argument("--checkout", type=Path, metavar="DIR",
                        help="the checkout whose README gate 4 follows (default: the one exoarmur runs from)")  # fmt: skip
    parser.add_argument("--gate", type=int, action="append", choices=sorted(NAMES), metavar="N",
                        help="run only these gates (repeatable); the others are FAIL: not measured")  # fmt: skip
    args = parser.parse_args(argv)
    if args.checkout is not None and not (args.checkout / "README.md").is_file():
        parser.error(f"--checkout {args.checkout}: no README.md there")
    return args


def say(line: str) -> None:
    print(f"[gates] {line}", file=sys.stderr, flush=True)


def said(gate: Gate) -> None:
    why = gate.error or next((f"{t.name}: {t.measured}" for t in gate.thresholds if not t.passed), "")
    say(f"gate {gate.number}: {'PASS' if gate.passed else 'FAIL'}" + (f" ({why})" if why else ""))


def run_gates(args: argparse.Namespace, form: Form, evidence: Path, root: Path) -> dict[int, Gate]:
    chosen = set(args.gate or NAMES)
    gates: dict[int, Gate] = {}

    def step(numbers: tuple[int, ...], what: str, run: Callable[[], Gate | list[Gate]]) -> None:
        """Run a step that measures `numbers`; keep the gates asked for."""
        if not chosen & set(numbers):
            return
        say(f"gate {', '.join(map(str, numbers))}: {what}")
        started = time.monotonic()
        try:
            found = run()
        except Exception as exc:  # a step that broke measured nothing: its gates FAIL with why, the others run
            found = [Gate(n, error=describe(exc)) for n in numbers]
        for gate in found if isinstance(found, list) else [found]:
            if gate.number in chosen:
                gate.seconds += time.monotonic() - started
                gates[gate.number] = gate
                said(gate)

    source = args.checkout or checkout()
    step((4,), "the README's commands in fresh virtual environments",
         lambda: gate_4(evidence, quick=args.quick, source=source))  # fmt: skip
    step((2,), "kill sweeps", lambda: gate_2(evidence, root, form.sweeps, seed=SEED))
    step((5,), "kill switches", lambda: gate_5(evidence, root, per=form.switches_per, midway=form.switches_midway))
    step((6,), "tenant isolation", lambda: gate_6(evidence, root, params_for(quick=form.tenants_quick), backend="asyncio"))
    step((8, 7, 3, 1), f"the load ({form.load.nodes:,} nodes, {form.load.peers:,} peers): ramp, overload, chaos, replay",
         lambda: load_gates(evidence, root, form.load, backend="asyncio"))  # fmt: skip
    if 1 in gates:  # its one-server half measured with the load: the cluster half joins it
        step((1,), "a 3-node cluster, a node SIGKILLed",
             lambda: cluster_sweep(gates.pop(1), evidence, root, form.sweeps, seed=SEED))  # fmt: skip
    for number in NAMES:
        if number not in gates:
            gates[number] = Gate(number, error="not measured in this run")
    return dict(sorted(gates.items()))


def unusable(evidence: Path) -> str | None:
    """Why `evidence` cannot take this run's files (None: it can): it must
    be new or empty (one run's evidence, never two mixed) and writable."""
    try:
        evidence.mkdir(parents=True, exist_ok=True)
        if any(evidence.iterdir()):
            return "not empty (another run's evidence?): give a new one"
        probe = evidence / ".written"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    evidence = args.evidence or Path(EVIDENCE_DIR) / stamp
    problem = unusable(evidence)
    if problem:
        print(f"gates: evidence directory {evidence}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    form = QUICK_FORM if args.quick else DEFAULT
    started = time.monotonic()
    stdout = os.dup(1)
    if args.json:  # whatever a step or a child process prints goes to stderr: stdout is the report's
        sys.stdout.flush()
        os.dup2(2, 1)
    try:
        with tempfile.TemporaryDirectory(prefix="exoarmur-gates-", ignore_cleanup_errors=True) as tmp:
            gates = run_gates(args, form, evidence, Path(tmp))
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    failing = [gate for gate in gates.values() if not gate.passed]
    found = environment()
    header = {
        "when": stamp,
        "form": "quick" if args.quick else "default",
        "seconds": round(time.monotonic() - started, 1),
        "machine": f"{os.cpu_count()} cores, {found['memory']}, {sys.platform}, Python {sys.version.split()[0]}",
        "passed": f"{len(gates) - len(failing)} of {len(gates)}",
    }
    report = {
        **header,
        "environment": found,
        "machine_info": machine_info(args.quick),
        "all_pass": not failing,
        "gates": [gate.as_json() for gate in gates.values()],
        "evidence": str(evidence.resolve()),
    }
    (evidence / "gates.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str))
    (evidence / "gates.md").write_text(markdown(list(gates.values()), header=header))
    if args.json:
        sys.stdout.write(orjson.dumps(report, default=str).decode() + "\n")
    else:
        print(table(list(gates.values())))
        print(f"\nevidence: {evidence.resolve()}")
    for gate in failing:
        print(f"gates: gate {gate.number} ({gate.name}) FAIL", file=sys.stderr)
    return EXIT_FAIL if failing else EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
