"""SIGTERM while an apply is in flight: the stop's drain lets it end and
its outcome be written before the process exits (exit 0), so the next start
has nothing to reconcile; with no drain it is cut, and the next start asks
the type (`reconcile`) and finishes it. One effect either way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.actors.app.test_cli import REPO

CONFIG = """
[execution_types.unhurried]
class = "tests.integration.cli_types:Unhurried"
path = "unhurried.jsonl"
delay = 1.5
[intents]
drain = {drain}
"""


@pytest.fixture
def anyio_backend():
    """Plain tests driving subprocesses: one pass (the process under test is the same either way)."""
    return "asyncio"


def start(root: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EXOARMUR_LOG__FORMAT": "json"}
    (root / "state" / "connection.json").unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "exoarmur", "run", "--config", str(root / "exoarmur.toml"), "--state-dir", str(root / "state")],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (root / "state" / "connection.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return process


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "exoarmur", *args, "--state-dir", str(root / "state"), "--json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=root,
    )  # fmt: skip


@pytest.mark.parametrize("drain, reconciled", [(3.0, False), (0.0, True)], ids=["drained", "cut"])
def test_sigterm_mid_apply(tmp_path, drain, reconciled):
    (tmp_path / "exoarmur.toml").write_text(CONFIG.format(drain=drain))
    (tmp_path / "state").mkdir()
    log = tmp_path / "run.log"
    calls = tmp_path / "state" / "unhurried.jsonl.calls"
    process = start(tmp_path, log)
    try:
        submitted = cli(tmp_path, "intent", "submit", "--tenant", "acme", "--type", "unhurried", "--id", "slow-1")
        assert submitted.returncode == 0, submitted.stderr  # acknowledged: durable
        deadline = time.monotonic() + 30
        while not (calls.exists() and "apply" in calls.read_text()):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)  # the apply is in flight
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    process = start(tmp_path, log)
    try:
        got = cli(tmp_path, "intent", "get", "--tenant", "acme", "slow-1", "--wait", "20")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["state"] == "SUCCEEDED", got.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    lines = calls.read_text().split()
    assert ("reconcile" in lines) is reconciled, lines
    applied = [json.loads(line) for line in (tmp_path / "state" / "unhurried.jsonl").read_text().splitlines()]
    assert [(entry["intent"], entry["op"]) for entry in applied] == [("slow-1", "apply")]  # one effect
