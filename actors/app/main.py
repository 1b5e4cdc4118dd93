"""The main process: one actor system running the configured tree until a signal.

    code = anyio.run(functools.partial(run, load_config(path)))

`run` first locks the process's state directory (`[state] dir`) and, with
the embedded server, its data directory (`[nats] data_dir`, by default
inside the state directory), held until it returns, so two processes never
share one (the second exits with STATE_LOCKED naming the holder's pid; see
actors/app/state.py and actors/nats/process.py). Then it opens an
`ActorSystem` from the config, loads the tree factory named by `tree.factory`
("module:function", imported now, never at import time) and awaits it, prints
`exoarmur: running (<n> actors) — pid <pid>, state in <dir>` to stderr (the CLI
finds the process through that directory's connection file; no secret is
printed), and waits for SIGINT or SIGTERM. Then it stops every actor gracefully (bounded by `stop_timeout`)
and returns 0. A signal that arrives while the tree is being built cancels the
build and stops the same way; so does a build that fails (before its error is
reported): what it started, an embedded nats-server included, stops as it
would on a signal, never left to be killed with the process.

Anything else ends the process with `exoarmur: fatal: <CODE>: <detail>` on
stderr and a non-zero exit code (2 for CONFIG_INVALID, 1 otherwise):
- an `ExoarmurError` out of the factory or the system: its own code;
- any other exception from the factory: FATAL (its traceback is printed first);
- the root of the supervision tree escalating (more restarts than its
  intensity allows, all the way up): ESCALATED, the chain in the detail;
- another process holding the state's lock: STATE_LOCKED, naming its pid;
- a graceful stop still unfinished after `stop_timeout + PROCESS_STOP_OVERRUN`
  seconds: DEADLINE_EXCEEDED, and whatever is left is cancelled;
- a second SIGINT or SIGTERM during the graceful stop: SHUTTING_DOWN, and
  whatever is left is cancelled at once. (One that comes after the stop is
  done, in the last milliseconds of the interpreter's own teardown, has its
  default effect: the process ends as signalled.)
Cancellation of `run` itself is never turned into an exit code.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import inspect
import logging
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio

from exoarmur.actors.app.config import Config
from exoarmur.actors.app.logs import LoggedAuditSink, logging_to_stderr
from exoarmur.actors.app.state import StateDir
from exoarmur.actors.nats.data_lock import DataDirLock
from exoarmur.runtime import (
    ActorSystem,
    AuditSink,
    ExoarmurError,
    Fatal,
    InvalidInput,
    JsonlAuditSink,
    MemoryAuditSink,
    ReasonCode,
)
from exoarmur.runtime.logs import EVENT, FIELDS, logged
from exoarmur.runtime.margins import PROCESS_STOP_OVERRUN
from exoarmur.supervisors import describe_system

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

LOG = logging.getLogger("exoarmur.process")

TreeFactory = Callable[[ActorSystem, Config], Awaitable[None]]


def say(text: str) -> None:
    print(f"exoarmur: {text}", file=sys.stderr, flush=True)


async def run(config: Config, *, ready: anyio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM; the process exit code. `ready` is set once the
    tree is built and the running line printed."""
    with logging_to_stderr(config.log):
        try:
            config.nats.check_secure()
            config.http.check_secure()
            with state_lock(config):
                factory = load_factory(config.tree_factory)
                audit = LoggedAuditSink(open_audit_sink(config))
                try:
                    await _serve(config, factory, audit, ready)
                finally:
                    audit.close()
        except Exception as exc:  # every failure becomes one coded line and an exit code
            return report(exc, log=True)
    return EXIT_OK


@contextlib.contextmanager
def state_lock(config: Config) -> Iterator[None]:
    """The locks on the process's state: its state directory, and the
    embedded server's data directory when there is one."""
    with contextlib.ExitStack() as locks:
        locks.enter_context(StateDir(config.state_dir).lock())
        if config.nats.embedded:
            locks.enter_context(DataDirLock(config.nats_data_dir))
        yield


def load_factory(dotted: str) -> TreeFactory:
    """Import "module:function" and check it is an async function."""
    module_name, _, attribute = dotted.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID, f"tree.factory {dotted!r}: cannot import {module_name}: {exc}"
        ) from exc
    except Exception as exc:
        raise Fatal(
            ReasonCode.FATAL, f"tree.factory {dotted!r}: importing {module_name} raised {exc!r}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidInput(
                ReasonCode.CONFIG_INVALID, f"tree.factory {dotted!r}: {module_name} has no {attribute}"
            ) from None
    if not inspect.iscoroutinefunction(target):
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID,
            f"tree.factory {dotted!r}: must be an async function (system, config) -> None",
        )
    return target  # type: ignore[return-value]


# Without `[audit] path`, the newest events kept in memory (for a debugger):
# the record is the stream, so an overload's refusals must not grow the heap.
RECENT_EVENTS = 1_000


def open_audit_sink(config: Config) -> AuditSink:
    if config.audit_path is None:
        return MemoryAuditSink(limit=RECENT_EVENTS)
    try:
        return JsonlAuditSink(config.audit_path)
    except OSError as exc:
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID, f"audit.path {str(config.audit_path)!r}: cannot open: {exc}"
        ) from exc


def report(exc: BaseException, *, log: bool = False) -> int:
    """Print the fatal line for `exc` (and the traceback of an uncoded cause),
    or with `log` log it as the event process.fatal; the exit code."""
    error = coded(exc)
    cause = error.__cause__
    uncoded = error.code is not ReasonCode.CONFIG_INVALID and cause is not None and not isinstance(cause, ExoarmurError)
    if log:  # the traceback first, so that the fatal line is the last
        if uncoded and cause is not None:
            LOG.error("uncoded failure", exc_info=(type(cause), cause, cause.__traceback__), extra={EVENT: "process.traceback"})
        LOG.error("fatal: %s", error, extra={EVENT: "process.fatal", FIELDS: {"code": error.code.value}})
    else:
        if uncoded:
            traceback.print_exception(cause, file=sys.stderr)
        say(f"fatal: {error}")
    return EXIT_CONFIG if error.code is ReasonCode.CONFIG_INVALID else EXIT_FAILURE


def coded(exc: BaseException) -> ExoarmurError:
    """The coded error behind `exc`: itself, the first one inside an exception
    group (task groups wrap what their body raises), else FATAL caused by it."""
    found = _first_coded(exc)
    if found is not None:
        return found
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    error = Fatal(ReasonCode.FATAL, f"{type(leaf).__name__}: {leaf}")
    error.__cause__ = leaf
    return error


def _first_coded(exc: BaseException) -> ExoarmurError | None:
    if isinstance(exc, ExoarmurError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_coded(inner)
            if found is not None:
                return found
    return None


async def _serve(
    config: Config, factory: TreeFactory, audit: AuditSink, ready: anyio.Event | None
) -> None:
    # Open the receiver first: a signal from now on is a request to stop, never
    # the default action (which would kill the process without a graceful stop).
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
        async with ActorSystem(
            name=config.name,
            timeouts=config.timeouts,
            audit=audit,
            mailboxes=config.mailboxes,
            stop_timeout=config.stop_timeout,
        ) as system:
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(_on_signals, signals, group.cancel_scope, config, system)
                    group.start_soon(_cancel_on_failure, system, group.cancel_scope)
                    await _build(system, config, factory)
                    # What is built by now lives as long as the process: out of the
                    # collector's sight, a full collection scans only what came after.
                    # (Scanning it all paused the loop 25-38 ms every few seconds under
                    # a flood of requests: the tail of every tenant's latency.)
                    gc.freeze()
                    where = config.state_dir.resolve()
                    logged(LOG, logging.INFO, "process.running",
                           f"running ({len(system.paths())} actors) — pid {os.getpid()}, state in {where}",
                           actors=len(system.paths()), pid=os.getpid(), state_dir=str(where))  # fmt: skip
                    if ready is not None:
                        ready.set()
                    try:
                        await anyio.sleep_forever()
                    finally:
                        gc.unfreeze()  # the collector's again once the tree stops
            except BaseException:
                # A failed build (or `run` cancelled from outside) stops what it
                # started as gracefully as a signal would: leaving the system's
                # block with an error only cancels, and a child process's stop
                # hook would not run. Bounded by the stop's own limit.
                with anyio.CancelScope(shield=True):
                    overrun = await _stop(system, config, signals)
                if overrun is not None:
                    LOG.error("stopping after the failure: %s", overrun, extra={EVENT: "process.stop_overrun"})
                raise
            began = system.now()
            overrun = await _stop(system, config, signals)
            StateDir(config.state_dir).remove_connection()  # nothing serves there any more
            if overrun is not None:
                raise overrun
            took = system.now() - began
            logged(LOG, logging.INFO, "process.stopped", f"stopped in {took:.2f} s", seconds=round(took, 3))
            if system.fatal is not None:
                # The root of the tree escalated: the chain of failures is its detail,
                # and it was audited where it happened.
                raise system.fatal


async def _on_signals(
    signals: AsyncIterator[signal.Signals],
    scope: anyio.CancelScope,
    config: Config,
    system: ActorSystem,
) -> None:
    """SIGUSR1 prints the supervision tree; SIGINT or SIGTERM starts the stop."""
    async for signum in signals:
        if signum == signal.SIGUSR1:
            await _print_tree(system)
            continue
        name = signal.Signals(signum).name
        logged(LOG, logging.INFO, "process.stopping", f"stopping ({name}), up to {config.stop_timeout:g} s", signal=name)
        scope.cancel()
        return


async def _print_tree(system: ActorSystem) -> None:
    try:
        nodes = await describe_system(system)
    except ExoarmurError as exc:  # a busy or stopping tree: say so, keep running
        logged(LOG, logging.WARNING, "process.tree_unavailable", f"tree unavailable: {exc}", code=exc.code.value)
        return
    tree = "\n".join(node.render() for node in nodes) or "(no actors)"
    logged(LOG, logging.INFO, "process.tree", f"the supervision tree:\n{tree}", actors=len(system.paths()))


async def _cancel_on_failure(system: ActorSystem, scope: anyio.CancelScope) -> None:
    await system.failed.wait()
    code = system.fatal.code.value if system.fatal else None
    logged(LOG, logging.ERROR, "process.tree_failed", f"stopping: the supervision tree failed ({code})", code=code)
    scope.cancel()


async def _build(system: ActorSystem, config: Config, factory: TreeFactory) -> None:
    try:
        await factory(system, config)
    except ExoarmurError:
        raise
    except Exception as exc:
        raise system.failure(
            "fatal",
            ReasonCode.FATAL,
            detail=f"tree factory {config.tree_factory}: {type(exc).__name__}: {exc}",
        ) from exc


async def _stop(
    system: ActorSystem, config: Config, signals: AsyncIterator[signal.Signals]
) -> ExoarmurError | None:
    """The graceful stop, cut short by a second SIGINT or SIGTERM, or cancelled
    if it overruns stop_timeout by PROCESS_STOP_OVERRUN; then the error to
    raise (audited): SHUTTING_DOWN or DEADLINE_EXCEEDED. What is cut short is
    cancelled; nothing acknowledged is lost (an intent is durable before it is
    acknowledged, and the next start resumes it). (Leaving the system's block
    after this finds nothing left to stop.)"""
    limit = config.stop_timeout + PROCESS_STOP_OVERRUN
    again: list[signal.Signals] = []

    async def second_signal(scope: anyio.CancelScope) -> None:
        async for signum in signals:
            if signum != signal.SIGUSR1:
                again.append(signum)
                name = signal.Signals(signum).name
                logged(LOG, logging.WARNING, "process.stopping_now", f"stopping now ({name} again)", signal=name)
                scope.cancel()
                return

    with anyio.move_on_after(limit) as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(second_signal, scope)
            await system.shutdown()
            group.cancel_scope.cancel()
    if again:
        return system.failure(
            "fatal", ReasonCode.SHUTTING_DOWN, detail="stopped at once on a second signal; cancelled what was left"
        )
    if not scope.cancelled_caught:
        return None
    return system.failure(
        "fatal",
        ReasonCode.DEADLINE_EXCEEDED,
        detail=f"graceful stop still running after {limit:g} s; cancelled what was left",
    )
