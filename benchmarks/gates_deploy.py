"""Gate 4, minimal deployment: the README's two commands, as written, in a
fresh copy of the checkout with a fresh virtual environment each.

    1  `python3.11 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/exoarmur run`
       run as its three steps; `exoarmur run` must answer /readyz within
       NATS_CONNECT (10 s) of its start with nothing else running (its
       embedded nats-server), stop on SIGTERM with exit 0, and leave no
       process behind. Its health port is the one thing changed
       (EXOARMUR_HTTP__PORT=0): another process may hold the default.
    2  `python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/pytest`
       its install as written; then `pytest --collect-only`: every test
       module imports and the suite is collected. Running the suite is the
       CI's (`.ci/run`): it takes longer than a gates run may.

A quick run does the first command only.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import psutil

from exoarmur.benchmarks.gates_report import Gate
from exoarmur.benchmarks.sweep_runner import running
from exoarmur.runtime import TimeoutCategory, TimeoutPolicy

__all__ = ["checkout", "gate_4", "readme_commands"]

INSTALL_SECONDS = 600.0
STOP_SECONDS = 30.0
SKIP = {".git", ".venv", "build", "dist", ".exoarmur", "benchmark-results", "gates-evidence", "__pycache__",
        ".pytest_cache", ".hypothesis"}  # fmt: skip


def checkout() -> Path | None:
    """The source tree this exoarmur runs from (an editable install or a
    checkout on the path), or None when it was installed from a wheel."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "README.md").exists() else None


def readme_commands(readme: str) -> list[str]:
    """The first screen's indented commands that start with `python3.11 -m venv`."""
    return re.findall(r"^    (python3\.11 -m venv .*)$", readme, re.M)


def gate_4(evidence: Path, *, quick: bool, source: Path | None) -> Gate:
    gate = Gate(4)
    if source is None:
        gate.error = "no checkout: the README's commands install from one (run from a checkout, or --checkout DIR)"
        return gate
    commands = readme_commands((source / "README.md").read_text())
    if len(commands) < 2:
        gate.error = f"the README shows {len(commands)} of its two commands"
        return gate
    log = evidence / "gate4-commands.log"
    with tempfile.TemporaryDirectory(prefix="gates-deploy-") as tmp, log.open("w") as out:
        found = _first(Path(tmp) / "run", source, commands[0], gate, out)
        gate.figures["run"] = found
        if not quick:
            gate.figures["test"] = _second(Path(tmp) / "test", source, commands[1], gate, out)
    gate.evidence.append(log.name)
    return gate


def _copy(source: Path, to: Path) -> None:
    shutil.copytree(source, to, ignore=lambda _d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])


def _steps(command: str) -> list[list[str]]:
    return [shlex.split(step) for step in command.split(" && ")]


def _installed(root: Path, source: Path, command: str, gate: Gate, out: Any, *, name: str) -> tuple[float, list[str] | None]:
    """A fresh copy of `source` at `root`, and `command`'s steps but its
    last run there: the seconds they took, and the last step (None if a
    step failed, checked into `gate` as `name`)."""
    _copy(source, root)
    *install, last = _steps(command)
    seconds, failed = _install(install, root, out)
    gate.check(name, failed is None, failed or f"in {seconds:.1f} s", "every step exits 0")
    return seconds, None if failed else last


def _install(steps: list[list[str]], cwd: Path, out: Any) -> tuple[float, str | None]:
    """Run each step; seconds taken, or the first failure."""
    started = time.monotonic()
    for argv in steps:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        try:
            done = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return time.monotonic() - started, f"{shlex.join(argv)}: {exc}"
        if done.returncode != 0:
            return time.monotonic() - started, f"{shlex.join(argv)}: exit {done.returncode}"
    return time.monotonic() - started, None


def _first(root: Path, source: Path, command: str, gate: Gate, out: Any) -> dict[str, Any]:
    gate.ran.append(f"`{command}` in a fresh copy of the checkout (health port 0); SIGTERM once ready")
    seconds, run = _installed(root, source, command, gate, out, name="installs")
    if run is None:
        return {"install_s": round(seconds, 1)}
    ready_within = TimeoutPolicy()[TimeoutCategory.NATS_CONNECT]
    env = {**os.environ, "EXOARMUR_HTTP__PORT": "0"}
    for name in [n for n in env if n.startswith("EXOARMUR_NATS_")]:
        del env[name]  # nothing of a NATS elsewhere: the embedded one
    out.write(f"$ {shlex.join(run)}\n")
    out.flush()
    started = time.monotonic()
    process = subprocess.Popen(run, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    ready = _ready(root / ".exoarmur" / "connection.json", process, started + 60.0)
    children = _children(process.pid)
    ready_s = None if ready is None else ready - started
    process.send_signal(signal.SIGTERM)
    try:
        status: int | None = process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        status = None
        process.kill()
        process.wait()
    time.sleep(0.5)  # a child's last exit, reaped by init
    left = [child for child in children if running(child)]
    for child in left:
        child.kill()
    gate.check("ready with its embedded NATS", ready_s is not None and ready_s <= ready_within,
               "never" if ready_s is None else f"/readyz 200 after {ready_s:.2f} s",
               f"<= {ready_within:g} s (NATS_CONNECT)")  # fmt: skip
    gate.check("SIGTERM stops it", status == 0, f"exit {status}", "exit 0 within 30 s")
    gate.check("nothing left behind", not left and bool(children),
               f"{len(children)} child process(es) while running, {len(left)} left after", "0 left, >= 1 started")  # fmt: skip
    return {"install_s": round(seconds, 1), "ready_s": ready_s, "exit": status, "children": len(children), "left": len(left)}


def _ready(connection: Path, process: subprocess.Popen, deadline: float) -> float | None:
    """When /readyz answered 200 (its URL from the connection file)."""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            url = orjson.loads(connection.read_bytes())["http"] + "/readyz"
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                if answer.status == 200:
                    return time.monotonic()
        except (OSError, KeyError, TypeError, orjson.JSONDecodeError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    return None


def _children(pid: int) -> list[psutil.Process]:
    """Its processes (psutil.Process remembers each one's start time: a pid
    reused since is not taken for it)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _second(root: Path, source: Path, command: str, gate: Gate, out: Any) -> dict[str, Any]:
    gate.ran.append(f"`{command}` in a fresh copy: its install; then `.venv/bin/pytest --collect-only -q`")
    seconds, last = _installed(root, source, command, gate, out, name="the test install")
    if last is None:
        return {"install_s": round(seconds, 1)}
    done = subprocess.run([".venv/bin/pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=root,
                          capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)  # fmt: skip
    out.write(done.stdout[-3000:] + done.stderr[-3000:])
    collected = re.search(r"(\d+) tests? collected", done.stdout)
    count = int(collected.group(1)) if collected else 0
    gate.check("the suite is collected", done.returncode == 0 and count > 0,
               f"exit {done.returncode}, {count:,} tests", "exit 0, > 0 tests, no import error")  # fmt: skip
    return {"install_s": round(seconds, 1), "collected": count}
