"""An actor's lifecycle, declared once: its states and the transitions between them.

    RUNNING   -> SUSPENDED   a handler crashed (its parent is told), or its
                             parent winds it down to restart it with siblings
    SUSPENDED -> RUNNING     its parent resumed it: a fresh instance, same mailbox
    RUNNING | SUSPENDED -> STOPPING -> STOPPED

Anything else is a bug (`check` raises). tests/runtime/test_lifecycle.py
walks every pair of states against this table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["RUNNING", "STOPPED", "STOPPING", "SUSPENDED", "TRANSITIONS", "CellState", "check"]


class CellState(enum.Enum):
    RUNNING = "running"
    SUSPENDED = "suspended"  # crashed or wound down; its parent has not resumed it yet
    STOPPING = "stopping"
    STOPPED = "stopped"

    # Members are singletons compared by identity: object's hash (a C slot)
    # says the same as Enum's (a Python call, twice per state change).
    __hash__ = object.__hash__


TRANSITIONS: Mapping[CellState, frozenset[CellState]] = MappingProxyType(
    {
        CellState.RUNNING: frozenset({CellState.SUSPENDED, CellState.STOPPING}),
        CellState.SUSPENDED: frozenset({CellState.RUNNING, CellState.STOPPING}),
        CellState.STOPPING: frozenset({CellState.STOPPED}),
        CellState.STOPPED: frozenset(),
    }
)

# The states as module names, for the kernel's hot paths: on Python 3.11 reading
# a member off an enum class goes through EnumType.__getattr__ (0.1 µs, five
# times a global read), and the drain and the crash path read states often.
RUNNING, SUSPENDED, STOPPING, STOPPED = CellState.RUNNING, CellState.SUSPENDED, CellState.STOPPING, CellState.STOPPED


def check(path: str, state: CellState, to: CellState) -> None:
    """Raise if `state -> to` is not in the table (a bug in the kernel)."""
    if to not in TRANSITIONS[state]:
        raise RuntimeError(f"{path}: illegal transition {state} -> {to}")
