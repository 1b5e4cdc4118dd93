"""The system a load runs against: one the script starts (a nats-server of
its own, with JetStream fsyncing every write, and `exoarmur run` on it), or
one already running, found through its state directory or its NATS URL.

For a chaos run the process reaches its server through a TcpProxy (the
network flap), and the script keeps the process and the server to kill and
start again (load_chaos.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NoReturn

import orjson

from exoarmur.actors.nats import ConnectionOptions, Credentials
from exoarmur.actors.nats.credentials import CREDENTIALS, FROM_ENVIRONMENT
from exoarmur.benchmarks.intents_system import Process, running_exoarmur
from exoarmur.benchmarks.nats_baselines import running_server
from exoarmur.benchmarks.tcp_proxy import TcpProxy

__all__ = ["EXIT_USAGE", "System", "connection_file", "usage_error"]

EXIT_USAGE = 2


class System:
    """The process under load: started here, or found (state dir, NATS URL)."""

    def __init__(self, args: argparse.Namespace, root: Path, *, quota: int, chaos: bool) -> None:
        self.args, self.root, self.quota, self.chaos = args, root, quota, chaos
        self.urls: tuple[str, ...] = ()
        self.credentials = Credentials()
        self.pid: int | None = None
        self.metrics_url: str | None = args.metrics_url
        self.ledger: Path | None = args.ledger
        self.replay_target: list[str] = []
        self.facts: dict[str, Any] = {}
        # Kept for a chaos run's faults (a system the script started).
        self.process: Process | None = None
        self.server: Any = None
        self.proxy: TcpProxy | None = None

    @property
    def server_pid(self) -> int | None:
        """The nats-server's, when the script started it (for its CPU)."""
        process = getattr(self.server, "process", None)
        return getattr(process, "pid", None)

    def credentials_kwargs(self) -> dict[str, Any]:
        return ConnectionOptions(urls=self.urls).with_credentials_of(self.credentials).credential_kwargs()

    async def start(self, stack: AsyncExitStack) -> None:
        args = self.args
        if args.state_dir is None and not args.nats_url:
            await self._own(stack)
            return
        if args.state_dir is not None:
            found = connection_file(args.state_dir)
            self.urls = tuple(found["urls"])
            self.credentials = Credentials(**{name: found[name] for name in CREDENTIALS if isinstance(found.get(name), str)})
            self.pid = found.get("pid")
            self.metrics_url = self.metrics_url or (found["http"] + "/metrics" if found.get("http") else None)
            self.ledger = self.ledger or args.state_dir / "ledger.jsonl"
            self.replay_target = ["--state-dir", str(args.state_dir)]
        else:
            self.urls = tuple(args.nats_url)
            # As `exoarmur run` and its CLI take them: EXOARMUR_NATS_TOKEN, ...
            environ = {name: os.environ.get(f"EXOARMUR_NATS_{name.upper()}") for name in FROM_ENVIRONMENT}
            self.credentials = Credentials(**{name: value for name, value in environ.items() if value})
            self.replay_target = [arg for url in args.nats_url for arg in ("--nats-url", url)]
        self.facts = {"system": "a running process", "fsync": "as that process's NATS is set", "replicas": "as configured"}

    async def _own(self, stack: AsyncExitStack) -> None:
        config = self.root / "load.toml"
        config.write_text(f"[tenants.default]\nquota = {self.quota}\n")
        server = self.server = await stack.enter_async_context(running_server(self.root / "nats", sync_always=True))
        url = None
        if self.chaos:
            self.proxy = await stack.enter_async_context(TcpProxy(server.port))
            url = self.proxy.url
        process = self.process = await stack.enter_async_context(
            running_exoarmur(self.root, backend=self.args.backend, server=server, config=config, url=url)
        )
        self.urls, self.credentials = (server.url,), Credentials(token=server.token)
        self.found_again()
        self.ledger = process.state_dir / "ledger.jsonl"
        self.replay_target = ["--state-dir", str(process.state_dir)]
        self.facts = {"system": f"exoarmur run --backend {self.args.backend}, started by the script",
                      "fsync": "sync_always (every JetStream write)", "replicas": 1,
                      "tenant quota": self.quota, "link to NATS": "through a TCP proxy" if self.chaos else "direct"}  # fmt: skip


    def found_again(self) -> None:
        """The pid and health URL of the process this script started (again)."""
        assert self.process is not None
        found = connection_file(self.process.state_dir)
        self.pid = self.process.pid
        self.metrics_url = found["http"] + "/metrics" if found.get("http") else None


def connection_file(state_dir: Path) -> dict[str, Any]:
    """What a running `exoarmur run` left in its state directory (actors/app/state.py)."""
    file = state_dir / "connection.json"
    try:
        found = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        usage_error(f"{file}: cannot be read ({exc}): is `exoarmur run` running with this state directory?")
    if not isinstance(found, dict) or not isinstance(found.get("urls"), list) or not found["urls"]:
        usage_error(f"{file}: names no NATS URL")
    return found


def usage_error(message: str) -> NoReturn:
    print(f"bench load: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)
