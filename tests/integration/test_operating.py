"""`exoarmur run` as an SRE sees it, against a real nats-server that goes
away and comes back: its JSON logs say what happened and when, /readyz
follows the outage and names the cause, /metrics counts the reconnect and
the intents, and SIGTERM ends it with exit 0 and a last `process.stopped`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.actors.app.test_cli import REPO
from tests.integration.support import running_server

OUTAGE = 3.0  # seconds the server is gone


@pytest.fixture
def anyio_backend():
    """One pass: the process under test takes the backend as a parameter."""
    return "asyncio"


class Logs:
    """The JSON lines a process wrote to its stderr file so far."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    async def wait_for(self, event: str, *, timeout: float = 30.0, after: int = 0) -> dict:
        with anyio.fail_after(timeout):
            while True:
                found = [e for e in self.events()[after:] if e["event"] == event]
                if found:
                    return found[0]
                await anyio.sleep(0.05)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def ready_is(url: str, status: int, *, timeout: float = 30.0) -> dict:
    with anyio.fail_after(timeout):
        while True:
            code, body = await anyio.to_thread.run_sync(get, f"{url}/readyz")
            if code == status:
                return json.loads(body)
            await anyio.sleep(0.1)


def metrics(url: str) -> dict[str, dict]:
    _, body = get(f"{url}/metrics")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def value(families: dict, name: str, **labels: str) -> float:
    return sum(s.value for s in families[name].samples if s.name == f"{name}_total" and labels.items() <= s.labels.items())


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["asyncio", pytest.param("trio", marks=pytest.mark.slow)])
async def test_a_nats_outage_is_logged_seen_by_readyz_and_counted(tmp_path, backend):
    data = tmp_path / "nats"
    async with running_server(data) as server:
        err = tmp_path / "run.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "EXOARMUR_NATS_TOKEN": server.token, "EXOARMUR_LOG__FORMAT": "json"}
        process = subprocess.Popen(
            [sys.executable, "-m", "exoarmur", "run", "--nats-url", server.url, "--state-dir", str(tmp_path / "s"), "--backend", backend],
            stdout=subprocess.DEVNULL, stderr=err.open("wb"), env=env, cwd=tmp_path,
        )  # fmt: skip
        logs = Logs(err)
        try:
            await _through_an_outage(server, data, process, logs, env, tmp_path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    events = logs.events()
    assert events[-1]["event"] == "process.stopped"
    times = [e["time"] for e in events]
    assert times == sorted(times)  # when, in order
    assert all({"time", "level", "event", "message"} <= e.keys() for e in events)


async def _through_an_outage(server, data: Path, process: subprocess.Popen, logs: Logs, env: dict, tmp_path: Path) -> None:
    serving = await logs.wait_for("process.serving")
    http = serving["http"]
    assert serving["nats"] == server.url and server.token not in logs.path.read_text()  # no secret in the logs
    await logs.wait_for("process.running")
    await ready_is(http, 200)
    done = subprocess.run(
        [sys.executable, "-m", "exoarmur", "intent", "submit", "--tenant", "acme", "--type", "noop",
         "--wait", "20", "--json", "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    families = metrics(http)
    assert value(families, "exoarmur_intents", state="SUCCEEDED") == 1
    settle = {s.name: s.value for s in families["exoarmur_intent_settle_seconds"].samples if not s.labels.get("le")}
    assert settle["exoarmur_intent_settle_seconds_count"] == 1 and 0 < settle["exoarmur_intent_settle_seconds_sum"] < 20
    assert value(families, "exoarmur_audit_appends", chain="intents-*", result="stored") >= 2
    before = len(logs.events())

    server.kill()  # SIGKILL: the outage begins
    lost = await logs.wait_for("audit.dependency_failed", after=before)
    assert (lost["code"], lost["path"], lost["level"]) == ("NATS_DISCONNECTED", "nats/connection", "warning")
    down = await ready_is(http, 503)
    assert down["checks"]["nats"].startswith("NATS_DISCONNECTED"), down
    assert get(f"{http}/livez")[0] == 200  # alive all along
    await anyio.sleep(OUTAGE)
    await server.stop(timeout=5.0)  # reaped; its data directory's lock let go for the restart
    assert process.poll() is None, logs.path.read_text()

    async with running_server(data):  # the same port, token and storage
        back = await logs.wait_for("nats.reconnected", after=before)
        assert back["down_seconds"] >= OUTAGE and back["level"] == "info"
        await ready_is(http, 200)
        families = metrics(http)
        assert value(families, "exoarmur_nats_reconnects") >= 1
        # The system's own audit events (the outage's among them) are on this
        # process's chain of the audit stream too, not only in its logs.
        kernel = f"kernel-{serving['owner']}"
        assert value(families, "exoarmur_audit_appends", chain=kernel, result="stored") >= 1
        replay = subprocess.run(
            [sys.executable, "-m", "exoarmur", "replay", "--json", "--state-dir", str(tmp_path / "s")],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert json.loads(replay.stdout)["summary"]["other_records"] >= 1
        process.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(lambda: process.wait(timeout=30)) == 0
