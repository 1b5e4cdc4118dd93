"""Several awaits at once, failing as one does.

    await together([job_a, job_b])                      # callables, awaited at once
    first, second = await ask_all([(ref_a, Get("a")), (ref_b, Get("b"))], deadline=None)

The jobs run concurrently in a task group of the caller's (structured: none
outlives the call). The first coded error (ExoarmurError) cancels the others
and is raised as itself, not wrapped in an ExceptionGroup, so a caller
handles it as it would one ask's. Anything else is a bug and propagates as
the task group raises it. `ask_all` answers in the order asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

import anyio

from exoarmur.runtime.errors import ExoarmurError
from exoarmur.runtime.ref import ActorRef

__all__ = ["ask_all", "together"]


async def together(jobs: Iterable[Callable[[], Awaitable[None]]]) -> None:
    failed: list[ExoarmurError] = []

    async def run(job: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
        try:
            await job()
        except ExoarmurError as exc:
            if not failed:
                failed.append(exc)
            scope.cancel()

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(run, job, group.cancel_scope)
    if failed:
        raise failed[0]


async def ask_all(asks: Iterable[tuple[ActorRef, Any]], *, deadline: float | None = None) -> list[Any]:
    pending = list(asks)
    answers: list[Any] = [None] * len(pending)

    async def one(index: int, ref: ActorRef, message: Any) -> None:
        answers[index] = await ref.ask(message, deadline=deadline)

    await together(partial(one, index, ref, message) for index, (ref, message) in enumerate(pending))
    return answers
