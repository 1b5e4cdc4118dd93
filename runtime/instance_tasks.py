"""Tasks of an actor instance (`context.start_task`): waits that belong to no
envelope, such as a child process's exit or a client's lifetime.

Invariants: such a task runs in the actor's host (no orphan outlives the
host); it ends with its instance, cancelled when the instance crashes or is
suspended, and after its `stopping` hook; an exception in it crashes the actor
(audited once, ACTOR_CRASHED, "task <name>"), or, raised after its instance
ended, is audited and crashes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.current import CURRENT
from exoarmur.runtime.instances import alive

if TYPE_CHECKING:
    from exoarmur.runtime.contracts import Cell

__all__ = ["InstanceTasks"]


class InstanceTasks:
    """The cancel scopes of one cell's instance tasks now running (made by the first)."""

    __slots__ = ("_scopes",)

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()

    def start(self, cell: Cell, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        cell.start_soon(self._run, cell, fn, args, scope, cell.actor, name=f"{cell.path}:{fn.__name__}")

    async def _run(
        self, cell: Cell, fn: Callable[..., Any], args: tuple[Any, ...], scope: anyio.CancelScope, actor: Any
    ) -> None:
        CURRENT.set(cell.context)
        try:
            with scope:
                await fn(*args)
        except Exception as exc:
            if alive(cell, actor):
                cell.instance_dead = True
                cell.down(
                    cell.system.failure(
                        "crashed", ReasonCode.ACTOR_CRASHED, path=cell.path, detail=f"task {fn.__name__}: {exc!r}"
                    )
                )
            else:  # its instance ended already: recorded, nothing more crashes
                detail = f"task {fn.__name__} after its instance ended: {exc!r}"
                cell.system.failure("crashed", ReasonCode.ACTOR_CRASHED, path=cell.path, detail=detail)
        finally:
            self._scopes.discard(scope)

    def cancel_all(self) -> None:
        """The instance ended: every task of it is cancelled."""
        scopes, self._scopes = self._scopes, set()
        for scope in scopes:
            scope.cancel()
