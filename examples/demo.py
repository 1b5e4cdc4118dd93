"""A demo tree: two small actors under a supervisor (not part of `exoarmur run`'s tree).

    [tree]
    factory = "examples.demo:build_tree"   # run from the repository root

`build_tree` spawns a one_for_one supervisor `demo` with two children,
`demo/echo` and `demo/counter`, sends each a few messages, checks the answers,
and leaves them idle (an idle actor holds no task, so nothing runs until the
process is told to stop). One option, read from
`[tree.options]`: `pings` (default 3), how many `demo.ping` asks to make.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from exoarmur.runtime import Actor, ActorSystem, InvalidInput, ReasonCode, handles, message
from exoarmur.supervisors import ChildSpec, Strategy, Supervisor, SupervisorSpec

if TYPE_CHECKING:
    from exoarmur.actors.app.config import Config

OPTIONS = ("pings",)


@message("demo.ping")
class Ping:
    text: str


@message("demo.pong")
class Pong:
    text: str


@message("demo.add")
class Add:
    amount: int


@message("demo.total")
class Total:
    pass


class Echo(Actor):
    """Answers every `demo.ping` with a `demo.pong` carrying the same text."""

    @handles(Ping)
    def ping(self, message: Ping) -> Pong:
        return Pong(text=message.text)


class Counter(Actor):
    """Adds up `demo.add` amounts; `demo.total` asks for the sum."""

    def __init__(self, *, start: int = 0) -> None:
        self.total = start

    @handles(Add)
    def add(self, message: Add) -> int:
        self.total += message.amount
        return self.total

    @handles(Total)
    def current(self, message: Total) -> int:
        return self.total


def pings_option(options: Mapping[str, Any]) -> int:
    for key in options:
        if key not in OPTIONS:
            raise InvalidInput(
                ReasonCode.CONFIG_INVALID,
                f"tree.options.{key}: unknown option of examples.demo (expected: {', '.join(OPTIONS)})",
            )
    pings = options.get("pings", 3)
    if isinstance(pings, bool) or not isinstance(pings, int) or not 0 <= pings <= 10_000:
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID, f"tree.options.pings: must be an int in 0..10000, got {pings!r}"
        )
    return pings


async def build_tree(system: ActorSystem, config: Config) -> None:
    pings = pings_option(config.tree_options)
    tree = SupervisorSpec(
        Strategy.ONE_FOR_ONE,
        children=(ChildSpec("echo", Echo), ChildSpec("counter", Counter)),
    )
    await system.spawn(Supervisor, name="demo", kwargs={"spec": tree})
    echo = system.lookup("demo/echo")
    counter = system.lookup("demo/counter")
    for n in range(pings):
        pong = await echo.ask(Ping(text=f"ping {n}"))
        if pong != Pong(text=f"ping {n}"):
            raise RuntimeError(f"demo/echo answered {pong!r} to ping {n}")
        await counter.tell(Add(amount=1))
    total = await counter.ask(Total())
    if total != pings:
        raise RuntimeError(f"demo/counter counted {total}, expected {pings}")
