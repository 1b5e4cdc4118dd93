"""The README's runnable examples run as shown (each block ending in
`anyio.run(main)`), in a fresh interpreter."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
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


def test_the_five_minute_tour_works_when_pasted(tmp_path):
    """The tour's commands, verbatim but for the port, in one bash script:
    `.venv/bin/exoarmur` is this interpreter's exoarmur, the health port a
    free one. Each command's output and exit status is what the README says."""
    commands = [line[2:] for line in example("tour").splitlines() if line.startswith("$ ")]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shim = tmp_path / ".venv" / "bin" / "exoarmur"
    shim.parent.mkdir(parents=True)
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m exoarmur "$@"\n')
    shim.chmod(0o755)
    script = "".join(
        f'echo "@@ {i}"\n{command.replace("localhost:9464", f"localhost:{port}")}\necho "@@ exit $?"\n'
        for i, command in enumerate(commands)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "EXOARMUR_HTTP__PORT": str(port)}
    shell = subprocess.Popen(
        ["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = shell.communicate(timeout=240)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    found = re.findall(r"@@ (\d+)\n(.*?)@@ exit (\d+)\n", out, re.S)
    steps = {commands[int(i)]: (text, int(code)) for i, text, code in found}
    assert len(steps) == len(commands), out

    def step(prefix: str) -> tuple[str, int]:
        [match] = [value for command, value in steps.items() if command.startswith(prefix)]
        return match

    assert '"ready":true' in step("until curl")[0]
    text, code = step(".venv/bin/exoarmur intent submit --tenant acme --type ledger --id tour-1")
    assert code == 0 and "SUCCEEDED" in text, text
    assert "SUCCEEDED" in step(".venv/bin/exoarmur intent get")[0]
    text, code = step(".venv/bin/exoarmur status")
    assert code == 0 and "intents/service" in text and f"health and metrics: http://127.0.0.1:{port}" in text, text
    assert step(".venv/bin/exoarmur killswitch set")[1] == 0
    text, code = step(".venv/bin/exoarmur intent submit --tenant acme --type ledger --id tour-2")
    assert code == 3 and "KILLED" in text and "KILL_SWITCH_ACTIVE" in text, text
    assert step(".venv/bin/exoarmur killswitch clear")[1] == 0
    text, code = step(".venv/bin/exoarmur replay --verify")
    assert code == 0 and "equivalent" in text, text
    text, _ = step("curl -s")
    assert 'exoarmur_intents_total{state="SUCCEEDED"} 1.0' in text and 'exoarmur_intents_total{state="KILLED"} 1.0' in text
    assert step("kill %1")[1] == 0  # the graceful stop's exit status
    events = [json.loads(line) for line in (tmp_path / "run.log").read_text().splitlines()]
    assert events[-1]["event"] == "process.stopped" and any(e["event"] == "process.serving" for e in events)
