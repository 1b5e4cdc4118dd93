import asyncio
import os

import pytest
from trio.testing import MockClock

# Every `exoarmur run` a test starts serves health and metrics on a free port,
# never the default one: tests run side by side with anything on this machine.
os.environ["EXOARMUR_HTTP__PORT"] = "0"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    if request.param == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return ("asyncio", {"debug": True, "loop_factory": asyncio.SelectorEventLoop})


@pytest.fixture
def tick(anyio_backend_name):
    """One unit of time for time-based tests: virtual on trio (MockClock), short and real on asyncio."""
    return 1.0 if anyio_backend_name == "trio" else 0.05
