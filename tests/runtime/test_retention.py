"""What a finished ask leaves behind: nothing of its message. A resolved
reply's deadline stays in the shared heap until it is due or the heap is
compacted, and asyncio keeps a cancelled timer (and the context it was made
in) until it is due: neither may keep the message, its envelope or the
asker's callback alive. Checked with reference counting alone (gc disabled):
what piles up there is what the collector would have to walk."""

from __future__ import annotations

import gc
import weakref

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, handles, message

pytestmark = pytest.mark.anyio


@message("test.kernel.retention.item")
class Item:
    n: int


@message("test.kernel.retention.start")
class Start:
    pass


class Slow(Actor):
    """Async handlers: never eager, so every ask arms its deadline."""

    @handles(Item)
    async def item(self, m: Item) -> int:
        await anyio.sleep(0)
        return m.n


class Runs(Actor):
    @handles(Item, batch=True, per_item=True, concurrent=True)
    async def items(self, batch: list[Item]) -> list[int]:
        # A timer made in the handler (a cancelled asyncio TimerHandle keeps
        # the context it was made in until it is due).
        with anyio.move_on_after(60):
            await anyio.sleep(0)
        return [m.n for m in batch]


class Asker(Actor):
    def __init__(self, *, target: str, seen: list, called: anyio.Event) -> None:
        self.target = target
        self.seen = seen
        self.called = called

    @handles(Start)
    def start(self, m: Start) -> None:
        self.context.system.lookup(self.target).ask_then(Item(7), Recorder(self.seen, self.called), timeout=60)


class Recorder:
    def __init__(self, seen: list, called: anyio.Event) -> None:
        self.seen = seen
        self.called = called

    def __call__(self, result) -> None:
        self.seen.append(result.unwrap())
        self.called.set()


@pytest.fixture
def refcounting_only():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_an_answered_ask_keeps_no_message_alive(refcounting_only):
    """(The drain's frame holds the envelope it handled last, until the next
    one or its end: the second ask is there for that.)"""
    async with ActorSystem() as system:
        ref = await system.spawn(Slow, name="slow")
        item = Item(1)
        kept = weakref.ref(item)
        assert await ref.ask(item, timeout=60) == 1
        assert await ref.ask(Item(2), timeout=60) == 2
        del item
        assert kept() is None


async def test_an_ask_then_callback_is_dropped_once_called(refcounting_only):
    seen: list = []
    called = anyio.Event()
    async with ActorSystem() as system:
        await system.spawn(Slow, name="slow")
        asker = await system.spawn(Asker, name="asker", kwargs={"target": "slow", "seen": seen, "called": called})
        await asker.tell(Start())
        with anyio.fail_after(5):
            await called.wait()
        assert seen == [7]
        recorders = [o for o in gc.get_objects() if type(o) is Recorder]
        assert recorders == []


async def test_a_batch_run_keeps_no_envelope_once_answered(refcounting_only):
    async with ActorSystem() as system:
        ref = await system.spawn(Runs, name="runs")
        items = [Item(n) for n in range(8)]
        kept = [weakref.ref(item) for item in items]
        answers: list[int] = []

        async def ask(item: Item) -> None:
            answers.append(await ref.ask(item, timeout=60))

        for run in (items, [Item(n) for n in range(8, 16)]):  # the second: see the first test
            async with anyio.create_task_group() as tg:
                for item in run:
                    tg.start_soon(ask, item)
        del items, item, run
        assert sorted(answers) == list(range(16))
        assert [k for k in kept if k() is not None] == []
