"""Tasks of an actor instance (`context.start_task`): waits that belong to no
envelope, such as a child process's exit or a client's lifetime.

Invariants: such a task runs in the actor's host (no orphan outlives the
host); it ends with its instance, cancelled when the instance crashes or is
suspended, and after its `stopping` hook; an exception in it crashes the actor
(audited once, ACTOR_CRASHED, "task <name>").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.context import CURRENT

if TYPE_CHECKING:
    from exoarmur.runtime.actor import Actor

__all__ = ["InstanceTasks"]


class InstanceTasks:
    """Mixed into ActorCell, which holds `_tasks` (the scopes of those running)."""

    __slots__ = ()

    def start_task(self, fn: Callable[..., Any], *args: Any) -> None:
        scope = anyio.CancelScope()
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(scope)
        self.start_soon(self._run_task, fn, args, scope, self.actor, name=f"{self.path}:{fn.__name__}")

    async def _run_task(self, fn: Callable[..., Any], args: tuple, scope: anyio.CancelScope, actor: Actor) -> None:
        CURRENT.set(self.context)
        try:
            with scope:
                await fn(*args)
        except Exception as exc:
            if self._alive(actor):
                self._instance_dead = True
                self._down(
                    self.system.failure(
                        "crashed", ReasonCode.ACTOR_CRASHED, path=self.path, detail=f"task {fn.__name__}: {exc!r}"
                    )
                )
        finally:
            if self._tasks is not None:
                self._tasks.discard(scope)

    def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, None
        for scope in tasks or ():
            scope.cancel()
