"""`exoarmur run` and NATS: the embedded server by default, an existing
deployment with --nats-url, one process per data directory, no server left
behind (after a signal, a SIGKILL or a failed start), no secret printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from exoarmur.actors.app.config import parse_config_text
from exoarmur.actors.app.main import run
from exoarmur.actors.nats.server import EmbeddedNatsServer
from exoarmur.supervisors import ChildSpec, Strategy, Supervisor, SupervisorSpec
from tests.integration.test_nats_server import alive
from tests.actors.app.test_cli import EXIT_TIMEOUT, REPO, STARTUP_TIMEOUT, Process, start  # noqa: F401 - fixture

SERVER_DATA = Path(".exoarmur/nats")
STATE = Path(".exoarmur")
RUNNING = "exoarmur: running ("  # the default tree; its size is pinned in tests/actors/app/test_tree.py


def server_pid(cwd: Path) -> int:
    return int((cwd / SERVER_DATA / "nats-server.pid").read_text())


def healthy(data_dir: Path) -> bool:
    """The server of `data_dir` answers its JetStream health check."""
    port = json.loads((data_dir / "ports.json").read_text())["monitoring"]
    url = f"http://127.0.0.1:{port}/healthz?js-enabled-only=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_starts_the_embedded_server_and_stops_it(tmp_path, start, backend):
    process = start(["run", "--backend", backend])
    process.wait_for(RUNNING, timeout=STARTUP_TIMEOUT)
    pid = server_pid(tmp_path)
    assert alive(pid)
    token = (tmp_path / SERVER_DATA / "token").read_text().strip()
    process.popen.send_signal(signal.SIGTERM)
    code, err = process.finish(timeout=EXIT_TIMEOUT)
    assert code == 0, err
    assert not alive(pid)
    assert token not in err


def test_a_second_run_in_the_same_directory_is_refused_and_the_first_keeps_its_server(tmp_path, start):
    """The data directory has one owner: a second `exoarmur run` there exits
    with STATE_LOCKED naming the first's pid, before starting anything, and
    the first's server runs on (the same pid, healthy)."""
    first = start(["run"])
    first.wait_for(RUNNING, timeout=STARTUP_TIMEOUT)
    pid = server_pid(tmp_path)
    second = start(["run"], log_format="json")
    second.wait_for('"event":"process.fatal"', timeout=STARTUP_TIMEOUT)
    code, err = second.finish(timeout=EXIT_TIMEOUT)
    assert code == 1, err
    state = (tmp_path / STATE).resolve()
    [line] = err.splitlines()  # one event, nothing else
    event = json.loads(line)
    assert (event["level"], event["code"]) == ("error", "STATE_LOCKED")
    assert event["message"] == (
        f"fatal: STATE_LOCKED: {state} is in use by pid {first.popen.pid} (lock file {state / 'lock'}): "
        "stop that process, or give this one another directory ([state] dir, --state-dir)"
    )
    assert server_pid(tmp_path) == pid and alive(pid) and healthy(tmp_path / SERVER_DATA)
    first.popen.send_signal(signal.SIGTERM)
    code, err = first.finish(timeout=EXIT_TIMEOUT)
    assert code == 0, err
    assert "restart" not in err and not alive(pid)


async def server_then_failure(system, config) -> None:
    """A tree whose later step fails after its embedded server has started."""
    spec = SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        children=(ChildSpec("server", EmbeddedNatsServer, kwargs={"data_dir": config.nats.data_dir}),),
    )
    await system.spawn(Supervisor, name="nats", kwargs={"spec": spec})
    raise RuntimeError("a later step failed")


@pytest.mark.anyio
async def test_a_failed_start_stops_the_started_server_gracefully_and_reaps_it(tmp_path, capsys):
    """The build fails after the server started: the server gets its graceful
    stop (SIGTERM: its log says it exited) and is reaped (no zombie, no orphan)."""
    config = parse_config_text(
        f'[state]\ndir = "state"\n[nats]\ndata_dir = "nats"\n[tree]\nfactory = "{__name__}:server_then_failure"\n',
        source="test",
        base_dir=tmp_path,
    )
    assert await run(config) == 1
    assert "FATAL: tree factory" in capsys.readouterr().err
    pid = int((tmp_path / "nats" / "nats-server.pid").read_text())
    assert not Path(f"/proc/{pid}").exists()  # neither running nor a zombie of this process
    assert "Server Exiting" in (tmp_path / "nats" / "nats-server.log").read_text()


def test_no_server_outlives_a_sigkilled_main_process(tmp_path, start):
    process = start(["run"])
    process.wait_for(RUNNING, timeout=STARTUP_TIMEOUT)
    pid = server_pid(tmp_path)
    process.popen.send_signal(signal.SIGKILL)
    process.popen.wait(EXIT_TIMEOUT)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid)


def test_nats_url_joins_an_existing_server_instead(tmp_path, start, monkeypatch):
    """A second process given --nats-url (token from the environment) starts no
    server of its own and runs against the first one's."""
    first = start(["run"])  # an exoarmur with its embedded server stands in for a deployment
    first.wait_for(RUNNING, timeout=STARTUP_TIMEOUT)
    data = tmp_path / SERVER_DATA
    url = f"nats://127.0.0.1:{json.loads((data / 'ports.json').read_text())['client']}"
    token = (data / "token").read_text().strip()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("EXOARMUR_NATS_TOKEN", token)
    second = Process(["run", "--nats-url", url], cwd=elsewhere)
    try:
        second.wait_for(RUNNING, timeout=STARTUP_TIMEOUT)  # no nats/server
        assert not (elsewhere / SERVER_DATA).exists()
        second.popen.send_signal(signal.SIGTERM)
        code, err = second.finish(timeout=EXIT_TIMEOUT)
        assert code == 0, err
        assert token not in err
    finally:
        second.kill()
    first.popen.send_signal(signal.SIGTERM)
    assert first.finish(timeout=EXIT_TIMEOUT)[0] == 0


def test_an_unreachable_nats_url_is_a_coded_failure_not_a_hang(tmp_path, start):
    config = tmp_path / "exoarmur.toml"
    config.write_text("[timeouts]\nnats_connect = 1.0\n")
    began = time.monotonic()
    process = start(["run", "--config", str(config), "--nats-url", "nats://127.0.0.1:1"])
    code, err = process.finish(timeout=EXIT_TIMEOUT + 10)
    assert code == 1, err
    assert "TIMEOUT_NATS_CONNECT" in err
    assert time.monotonic() - began < 10


def test_a_bad_nats_url_is_config_invalid(tmp_path, start):
    process = start(["run", "--nats-url", "http://127.0.0.1:4222"])
    code, err = process.finish(timeout=EXIT_TIMEOUT)
    assert code == 2 and "CONFIG_INVALID" in err and "--nats-url" in err


def test_config_never_prints_a_secret(tmp_path):
    config = tmp_path / "exoarmur.toml"
    config.write_text('[nats]\nurls = ["nats://127.0.0.1:4333"]\ntoken = "s3cret-token-xyz"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for fmt in ("toml", "json"):
        done = subprocess.run(
            [sys.executable, "-m", "exoarmur", "config", "--config", str(config), "--format", fmt],
            capture_output=True, env=env, timeout=EXIT_TIMEOUT, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert b"s3cret-token-xyz" not in done.stdout + done.stderr
        assert b"***" in done.stdout
