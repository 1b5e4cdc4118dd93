import asyncio

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    """Real clocks: these tests talk to real nats-server processes over real
    sockets (trio's MockClock would jump past every network wait). nats-py runs
    on trio through trio-asyncio."""
    if request.param == "trio":
        return ("trio", {})
    return ("asyncio", {"debug": True, "loop_factory": asyncio.SelectorEventLoop})


@pytest.fixture(autouse=True)
async def no_task_outlives_the_test(anyio_backend_name):
    """Every test ends with no asyncio task of its own left (nats-py's tasks
    included): one left behind would otherwise surface as a hang at loop close."""
    if anyio_backend_name != "asyncio":
        yield
        return
    before = asyncio.all_tasks()
    yield
    # anyio's test runner awaits this teardown from a task of its own.
    left = [t for t in asyncio.all_tasks() - before if not t.get_coro().__qualname__.startswith("TestRunner.")]
    for task in left:
        task.cancel()
    assert [task.get_coro().__qualname__ for task in left] == []
