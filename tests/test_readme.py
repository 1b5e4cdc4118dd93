"""The README's runnable examples run as shown (each block ending in
`anyio.run(main)`), in a fresh interpreter."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S) if "anyio.run(main)" in b]


def test_there_are_examples_to_run():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("source", BLOCKS, ids=[f"example-{i}" for i in range(len(BLOCKS))])
def test_an_example_runs(source, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def example(name: str) -> str:
    """The block after `<!-- example: NAME -->` in the README."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w+\n(.*?)```", text, re.S)
    assert found, name
    return found.group(1)


def test_the_execution_type_example_runs_as_the_readme_says(tmp_path):
    """firewall.py and exoarmur.toml as shown; `exoarmur run` with them; the
    README's submit command applies the effect; a bad address ends FAILED
    with the type's own reason (exit 3)."""
    (tmp_path / "firewall.py").write_text(example("firewall.py"))
    (tmp_path / "exoarmur.toml").write_text(example("exoarmur.toml"))
    commands = [line[2:] for line in example("commands").splitlines() if line.startswith("$ ")]
    run, submit = commands[0].split(), commands[1].split()
    assert run[:4] == [".venv/bin/python", "-m", "exoarmur", "run"] and submit[0] == ".venv/bin/exoarmur"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, *run[1:-1]], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / ".exoarmur" / "connection.json").exists():
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
            time.sleep(0.05)
        cli = [sys.executable, "-m", "exoarmur", *submit[1:]]
        done = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "SUCCEEDED" in done.stdout
        assert [p.name for p in (tmp_path / "blocked").iterdir()] == ["192.0.2.7"]
        bad = [*cli[:-4], "--param", "address=../../etc", "--wait", "10"]
        refused = subprocess.run(bad, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 3, refused.stderr
        assert "BAD_ADDRESS" in refused.stdout and "FAILED" in refused.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
