"""runtime.host: the drains' task group keeps a task group's contract on both
backends, with the backend's own spawn."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime.host import run_host

pytestmark = pytest.mark.anyio


async def test_tasks_run_and_close_cancels_them_and_waits_for_their_cleanup():
    log: list[str] = []

    async def worker(name: str) -> None:
        log.append(f"{name} started")
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # cleanup that takes time
            log.append(f"{name} cleaned up")

    async with anyio.create_task_group() as group:
        host = await group.start(run_host)
        host.start_soon(worker, "a", name="worker-a")
        host.start_soon(worker, "b")
        await anyio.sleep(0.01)
        assert sorted(log) == ["a started", "b started"]
        await host.close()
        assert sorted(log[2:]) == ["a cleaned up", "b cleaned up"]


async def test_a_task_that_raises_cancels_its_siblings_and_the_error_propagates():
    cancelled: list[str] = []

    async def sibling() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append("sibling")
            raise

    async def failing() -> None:
        await anyio.sleep(0.01)
        raise ValueError("boom")

    with pytest.raises(BaseExceptionGroup) as caught:
        async with anyio.create_task_group() as group:
            host = await group.start(run_host)
            host.start_soon(sibling)
            host.start_soon(failing)
            await anyio.sleep_forever()
    assert caught.group_contains(ValueError, match="boom")
    assert cancelled == ["sibling"]


async def test_cancelling_the_enclosing_scope_ends_the_hosted_tasks():
    ended: list[str] = []

    async def worker() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            ended.append("worker")

    with anyio.move_on_after(0.05):
        async with anyio.create_task_group() as group:
            host = await group.start(run_host)
            host.start_soon(worker)
    assert ended == ["worker"]


async def test_no_task_starts_after_close():
    async with anyio.create_task_group() as group:
        host = await group.start(run_host)
        await host.close()
        with pytest.raises(RuntimeError):
            host.start_soon(anyio.sleep, 0)


async def test_a_shielded_cleanup_under_way_completes_when_the_host_closes():
    """As NatsConnection._close_when_gone's close, running when the tree goes."""
    log: list[str] = []
    inside = anyio.Event()

    async def worker() -> None:
        with anyio.CancelScope(shield=True):
            inside.set()
            await anyio.sleep(0.2)
            log.append("cleanup done")

    async with anyio.create_task_group() as group:
        host = await group.start(run_host)
        host.start_soon(worker)
        await inside.wait()
        await host.close()
    assert log == ["cleanup done"]


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again():
    """As nats-py's drain does (`except CancelledError: pass`, then awaits)."""
    ended: list[str] = []

    async def swallower() -> None:
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            pass
        try:
            await anyio.sleep(60)
        finally:
            ended.append("cancelled again")

    async with anyio.create_task_group() as group:
        host = await group.start(run_host)
        host.start_soon(swallower)
        await anyio.sleep(0.01)
        with anyio.fail_after(5):
            await host.close()
    assert ended == ["cancelled again"]


async def test_a_task_started_while_the_host_closes_is_taken_and_cancelled():
    out: list[str] = []

    async def sibling() -> None:
        out.append("sibling ran")
        await anyio.sleep_forever()

    async def dying(host) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0)
                host.start_soon(sibling)  # a tell from a dying actor to a sibling
                out.append("spawned")

    async with anyio.create_task_group() as group:
        host = await group.start(run_host)
        host.start_soon(dying, host)
        await anyio.sleep(0.01)
        with anyio.fail_after(5):
            await host.close()
    assert out[0] == "spawned"
