"""A supervision tree as data: each actor's path, class, state, restarts and
mailbox, supervisors with their subtrees (for SIGUSR1 and status)."""

from __future__ import annotations

from collections.abc import Collection

import attrs

from exoarmur.runtime import ActorInfo, System
from exoarmur.supervisors.messages import Describe

__all__ = ["Node", "describe_system", "node_of"]


@attrs.frozen
class Node:
    """One actor of a supervision tree, as data (for `exoarmur status` and SIGUSR1)."""

    path: str
    actor: str
    state: str
    restarts: int
    depth: int
    capacity: int
    breaker: str | None = None
    children: tuple[Node, ...] = ()

    def render(self, *, indent: int = 0) -> str:
        """An indented tree, one actor per line."""
        breaker = f" breaker={self.breaker}" if self.breaker else ""
        line = (
            f"{'  ' * indent}{self.path} [{self.actor}] {self.state} restarts={self.restarts} "
            f"mailbox={self.depth}/{self.capacity}{breaker}"
        )
        return "\n".join([line, *(child.render(indent=indent + 1) for child in self.children)])


def node_of(info: ActorInfo, *, state: str) -> Node:
    return Node(
        path=info.path,
        actor=info.actor,
        state=state,
        restarts=info.restarts,
        depth=info.mailbox.depth,
        capacity=info.mailbox.capacity,
    )


async def describe_system(system: System, *, roots: Collection[str] | None = None) -> list[Node]:
    """Every top-level actor of `system` as a tree: supervisors with their
    subtrees; with `roots`, only those top-level actors (the rest is not
    asked at all: a tenants' subtree can hold an actor per live intent)."""
    nodes = []
    paths = system.paths()
    for path in paths:
        if "/" in path and path.rsplit("/", 1)[0] in paths:
            continue  # described by its supervisor
        if roots is not None and path not in roots:
            continue
        ref = system.lookup(path)
        if ref.accepts(Describe):
            nodes.append(await ref.ask(Describe()))
        else:
            info = system.info(path)
            nodes.append(node_of(info, state=info.state.value))
    return nodes
