"""What the kernel benchmark measures with: its messages and actors, and the
constants its baselines share."""

from __future__ import annotations

from exoarmur.runtime import Actor, MessageRegistry, handles, message

__all__ = ["ADD", "GET", "STREAM_BUFFER", "TIMEOUT", "Add", "Counter", "Get", "Idle"]

STREAM_BUFFER = 1000  # the raw streams' and queues' buffer, as an actor's mailbox
# Bound on each RSS subprocess and on pykka's blocking asks.
TIMEOUT = 600.0

# A private registry: importing this module never claims names in MESSAGES.
BENCH_MESSAGES = MessageRegistry()


@message("bench.add", registry=BENCH_MESSAGES)
class Add:
    n: int


@message("bench.get", registry=BENCH_MESSAGES)
class Get:
    pass


ADD = Add(1)
GET = Get()


class Counter(Actor):
    mailbox_capacity = 1000

    def __init__(self) -> None:
        self.total = 0

    @handles(Add)
    def add(self, m: Add) -> None:
        self.total += 1

    @handles(Get)
    def get(self, m: Get) -> int:
        return self.total


class Idle(Actor):
    @handles(Get)
    def get(self, m: Get) -> int:
        return 0
