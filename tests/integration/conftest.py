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
