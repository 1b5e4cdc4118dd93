"""The `exoarmur` command and the main process: help, `run` in process (both
backends) and as a real process stopped by SIGTERM and SIGINT, with exit codes
and the coded fatal line. (`config` and `bench`: test_commands.py.)"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import exoarmur.actors.app.main
from exoarmur.runtime import Actor, AuditEvent, ReasonCode, read_jsonl
from exoarmur.actors.app.cli import main
from exoarmur.actors.app.config import Config, parse_config_text
from exoarmur.actors.app.main import coded, load_factory, run

REPO = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT = 20.0  # seconds for a fresh interpreter to print its running line
EXIT_TIMEOUT = 15.0  # seconds for it to exit once signalled

# ---- trees the in-process tests load by dotted path ------------------------------


class Idle(Actor):
    pass


class SlowToStop(Actor):
    """Its `stopping` hook records when it began, then ignores cancellation for a while."""

    async def stopping(self) -> None:
        context = self.context
        context.system.audit.emit(
            AuditEvent(kind="test.stopping", code=ReasonCode.SHUTTING_DOWN, at=context.now())
        )
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.6)


class LongToStop(Actor):
    """Its `stopping` hook takes a minute unless it is cancelled."""

    async def stopping(self) -> None:
        await anyio.sleep(60)


async def long_to_stop_tree(system, config) -> None:
    await system.spawn(LongToStop, name="long/one")


async def idle_tree(system, config) -> None:
    await system.spawn(Idle, name="idle/one")


async def raising_tree(system, config) -> None:
    await system.spawn(Idle, name="idle/one")
    raise RuntimeError("tree is broken")


async def name_taken_tree(system, config) -> None:
    await system.spawn(Idle, name="idle/one")
    await system.spawn(Idle, name="idle/one")


def sync_tree(system, config) -> None:
    pass


async def slow_to_stop_tree(system, config) -> None:
    await system.spawn(SlowToStop, name="slow/one")


async def slow_to_stop_then_failing_tree(system, config) -> None:
    await system.spawn(SlowToStop, name="slow/one")
    raise RuntimeError("a later step failed")


def config_for(tmp_path: Path, factory: str, *, extra: str = "") -> Config:
    """Audit, data and the state directory (which `run` locks) under
    tmp_path, not the working directory (tests run side by side); logs as
    text (JSON lines: test_logs.py)."""
    text = (
        f'[audit]\npath = "audit.jsonl"\n[nats]\ndata_dir = "data"\n[state]\ndir = "state"\n[log]\nformat = "text"\n'
        f'[tree]\nfactory = "{factory}"\n{extra}'
    )
    return parse_config_text(text, source="test", base_dir=tmp_path)


FROZEN: list[int] = []  # gc.get_freeze_count() once each run was ready


async def run_until_signalled(config: Config) -> tuple[int, bool]:
    """Run in this process; once it is running, SIGTERM ourselves. (exit code, was ready)."""
    ready = anyio.Event()
    codes: list[int] = []

    async def go() -> None:
        try:
            codes.append(await run(config, ready=ready))
        finally:
            ready.set()  # also wakes the waiter below when run ends before running

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(go)
            await ready.wait()
            was_ready = not codes
            FROZEN.append(gc.get_freeze_count())
            if was_ready:
                # The receiver is open while running: this is a stop request, not a kill.
                os.kill(os.getpid(), signal.SIGTERM)
    return codes[0], was_ready


# ---- help and usage ------------------------------------------------------------------


class TestHelp:
    @pytest.mark.parametrize(
        "argv",
        [
            ["--help"],
            ["run", "--help"],
            ["config", "--help"],
            ["bench", "--help"],
            ["bench", "kernel", "--help"],
            ["bench", "supervision", "--help"],
        ],
        ids=lambda argv: " ".join(argv),
    )
    def test_help_exits_zero(self, argv, capsys):
        """--help works on the command and on every subcommand."""
        assert main(argv) == 0
        assert "usage: exoarmur" in capsys.readouterr().out

    def test_no_command_is_a_usage_error(self, capsys):
        """Without a command the exit code is 2 and the usage is printed."""
        assert main([]) == 2
        assert "usage: exoarmur" in capsys.readouterr().err

    def test_unknown_option_is_a_usage_error(self, capsys):
        """An option `run` does not know is refused, not passed anywhere."""
        assert main(["run", "--frobnicate"]) == 2
        assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err

    def test_python_dash_m_runtime_help(self):
        """`python -m exoarmur --help` is the same command, as a real process."""
        done = subprocess.run(
            [sys.executable, "-m", "exoarmur", "--help"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0
        assert b"usage: exoarmur" in done.stdout


# ---- run, in this process ------------------------------------------------------------------


class TestRun:
    @pytest.mark.anyio
    async def test_runs_until_signalled_then_exits_zero(self, tmp_path, capsys):
        """The demo tree runs; SIGTERM stops it gracefully; the exit code is 0."""
        code, was_ready = await run_until_signalled(config_for(tmp_path, "examples.demo:build_tree"))
        assert (code, was_ready) == (0, True)
        err = capsys.readouterr().err
        assert f"exoarmur: running (3 actors) — pid {os.getpid()}" in err
        assert "exoarmur: stopping (SIGTERM)" in err
        assert list(read_jsonl(tmp_path / "audit.jsonl")) == []  # nothing failed

    @pytest.mark.anyio
    async def test_what_the_tree_built_is_out_of_the_collectors_sight_while_it_runs(self, tmp_path):
        """gc.freeze() once the tree is built, so a full collection scans only
        what came after (docs/benchmarks.md, tenants: its pauses were the
        latency tail under a flood); unfrozen once the tree has stopped."""
        assert gc.get_freeze_count() == 0
        code, was_ready = await run_until_signalled(config_for(tmp_path, "examples.demo:build_tree"))
        assert (code, was_ready) == (0, True)
        assert FROZEN[-1] > 1000 and gc.get_freeze_count() == 0

    @pytest.mark.anyio
    async def test_a_second_signal_cuts_the_graceful_stop_short(self, tmp_path, capsys):
        """SIGTERM starts the graceful stop (here, a minute long); a second one
        cancels what is left at once: SHUTTING_DOWN, exit 1."""
        config = config_for(tmp_path, f"{__name__}:long_to_stop_tree", extra="[system]\nstop_timeout = 120.0\n")
        ready = anyio.Event()
        codes: list[int] = []

        async def go() -> None:
            codes.append(await run(config, ready=ready))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(go)
                await ready.wait()
                os.kill(os.getpid(), signal.SIGTERM)
                await anyio.sleep(0.5)
                assert codes == []  # still stopping gracefully
                started = anyio.current_time()
                os.kill(os.getpid(), signal.SIGTERM)
        assert codes == [1] and anyio.current_time() - started < 5
        err = capsys.readouterr().err
        assert "exoarmur: stopping now (SIGTERM again)" in err and "fatal: SHUTTING_DOWN" in err

    @pytest.mark.anyio
    async def test_factory_exception_is_fatal_exit_1(self, tmp_path, capsys):
        """Any exception from the factory: FATAL line, its traceback, one audit event, exit 1."""
        config = config_for(tmp_path, f"{__name__}:raising_tree")
        code, was_ready = await run_until_signalled(config)
        assert (code, was_ready) == (1, False)
        err = capsys.readouterr().err
        assert "RuntimeError: tree is broken" in err.split("exoarmur: fatal:")[0]  # traceback first
        assert f"exoarmur: fatal: FATAL: tree factory {__name__}:raising_tree: RuntimeError: tree is broken" in err.rstrip().splitlines()[-1]
        events = list(read_jsonl(tmp_path / "audit.jsonl"))
        assert [(e.kind, e.code) for e in events] == [("fatal", ReasonCode.FATAL)]

    @pytest.mark.anyio
    async def test_coded_error_from_the_system_keeps_its_code(self, tmp_path, capsys):
        """An ExoarmurError out of the factory is printed with its own code; exit 1."""
        code, _ = await run_until_signalled(config_for(tmp_path, f"{__name__}:name_taken_tree"))
        assert code == 1
        assert "exoarmur: fatal: ACTOR_NAME_TAKEN: idle/one" in capsys.readouterr().err

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("factory", "detail"),
        [
            ("no_such_module_xyz:build", "cannot import no_such_module_xyz"),
            (f"{__name__}:absent_tree", f"{__name__} has no absent_tree"),
            (f"{__name__}:sync_tree", "must be an async function"),
        ],
    )
    async def test_unloadable_factory_is_config_invalid_exit_2(self, tmp_path, capsys, factory, detail):
        """A factory that cannot be imported, found, or awaited: CONFIG_INVALID, exit 2."""
        code, _ = await run_until_signalled(config_for(tmp_path, factory))
        assert code == 2
        err = capsys.readouterr().err
        assert "exoarmur: fatal: CONFIG_INVALID: tree.factory" in err
        assert detail in err

    @pytest.mark.anyio
    async def test_demo_rejects_unknown_options(self, tmp_path, capsys):
        """The demo tree checks its [tree.options]: a typo is CONFIG_INVALID, exit 2."""
        config = config_for(tmp_path, "examples.demo:build_tree", extra="[tree.options]\npigns = 3\n")
        code, _ = await run_until_signalled(config)
        assert code == 2
        assert "CONFIG_INVALID: tree.options.pigns: unknown option" in capsys.readouterr().err

    @pytest.mark.anyio
    async def test_overlong_graceful_stop_is_cancelled_with_a_code(self, tmp_path, capsys, monkeypatch):
        """A stop still running after stop_timeout + margin is given up: DEADLINE_EXCEEDED, exit 1."""
        monkeypatch.setattr(exoarmur.actors.app.main, "PROCESS_STOP_OVERRUN", 0.2)
        config = config_for(
            tmp_path, f"{__name__}:slow_to_stop_tree", extra="[system]\nstop_timeout = 0.1\n"
        )
        code, was_ready = await run_until_signalled(config)
        assert (code, was_ready) == (1, True)
        assert (
            "exoarmur: fatal: DEADLINE_EXCEEDED: graceful stop still running after 0.3 s"
            in capsys.readouterr().err
        )
        events = {e.kind: e for e in read_jsonl(tmp_path / "audit.jsonl")}
        assert events["fatal"].code is ReasonCode.DEADLINE_EXCEEDED
        # Given up at the limit, not when the stubborn hook finished (0.6 s).
        assert 0.25 <= events["fatal"].at - events["test.stopping"].at < 0.5


    @pytest.mark.anyio
    async def test_a_failed_build_stops_what_it_started_gracefully_first(self, tmp_path, capsys, monkeypatch):
        """The factory fails after spawning: what it spawned gets the graceful
        stop (its `stopping` hook runs) before the failure is reported; a stop
        that overruns says so, and the build's failure stays the exit's reason."""
        monkeypatch.setattr(exoarmur.actors.app.main, "PROCESS_STOP_OVERRUN", 0.2)
        factory = f"{__name__}:slow_to_stop_then_failing_tree"
        config = config_for(tmp_path, factory, extra="[system]\nstop_timeout = 0.1\n")
        code, was_ready = await run_until_signalled(config)
        assert (code, was_ready) == (1, False)
        err = capsys.readouterr().err
        assert "exoarmur: stopping after the failure: DEADLINE_EXCEEDED: graceful stop still running after 0.3 s" in err
        assert f"exoarmur: fatal: FATAL: tree factory {factory}: RuntimeError: a later step failed" in err.rstrip().splitlines()[-1]
        events = [(e.kind, e.code) for e in read_jsonl(tmp_path / "audit.jsonl")]
        assert events == [
            ("fatal", ReasonCode.FATAL),
            ("test.stopping", ReasonCode.SHUTTING_DOWN),
            ("fatal", ReasonCode.DEADLINE_EXCEEDED),
        ]


class TestCoded:
    def test_error_inside_nested_groups_is_found(self):
        """Task groups wrap what their body raises; the coded error inside is reported."""
        from exoarmur.runtime import ActorCrashed

        crash = ActorCrashed(ReasonCode.ACTOR_CRASHED, "x")
        wrapped = ExceptionGroup("outer", [ValueError("v"), ExceptionGroup("inner", [crash])])
        assert coded(wrapped) is crash

    def test_uncoded_error_becomes_fatal_caused_by_it(self):
        """Anything else becomes FATAL with the original as its cause."""
        boom = KeyError("k")
        error = coded(ExceptionGroup("g", [boom]))
        assert error.code is ReasonCode.FATAL
        assert error.__cause__ is boom

    def test_load_factory_returns_the_function(self):
        """A good dotted path loads the async function itself."""
        assert load_factory(f"{__name__}:idle_tree") is idle_tree


# ---- run, as a real process -----------------------------------------------------------------


class Process:
    """`python -m exoarmur ARGS` with the repository (and `extra_path`) importable."""

    def __init__(
        self, args: list[str], *, cwd: Path, extra_path: tuple[Path, ...] = (), log_format: str = "text"
    ) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(map(str, (REPO, *extra_path))),
            "EXOARMUR_LOG__FORMAT": log_format,  # stderr is a pipe: JSON unless told
        }
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "exoarmur", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.err = b""

    def wait_for(self, needle: str, *, timeout: float) -> None:
        """Read stderr until `needle` appears (bounded); fail if the process exits first."""
        deadline = time.monotonic() + timeout
        fd = self.popen.stderr.fileno()  # type: ignore[union-attr]
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while needle.encode() not in self.err:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no {needle!r} within {timeout} s; stderr: {self.err!r}")
                if selector.select(remaining):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        pytest.fail(f"exited before {needle!r}; stderr: {self.err!r}")
                    self.err += chunk

    def finish(self, *, timeout: float) -> tuple[int, str]:
        """Exit code and the whole of stderr (bounded)."""
        _, rest = self.popen.communicate(timeout=timeout)
        return self.popen.returncode, (self.err + rest).decode()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.communicate(timeout=EXIT_TIMEOUT)


@pytest.fixture
def start(tmp_path):
    started: list[Process] = []

    def start(args: list[str], *, extra_path: tuple[Path, ...] = (), log_format: str = "text") -> Process:
        process = Process(args, cwd=tmp_path, extra_path=extra_path, log_format=log_format)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def write_config(tmp_path: Path, factory: str = "examples.demo:build_tree", extra: str = "") -> Path:
    path = tmp_path / "exoarmur.toml"
    path.write_text(
        f'[audit]\npath = "{tmp_path / "audit.jsonl"}"\n[tree]\nfactory = "{factory}"\n{extra}',
        encoding="utf-8",
    )
    return path


def write_module(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / "trees"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return folder


class TestProcess:
    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
    def test_signal_stops_gracefully_with_exit_0(self, tmp_path, start, backend, signum):
        """`python -m exoarmur run` prints its running line, and SIGTERM or SIGINT ends it with 0."""
        process = start(["run", "--config", str(write_config(tmp_path)), "--backend", backend])
        process.wait_for("exoarmur: running (3 actors)", timeout=STARTUP_TIMEOUT)
        process.popen.send_signal(signum)
        code, err = process.finish(timeout=EXIT_TIMEOUT)
        assert code == 0, err
        assert f"— pid {process.popen.pid}" in err
        assert f"exoarmur: stopping ({signum.name})" in err
        assert (tmp_path / "audit.jsonl").exists()

    def test_sigusr1_prints_the_supervision_tree_and_keeps_running(self, tmp_path, start):
        """SIGUSR1 prints the tree (path, actor type, state, restarts, mailbox) and the process goes on."""
        process = start(["run", "--config", str(write_config(tmp_path))])
        process.wait_for("exoarmur: running (3 actors)", timeout=STARTUP_TIMEOUT)
        process.popen.send_signal(signal.SIGUSR1)
        process.wait_for("demo/counter [Counter]", timeout=STARTUP_TIMEOUT)
        process.popen.send_signal(signal.SIGTERM)
        code, err = process.finish(timeout=EXIT_TIMEOUT)
        assert code == 0, err
        assert "demo [Supervisor] running restarts=0 mailbox=0/100" in err
        assert "  demo/echo [Echo] running restarts=0 mailbox=0/" in err

    def test_signal_while_the_tree_is_built_stops_with_exit_0(self, tmp_path, start):
        """A signal during a slow build cancels the build and stops gracefully."""
        trees = write_module(
            tmp_path,
            "slow_tree",
            """
            import sys
            import anyio

            async def build(system, config):
                print("building", file=sys.stderr, flush=True)
                await anyio.sleep_forever()
            """,
        )
        config = write_config(tmp_path, "slow_tree:build")
        process = start(["run", "--config", str(config), "--backend", "trio"], extra_path=(trees,))
        process.wait_for("building", timeout=STARTUP_TIMEOUT)
        process.popen.send_signal(signal.SIGTERM)
        code, err = process.finish(timeout=EXIT_TIMEOUT)
        assert code == 0, err
        assert "exoarmur: running" not in err

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_factory_that_raises_exits_1_with_the_code(self, tmp_path, start, backend):
        """A tree factory that raises ends the process at once with FATAL and exit 1."""
        trees = write_module(
            tmp_path,
            "broken_tree",
            """
            async def build(system, config):
                raise LookupError("no such tenant")
            """,
        )
        config = write_config(tmp_path, "broken_tree:build")
        process = start(["run", "--config", str(config), "--backend", backend], extra_path=(trees,))
        code, err = process.finish(timeout=STARTUP_TIMEOUT)
        assert code == 1, err
        assert "exoarmur: fatal: FATAL: tree factory broken_tree:build: LookupError: no such tenant" in err
        assert "exoarmur: running" not in err

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_root_supervisor_escalating_ends_the_process_with_exit_1(self, tmp_path, start, backend):
        """Restart intensity exceeded two levels down escalates to the root: the process stops,
        prints ESCALATED with the chain, exits 1, and the audit log names every level."""
        trees = write_module(
            tmp_path,
            "crashing_tree",
            """
            import anyio
            from exoarmur.runtime import Actor, handles, message
            from exoarmur.supervisors import ChildSpec, RestartIntensity, Strategy, Supervisor, SupervisorSpec

            @message("test.cli.boom")
            class Boom:
                pass

            class Fragile(Actor):
                @handles(Boom)
                def boom(self, message):
                    raise RuntimeError("disk on fire")

            async def build(system, config):
                inner = SupervisorSpec(
                    Strategy.ONE_FOR_ONE,
                    intensity=RestartIntensity(2, 60.0),
                    children=(ChildSpec("fragile", Fragile),),
                )
                root = SupervisorSpec(
                    Strategy.ONE_FOR_ONE,
                    intensity=RestartIntensity(0, 60.0),
                    children=(ChildSpec("inner", Supervisor, kwargs={"spec": inner}),),
                )
                await system.spawn(Supervisor, name="root", kwargs={"spec": root})
                for _ in range(3):
                    await system.lookup("root/inner/fragile").tell(Boom())
                    await anyio.sleep(0.05)
            """,
        )
        config = write_config(tmp_path, "crashing_tree:build")
        process = start(["run", "--config", str(config), "--backend", backend], extra_path=(trees,))
        code, err = process.finish(timeout=STARTUP_TIMEOUT)
        assert code == 1, err
        assert "exoarmur: fatal: ESCALATED: root:" in err
        assert "root/inner:" in err and "disk on fire" in err
        from exoarmur.runtime import ReasonCode, read_jsonl

        events = list(read_jsonl(tmp_path / "audit.jsonl"))
        escalated = [e.path for e in events if e.code is ReasonCode.ESCALATED]
        assert escalated == ["root/inner", "root"]
        assert sum(e.code is ReasonCode.ACTOR_CRASHED for e in events) == 3

    def test_bad_config_exits_2_with_config_invalid(self, tmp_path, start):
        """A bad config file: CONFIG_INVALID naming file and key, exit 2, nothing started."""
        config = write_config(tmp_path, extra="[system]\nstop_timeout = -1\n")
        process = start(["run", "--config", str(config)])
        code, err = process.finish(timeout=STARTUP_TIMEOUT)
        assert code == 2, err
        assert f"exoarmur: fatal: CONFIG_INVALID: {config}: system.stop_timeout: must be finite" in err


def test_run_hands_the_gil_to_worker_threads_quickly(tmp_path, monkeypatch):
    """`exoarmur run` sets the switch interval before its loop starts: a
    worker thread (the ledger's fsync) waits at most that for the GIL
    after each system call, not Python's 5 ms."""
    import exoarmur.actors.app.cli as cli

    seen: list[float] = []
    monkeypatch.setattr(cli.anyio, "run", lambda *args, **kwargs: seen.append(sys.getswitchinterval()) or 0)
    monkeypatch.setattr(sys, "setswitchinterval", lambda seconds: seen.append(-seconds))
    assert main(["run", "--state-dir", str(tmp_path / "state")]) == 0
    assert seen == [-cli.THREAD_SWITCH_SECONDS, sys.getswitchinterval()] and cli.THREAD_SWITCH_SECONDS <= 0.001
