"""The one owner of an embedded server's data directory: an exclusive
`flock` on `<dir>/lock` with the owner's pid written inside. `exoarmur run`
takes it before anything starts; a `ServerProcess` takes it too when its
process does not hold it yet, so two owners never share one directory (the
second is refused with STATE_LOCKED naming the first's pid) and no process
kills a server another one owns."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from exoarmur.runtime import ExoarmurError, InvalidInput, ReasonCode, error_for

__all__ = ["LOCK_FILE", "DataDirLock", "lock_holder", "locked_error"]

LOCK_FILE = "lock"


class DataDirLock:
    """The one owner of a data directory: an exclusive `flock` on `<dir>/lock`,
    the owner's pid written inside. Held from `acquire` to `release`; the kernel
    drops the lock of a process that dies, so a crash never leaves it held."""

    def __init__(self, data_dir: Path, *, setting: str = "[nats] data_dir") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.setting = setting  # the setting that names the directory, for messages
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or STATE_LOCKED naming the pid that holds it."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise InvalidInput(
                ReasonCode.CONFIG_INVALID, f"{self.data_dir}: cannot be the data directory ({self.setting}): {exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise locked_error(self.data_dir, lock_holder(self.data_dir), setting=self.setting) from None
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go (the file stays: a waiting process may hold it open)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_holder(data_dir: Path) -> int | None:
    """The pid holding `data_dir`'s lock (0: not written yet); None if free."""
    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)  # also lets go of the shared lock taken to look
    return None


def locked_error(data_dir: Path, holder: int | None, *, setting: str = "[nats] data_dir") -> ExoarmurError:
    """STATE_LOCKED: `data_dir` has another owner, `holder` (its pid; 0 or None: unknown)."""
    who = f"pid {holder}" if holder else "another process"
    return error_for(
        ReasonCode.STATE_LOCKED,
        f"{data_dir} is in use by {who} (lock file {data_dir / LOCK_FILE}): "
        f"stop that process, or give this one another directory ({setting})",
    )
