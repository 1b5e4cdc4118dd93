"""Messages and actors shared by the kernel tests (wire names "test.kernel.*")."""

from __future__ import annotations

import anyio

from exoarmur.runtime import Actor, ExoarmurError, TimeoutCategory, handles, message


@message("test.kernel.add")
class Add:
    n: int


@message("test.kernel.get")
class Get:
    pass


@message("test.kernel.crash")
class Crash:
    pass


@message("test.kernel.sleep", timeout=TimeoutCategory.KV_GET)
class Sleep:
    seconds: float


@message("test.kernel.uncategorised_sleep")
class PlainSleep:
    seconds: float


@message("test.kernel.forward")
class Forward:
    """Ask `target` for Get() from inside a handler, with `timeout`."""

    target: str
    timeout: float


@message("test.kernel.seen")
class Seen:
    """Return the current envelope's deadline, tenant and trace id."""


@message("test.kernel.unhandled")
class Unhandled:
    pass


class Counter(Actor):
    mailbox_capacity = 100

    def __init__(self, *, start: int = 0) -> None:
        self.total = start
        self.seen: list[int] = []

    @handles(Add)
    def add(self, message: Add) -> int:
        self.total += message.n
        self.seen.append(message.n)
        return self.total

    @handles(Get)
    def get(self, message: Get) -> int:
        return self.total

    @handles(Crash)
    def crash(self, message: Crash) -> None:
        raise ValueError("asked to crash")

    @handles(Sleep, PlainSleep)
    async def sleep(self, message: Sleep | PlainSleep) -> str:
        await anyio.sleep(message.seconds)
        return "slept"

    @handles(Seen)
    def seen_envelope(self, message: Seen) -> tuple:
        env = self.context.envelope
        return (env.deadline, env.tenant, env.trace_id, env.sender)

    @handles(Forward)
    async def forward(self, message: Forward) -> object:
        target = self.context.system.lookup(message.target)
        return await target.ask(Seen(), timeout=message.timeout)


@message("test.kernel.hold")
class Hold:
    pass


class Gate(Actor):
    """Blocks in `Hold` until `release` is set: lets a test fill the mailbox."""

    mailbox_capacity = 3

    def __init__(self, *, release: anyio.Event) -> None:
        self.release = release
        self.added: list[int] = []
        self.started_hook_ran = False
        self.stopping_hook_ran = False

    @handles(Hold)
    async def hold(self, message: Hold) -> str:
        await self.release.wait()
        return "released"

    @handles(Add)
    def add(self, message: Add) -> int:
        self.added.append(message.n)
        return len(self.added)

    @handles(Get)
    def get(self, message: Get) -> list[int]:
        return list(self.added)


async def ask_all(ref, messages, results: dict, **options) -> None:
    """Ask every message at once (a task each); results[i]: the answer to
    messages[i], or its code."""

    async def one(i, m):
        try:
            results[i] = await ref.ask(m, **options)
        except ExoarmurError as exc:
            results[i] = exc.code

    async with anyio.create_task_group() as tg:
        for i, m in enumerate(messages):
            tg.start_soon(one, i, m)


async def wait_until(predicate, *, timeout: float = 5.0) -> None:
    """Poll `predicate`, bounded by `timeout` (virtual on trio). Polls sleep a
    little, so trio's MockClock can jump while the awaited work sleeps."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.001)


async def blocked_gate(system, release: anyio.Event, *, fill: int = 3, **spawn_options):
    """A Gate at path "g" busy in Hold (until `release`), with Add(0..fill-1) queued behind it."""
    gate = await system.spawn(Gate, name="g", kwargs={"release": release}, **spawn_options)
    await gate.tell(Hold())
    await wait_until(lambda: gate.statistics().depth == 0)
    for n in range(fill):
        await gate.tell(Add(n))
    return gate


def instance_of(ref):
    """The actor instance behind a local ref, to read a test actor's own
    fields (as Akka's TestActorRef.underlyingActor)."""
    return ref._cell.actor


def cell_of(ref):
    """White-box: the kernel's cell behind a ref, for tests of the kernel's
    own mechanisms (parking, spawns, the in-flight table). Everything else
    goes through the public surface."""
    return ref._cell
