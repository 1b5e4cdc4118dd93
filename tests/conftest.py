import asyncio

import pytest
from trio.testing import MockClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    if request.param == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return ("asyncio", {"debug": True, "loop_factory": asyncio.SelectorEventLoop})


@pytest.fixture
def tick(anyio_backend_name):
    """One unit of time for time-based tests: virtual on trio (MockClock), short and real on asyncio."""
    return 1.0 if anyio_backend_name == "trio" else 0.05
