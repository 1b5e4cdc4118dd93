"""Exec a program that dies with its parent: `python -I _pdeathsig.py PPID PROG ARGS...`.

Run as a file (it imports nothing of exoarmur), so a start pays no package imports.

Linux's PR_SET_PDEATHSIG delivers SIGKILL to this process when the thread that
forked it exits, so an embedded nats-server cannot outlive an `exoarmur run`
that was itself SIGKILLed. The setting survives exec. Elsewhere the program is
just exec'd (its own process group still lets the parent stop it)."""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, program = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}")
        if os.getppid() != parent:
            sys.exit("parent died before the death signal was set")
    os.execv(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
