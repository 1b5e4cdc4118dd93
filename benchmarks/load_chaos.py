"""Chaos under load: the seeds' failure list, injected one after another
while a load runs, each with what it must show.

    kill    `exoarmur run` SIGKILLed mid-execution (under load some intent
            always is) and started again on its state directory: it resumes
            its own intents (reconcile, never a blind re-apply)
    nats    the nats-server SIGKILLed, down NATS_DOWN_SECONDS (a gap's time
            if shorter), and started again on its port and storage: every
            client reconnects
    flap    the process's link to NATS (it reaches NATS through a TcpProxy)
            cut, then FLAP_DELAY on every chunk for a gap's time, then healed
    triple  every submission of the run delivered three times at once
            (`Driving.copies`): one creates the intent, two are duplicates
    slow    a slow consumer, for a gap's time: a subscriber to the
            submissions' subjects that takes SLOW_EACH per message, its
            backlog growing to its bound, beyond which its client drops
            (counted); the server must not slow anyone else for it

Each fault is `recovered` when RECOVERED_AFTER intents submitted after it
ended have completed, within RECOVER_SECONDS. What the run must show afterwards
is checked like every run's (load_verify.py): no intent lost, no duplicate
effect, every accepted intent terminal, replay equivalent.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
import nats

from exoarmur.benchmarks.load_record import Recorder, Sampler
from exoarmur.benchmarks.measure import perf_ns
from exoarmur.benchmarks.tcp_proxy import TcpProxy

__all__ = ["FAULTS", "Chaos", "SlowConsumer"]

FAULTS = ("kill", "nats", "flap", "slow")  # in this order; `triple` holds for the whole run
RECOVER_SECONDS = 60.0
RECOVERED_AFTER = 10  # completions after a fault that show the system is back
FLAP_DELAY = 0.2
NATS_DOWN_SECONDS = 2.0
SLOW_EACH = 0.25  # the slow consumer's time per message: 4 a second, behind even a quick run's rate
SLOW_PENDING = 200  # its backlog's bound (nats-py's pending limit): past it, its client drops
SERVER_READY_SECONDS = 30.0


@attrs.define
class SlowConsumer:
    """A subscriber that cannot keep up: its backlog, its drops."""

    most_pending: int = 0
    handled: int = 0
    dropped: int = 0

    async def run(self, urls: list[str], kwargs: dict[str, Any], *, subject: str, seconds: float) -> None:
        async def error_cb(exc: Exception) -> None:
            if isinstance(exc, nats.errors.SlowConsumerError):  # one a message dropped
                self.dropped += 1

        nc = await nats.connect(urls, name="exoarmur-load-slow-consumer", error_cb=error_cb, **kwargs)
        try:

            async def slow(msg: Any) -> None:
                self.handled += 1
                await anyio.sleep(SLOW_EACH)

            sub = await nc.subscribe(subject, cb=slow, pending_msgs_limit=SLOW_PENDING)
            end = perf_ns() + seconds * 1e9
            while perf_ns() < end:
                self.most_pending = max(self.most_pending, sub.pending_msgs)
                await anyio.sleep(0.1)
        finally:
            await nc.close()


class Chaos:
    """Injects FAULTS into a system the load script started (`System`):
    `inject(recorder)` runs beside a phase's pacing."""

    def __init__(self, system: Any, sampler: Sampler, *, gap: float, subject: str) -> None:
        self.system = system
        self.sampler = sampler
        self.gap = gap  # seconds of plain load before each fault; the flap and the slow consumer last as long
        self.subject = subject  # the slow consumer's
        self.faults: list[dict[str, Any]] = []
        self.slow = SlowConsumer()

    async def inject(self, recorder: Recorder) -> None:
        steps: dict[str, Callable[[], Awaitable[str]]] = {
            "kill": self._kill, "nats": self._nats, "flap": self._flap, "slow": self._slow,
        }  # fmt: skip
        for name in FAULTS:
            await anyio.sleep(self.gap)
            started, in_flight = recorder.elapsed(), recorder.in_flight
            detail = await steps[name]()
            ended, ended_ns = recorder.elapsed(), perf_ns()
            recovered = await _recovered(recorder, since_ns=ended_ns)
            self.faults.append({
                "fault": name, "at_s": round(started, 3), "lasted_s": round(ended - started, 3), "detail": detail,
                "recovered_s": None if recovered is None else round(recovered - ended, 3),
                "in_flight_at_fault": in_flight,
            })  # fmt: skip

    async def _kill(self) -> str:
        process = self.system.process
        old = process.pid
        process.popen.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(process.popen.wait)
        await process.start()
        self.system.found_again()
        self.sampler.follow(self.system.pid, self.system.metrics_url)
        return f"SIGKILL pid {old}, started again as pid {process.pid}"

    async def _nats(self) -> str:
        server = self.system.server
        server.kill()
        await server.wait()
        down = min(NATS_DOWN_SECONDS, self.gap)
        await anyio.sleep(down)
        await server.start(deadline=anyio.current_time() + SERVER_READY_SECONDS)
        self.sampler.follow_server(self.system.server_pid)
        return f"nats-server SIGKILLed, down {down:g} s, started again on {server.url}"

    async def _flap(self) -> str:
        proxy: TcpProxy = self.system.proxy
        before = proxy.accepted
        proxy.cut()
        proxy.delay(FLAP_DELAY)
        await anyio.sleep(self.gap)
        proxy.heal()
        return f"link cut, then {FLAP_DELAY * 1000:.0f} ms a chunk for {self.gap:g} s; {proxy.accepted - before} reconnects"

    async def _slow(self) -> str:
        kwargs = self.system.credentials_kwargs()
        await self.slow.run(list(self.system.urls), kwargs, subject=self.subject, seconds=self.gap)
        s = self.slow
        return f"{s.handled:,} handled, backlog up to {s.most_pending:,} (bound {SLOW_PENDING:,}), {s.dropped:,} drop reports"


async def _recovered(recorder: Recorder, *, since_ns: int) -> float | None:
    """When RECOVERED_AFTER intents submitted after `since_ns` (the fault's
    end) had completed, on the recorder's clock: new work gets through, not
    old work finishing; None if not within RECOVER_SECONDS."""
    seen = 0  # completions looked at so far (the list only grows)
    fresh = 0
    with anyio.move_on_after(RECOVER_SECONDS):
        while fresh < RECOVERED_AFTER:
            ended = recorder.ended_due_ns
            fresh += sum(due >= since_ns for due in ended[seen:])
            seen = len(ended)
            await anyio.sleep(0.05)
        return recorder.elapsed()
    return None
