"""`exoarmur status` and `exoarmur version`.

    exoarmur status [--json] [--process OWNER] [--state-dir DIR | --config PATH] [--nats-url URL ...]
    exoarmur version [--json]

`status` asks a running process for its live supervision tree over NATS
(actors/app/status.py): every actor's path, class, state and restarts, its
mailbox's depth and capacity, and its breaker. The process is the one whose
state directory is given (its owner id is kept there), or `--process
OWNER`; with `--nats-url` and neither, any one process that answers. It is
found as `exoarmur intent` finds it.

Output: the process, then the tree as an indented table, for people; with
`--json`, the reply as JSON on stdout and nothing else (`{"ok": false,
"code", "detail"}` on a failure). Exit codes: 0; 1 a failure (no process
answers: NATS_NO_RESPONDERS; NATS unreachable, ...); 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
from typing import Any

import anyio
import orjson

from exoarmur.actors.app.client import Target, connected
from exoarmur.actors.app.intent_cli import add_target_options, failed, target_of
from exoarmur.actors.app.main import coded
from exoarmur.actors.app.state import StateDir
from exoarmur.actors.app.status import ANY_PROCESS, exoarmur_version, status_subject
from exoarmur.actors.nats.process import find_nats_server
from exoarmur.runtime import ExoarmurError, InvalidInput, ReasonCode

__all__ = ["add_status_commands"]

EXIT_OK = 0
REQUEST_SECONDS = 10.0
VERSION_SECONDS = 10.0
OWNER = re.compile(r"p-[0-9a-f]{16}")
COLUMNS = ("actor", "class", "state", "restarts", "mailbox", "breaker")


def add_status_commands(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="show a running process's live supervision tree",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
        allow_abbrev=False,
    )
    status.add_argument("--process", default=None, metavar="OWNER", help="the process's owner id (p-<16 hex digits>)")
    status.add_argument("--json", action="store_true", help="JSON on stdout, nothing else")
    add_target_options(status)
    status.set_defaults(command=_status)
    version = commands.add_parser(
        "version", help="show the versions of exoarmur, Python and nats-server", allow_abbrev=False
    )
    version.add_argument("--json", action="store_true", help="JSON on stdout, nothing else")
    version.set_defaults(command=_version)


def _status(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        target = target_of(args)
        return anyio.run(_ask, args, target, _subject(args, target))
    except Exception as exc:  # every failure is one coded line and an exit code
        return failed(args, coded(exc))


def _subject(args: argparse.Namespace, target: Target) -> str:
    if args.process is not None:
        if not OWNER.fullmatch(args.process):
            raise InvalidInput(ReasonCode.CONFIG_INVALID, f"--process must be p- and 16 hex digits, got {args.process!r:.80}")
        return status_subject(args.process)
    owner = StateDir(target.state_dir).known_owner()
    if owner is None and not target.urls:
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID,
            f"{target.state_dir}: no process has run with this state directory (or give --nats-url)",
        )
    return ANY_PROCESS if owner is None else status_subject(owner)


async def _ask(args: argparse.Namespace, target: Target, subject: str) -> int:
    async with connected(target) as client:
        reply = await client.request(subject, {}, timeout=REQUEST_SECONDS)
    if args.json:
        sys.stdout.write(orjson.dumps(reply).decode() + "\n")
        return EXIT_OK
    p = reply["process"]
    sys.stdout.write(
        f"process {p['owner']} ({p['name']}), pid {p['pid']}, up {p['uptime']:.0f} s, exoarmur {p['version']} "
        f"on {p['backend']}, Python {p['python']}\n"
        f"health and metrics: {p.get('http') or 'off'}\n\n"
    )
    rows = [list(COLUMNS)]
    for node in reply["tree"]:
        _rows(node, 0, rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    return EXIT_OK


def _rows(node: dict[str, Any], indent: int, rows: list[list[str]]) -> None:
    mailbox = f"{node['depth']}/{node['capacity']}"
    rows.append([f"{'  ' * indent}{node['path']}", node["actor"], node["state"], str(node["restarts"]), mailbox,
                 node["breaker"] or "-"])  # fmt: skip
    for child in node["children"]:
        _rows(child, indent + 1, rows)


def nats_server_version() -> str:
    """What the nats-server binary exoarmur would start says of itself ("unknown" if it cannot)."""
    try:
        done = subprocess.run([str(find_nats_server()), "--version"], capture_output=True, text=True,
                              timeout=VERSION_SECONDS, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired, ExoarmurError):
        return "unknown"
    return done.stdout.strip().removeprefix("nats-server: ") or "unknown"


def _version(args: argparse.Namespace, rest: list[str]) -> int:
    versions = {"exoarmur": exoarmur_version(), "python": platform.python_version(), "nats-server": nats_server_version()}
    if args.json:
        sys.stdout.write(orjson.dumps(versions).decode() + "\n")
    else:
        sys.stdout.write("".join(f"{name} {value}\n" for name, value in versions.items()))
    return EXIT_OK
