"""The process's state directory (`[state] dir`, `--state-dir`; default ./.exoarmur).

    <dir>/lock             held (flock) while `exoarmur run` runs: one process per directory
    <dir>/owner            this process's owner id for intents, made once, kept across restarts
    <dir>/connection.json  mode 0600: how the CLI reaches this process's NATS
                           {"urls": [...], "token"?: ..., <credentials>, "pid": ...,
                           "embedded": bool, "http"?: health and metrics URL}
    <dir>/nats/            the embedded server's data (unless `[nats] data_dir` says otherwise)

The owner id outlives the process on purpose: a process restarted after a
crash resumes its own intents at once, without waiting for its old lease to
lapse. The lock makes that safe: two live processes never share a directory,
so never an owner id. The connection file holds secrets: it is written
readable by its user only, replaced atomically, and never printed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from exoarmur.actors.nats import Credentials
from exoarmur.actors.nats.data_lock import DataDirLock
from exoarmur.runtime import InvalidInput, ReasonCode, error_for

__all__ = ["CONNECTION_FILE", "StateDir"]

CONNECTION_FILE = "connection.json"
OWNER_FILE = "owner"


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def lock(self) -> DataDirLock:
        return DataDirLock(self.path, setting="[state] dir, --state-dir")

    def known_owner(self) -> str | None:
        """The owner id a process of this directory made, if any (never makes one)."""
        try:
            text = (self.path / OWNER_FILE).read_text().strip()
        except OSError:
            return None
        return text if _is_owner(text) else None

    def owner(self) -> str:
        """This directory's owner id (`p-` and 16 hex digits), made on first use."""
        file = self.path / OWNER_FILE
        try:
            text = file.read_text().strip()
        except FileNotFoundError:
            text = ""
        if _is_owner(text):
            return text
        owner = f"p-{secrets.token_hex(8)}"
        _write_private(file, owner.encode() + b"\n")
        return owner

    def write_connection(
        self,
        *,
        urls: tuple[str, ...],
        credentials: Mapping[str, str | None],
        embedded: bool = False,
        http: str | None = None,
    ) -> Path:
        """`embedded`: the NATS at `urls` is this process's own, and ends with it.
        `http`: where it serves health and metrics, if it does."""
        data: dict[str, Any] = {"urls": list(urls), "pid": os.getpid(), "embedded": embedded}
        if http:
            data["http"] = http
        data.update({name: value for name, value in credentials.items() if value is not None})
        file = self.path / CONNECTION_FILE
        _write_private(file, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        return file

    def remove_connection(self) -> None:
        (self.path / CONNECTION_FILE).unlink(missing_ok=True)

    def read_connection(self) -> tuple[tuple[str, ...], Credentials]:
        """The URLs and credentials a running process left; CONFIG_INVALID
        (naming the file) if there is none or it cannot be read."""
        file = self.path / CONNECTION_FILE
        try:
            data = orjson.loads(file.read_bytes())
        except FileNotFoundError:
            raise InvalidInput(
                ReasonCode.CONFIG_INVALID,
                f"{file}: no connection file: is `exoarmur run` running with this state directory? "
                "(or give --nats-url)",
            ) from None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise InvalidInput(ReasonCode.CONFIG_INVALID, f"{file}: cannot be read: {exc}") from None
        urls = data.get("urls") if isinstance(data, dict) else None
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise InvalidInput(ReasonCode.CONFIG_INVALID, f"{file}: has no list of NATS URLs")
        pid = data.get("pid")
        if data.get("embedded") is True and isinstance(pid, int) and not _alive(pid):
            raise error_for(
                ReasonCode.NATS_DISCONNECTED,
                f"{file}: the process that wrote it (pid {pid}) is not running, and its embedded NATS ended with it",
            )
        fields = {name: data[name] for name in Credentials().credentials() if isinstance(data.get(name), str)}
        return tuple(urls), Credentials(**fields)


def _is_owner(text: str) -> bool:
    return text.startswith("p-") and len(text) == 18 and all(c in "0123456789abcdef" for c in text[2:])


def _write_private(file: Path, data: bytes) -> None:
    """Write `data` to `file` readable by this user only, atomically."""
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_name(f".{file.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, file)


def _alive(pid: int) -> bool:
    """Whether a process `pid` exists (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
