"""One `exoarmur run` at a time in a state directory, started, SIGKILLed and
started again at will, as the kill sweeps (kill_sweep.py) and the gates
(gates.py) drive it; and what they read back from it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import attrs
import orjson
import psutil

from exoarmur.benchmarks import PYTHON
from exoarmur.actors.intents.faults import ENVIRONMENT
from exoarmur.benchmarks.measure import expect
from exoarmur.runtime import ActorUnavailable, BreakerOpen, DeadlineExceeded, DependencyFailed, Overloaded, error_for

__all__ = [
    "STARTUP", "TERMINAL", "Runner", "fail_closed", "free_ports", "replay_verified", "retryable", "running", "shared_config",
]  # fmt: skip

TERMINAL = {"SUCCEEDED", "FAILED", "DENIED", "EXPIRED", "KILLED", "REVERTED"}
STARTUP = 60.0
SERVER_GONE = 5.0
REPLAY_ATTEMPTS = 3
REPLAY_PAUSE = 5.0


@attrs.define
class Runner:
    """One `exoarmur run` at a time in `state_dir`, restarted at will."""

    state_dir: Path
    backend: str = "asyncio"
    args: tuple[str, ...] = ()  # e.g. --config, --nats-url
    env: dict[str, str] = attrs.Factory(dict)
    popen: subprocess.Popen | None = None
    log: Path | None = None
    kills: int = 0
    faults_hit: Counter = attrs.Factory(Counter)
    # Embedded nats-servers still alive SERVER_GONE seconds after the
    # process that started them was SIGKILLed, or killed itself (none may be).
    servers_left: list[int] = attrs.Factory(list)
    servers_looked_for: int = 0  # deaths after which its server was looked for
    server: psutil.Process | None = None  # the running process's embedded server

    def start(self, faults: str = "") -> None:
        # Health and metrics on a free port: several sweeps may run on one machine.
        env = {**os.environ, "EXOARMUR_HTTP__PORT": "0", **self.env}
        env.pop(ENVIRONMENT, None)
        if faults:
            env[ENVIRONMENT] = faults
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.state_dir.parent / f"run-{self.kills}-{time.monotonic_ns()}.log"
        (self.state_dir / "connection.json").unlink(missing_ok=True)
        with self.log.open("wb") as log:  # the child has its own copy of the descriptor
            self.popen = subprocess.Popen(
                [*PYTHON, "-m", "exoarmur", "run", "--state-dir", str(self.state_dir), "--backend", self.backend,
                 *self.args],  # fmt: skip
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + STARTUP
        while not (self.state_dir / "connection.json").exists():
            if self.popen.poll() is not None:
                raise RuntimeError(f"exoarmur run exited with {self.popen.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"exoarmur run did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        pid = self.server_pid()
        self.server = None if pid is None else _process(pid)  # found now: its pid may be reused later

    def kill(self) -> None:
        expect(self.popen is not None, "kill before start")
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.kills += 1
        self._server_gone()

    def server_pid(self) -> int | None:
        """The embedded nats-server's pid, if this process started one."""
        try:
            return int((self.state_dir / "nats" / "nats-server.pid").read_text())
        except (OSError, ValueError):
            return None

    def _server_gone(self) -> None:
        """The dead process's embedded server dies with it (PDEATHSIG); one
        still running after SERVER_GONE is counted in servers_left."""
        server, self.server = self.server, None
        if server is None:
            return
        self.servers_looked_for += 1
        deadline = time.monotonic() + SERVER_GONE
        while running(server):
            if time.monotonic() > deadline:
                self.servers_left.append(server.pid)
                return
            time.sleep(0.02)

    def stop(self) -> int:
        expect(self.popen is not None, "stop before start")
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=60)

    def signalled(self, how: str) -> None:
        """Stopped by `how`: "kill" (SIGKILL), "term" (SIGTERM: the graceful
        stop, exit 0) or "term_twice" (a second SIGTERM 20 ms later: cut
        short, exit 1; or, if the graceful stop was done by then, exit 0, or
        ended by the signal itself during the interpreter's last teardown)."""
        if how == "kill":
            self.kill()
            return
        expect(self.popen is not None, "signalled before start")
        self.popen.send_signal(signal.SIGTERM)
        if how == "term_twice":
            time.sleep(0.02)
            self.popen.send_signal(signal.SIGTERM)
        status = self.popen.wait(timeout=60)
        allowed = (0, 1, -signal.SIGTERM) if how == "term_twice" else (0,)
        expect(status in allowed, f"exit {status} after {how}: {self.log.read_text()[-2000:] if self.log else ''}")
        self.kills += 1
        self._server_gone()

    def died_by_itself(self) -> bool:
        """True once, after the process killed itself at a fault point."""
        if self.popen is None or self.popen.poll() is None:
            return False
        expect(self.popen.returncode == -signal.SIGKILL, f"exit {self.popen.returncode}: {self.log.read_text()[-2000:]}")
        self._server_gone()
        return True

    def connection(self) -> dict:
        return orjson.loads((self.state_dir / "connection.json").read_bytes())

    def kill_nats(self) -> None:
        """SIGKILL the embedded nats-server (its supervisor starts it again)."""
        pid = int((self.state_dir / "nats" / "nats-server.pid").read_text())
        os.kill(pid, signal.SIGKILL)


def fail_closed(intent: dict) -> bool:
    """KILLED at its gate because the kill switches could not be read: what
    an intent meeting a NATS outage there must end as (docs/gates.md)."""
    return intent["state"] == "KILLED" and intent["code"] == "KILL_SWITCH_ACTIVE" and "could not be read" in intent["detail"]


def replay_verified(runner: Runner) -> dict:
    """`exoarmur replay --verify --json` through the runner's state directory:
    its report (`"ok"` says whether the audit trail and KV are equivalent),
    with the exit status as `"exit"` and the runs it took as `"attempts"`.
    A replay that failed on the way (its code on stderr: the store not
    answering yet, a cluster still electing) is run again, at most
    REPLAY_ATTEMPTS in all; one that found the trail diverging never is."""
    for attempt in range(1, REPLAY_ATTEMPTS + 1):
        done = subprocess.run(
            [*PYTHON, "-m", "exoarmur", "replay", "--verify", "--json", "--state-dir", str(runner.state_dir)],
            capture_output=True,
            timeout=300,
        )
        try:
            report = orjson.loads(done.stdout)
        except orjson.JSONDecodeError:
            report = {"ok": False}
        if done.returncode == 0 or report.get("problems"):
            break
        report["problems"] = [{"kind": "failed", "message": done.stderr.decode(errors="replace")[-2000:]}]
        if attempt < REPLAY_ATTEMPTS:
            time.sleep(REPLAY_PAUSE)
    return {**report, "exit": done.returncode, "attempts": attempt}


def retryable(code: str) -> bool:
    """A refusal a client retries (submit is idempotent by id): the store or
    NATS failing or slow, a breaker open, overload, the process stopping."""
    error = error_for(code)
    return isinstance(error, DependencyFailed | DeadlineExceeded | BreakerOpen | Overloaded | ActorUnavailable)


def shared_config(root: Path, *, lease_ttl: float = 6.0, replicas: int = 1) -> Path:
    """A config for processes on one NATS: one ledger file (the effector is
    shared, as a real one is), short leases (a quick takeover) and ledger
    calls short enough for them."""
    config = root / "shared.toml"
    config.write_text(
        f"[nats]\nreplicas = {replicas}\n"
        f"[intents]\nlease_ttl = {lease_ttl}\nresume_interval = 0.5\n"
        f'[execution_types.ledger]\npath = "{root / "ledger.jsonl"}"\ntimeout = 2.0\n'
        "[execution_types.noop]\ntimeout = 2.0\n"
    )
    return config




def running(process: psutil.Process) -> bool:
    """Still running: not gone, not a zombie waiting for its reaper, and not
    another process that took its pid since (psutil checks its start time)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def free_ports(count: int) -> list[int]:
    """`count` loopback ports free right now (for a cluster's routes)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
