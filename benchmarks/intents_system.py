"""The system under test of the intents benchmark: `exoarmur run` as a
subprocess on a nats-server of the benchmark's own, and the client that
drives it the way a user does.

    the process    `python -m exoarmur run --nats-url URL --state-dir DIR
                   --backend B`, the token in EXOARMUR_NATS_TOKEN, its log in
                   the run's temporary directory; it dies with the benchmark
                   (PR_SET_PDEATHSIG, as the embedded server does) and is
                   stopped with SIGTERM, then SIGKILL, whatever happens
    submitting     a request to `exoarmur.intents.<tenant>.submit` with
                   `{"id", "type", "wait"}`: the reply must be ok and not a
                   duplicate, and it comes once the intent has ended (the
                   service holds it: `wait`), so SUCCEEDED is learnt from
                   the submit's own reply. No polling and no watch. A
                   submit whose answer does not come in time is sent again,
                   the same id (idempotent: the second answer is the same
                   intent, DUPLICATE_SUPPRESSED, as the benchmark's tenants
                   have no limits to refuse it first), at most RESUBMITS
                   times, and counted (`resubmitted`)
    counting       what the process wrote, from the streams' last sequences
                   before and after each round (the records and open-index
                   buckets, the audit stream); what it read, from a
                   subscription that sees every JetStream API request
                   (`$JS.API.>`; leader reads of a bucket are
                   `STREAM.MSG.GET.KV_<bucket>`; the benchmark's own
                   requests, told by their reply subjects, left out); and
                   the CPU time of the process, the server and the client
                   (`CpuMeter`)

A round ends at the last SUCCEEDED; the process then settles (the open index
empty: every intent's last audit record is appended and its entry deleted)
before the counts are read, outside the timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
import orjson
import psutil
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from exoarmur.benchmarks import PYTHON
from exoarmur.actors.intents import TERMINAL, IntentState
from exoarmur.actors.intents.replay import AUDIT_STREAM
from exoarmur.actors.intents.requests import PREFIX
from exoarmur.actors.nats import events_of
from exoarmur.actors.nats.process import PDEATHSIG, ServerProcess
from exoarmur.runtime import ReasonCode
from exoarmur.benchmarks.intents_load import Lap, closed_loop, intent_id, tenant_of
from exoarmur.benchmarks.measure import expect
from exoarmur.benchmarks.nats_baselines import CALL_SECONDS, CONNECT_ATTEMPT_SECONDS, READY_SECONDS

__all__ = [
    "AUDIT_STREAM",
    "OPEN",
    "RECORDS",
    "CpuMeter",
    "IntentClient",
    "Process",
    "Written",
    "connected",
    "last_seq",
    "live_keys",
    "running_exoarmur",
]

# The default tree's buckets (the main process names them; benchmarks may not import it).
RECORDS = "exoarmur_intents"
OPEN = "exoarmur_intents_open"
CONTROLS = "exoarmur_controls"  # the kill switches, read before an intent executes
# The harness's own bounds (not the system's margins: runtime/margins.py).
START_SECONDS = 60.0  # `exoarmur run` until its connection file is written
STOP_SECONDS = 30.0  # SIGTERM (a graceful drain), then SIGKILL
REAP_SECONDS = 5.0
POLL_SECONDS = 0.05  # between looks at a file, a process, the open index
INTENT_SECONDS = 120.0  # one intent, submit to SUCCEEDED
STRANDED_SECONDS = 10.0  # then an intent out of the open index is stranded
SETTLE_SECONDS = 120.0  # the open index empty after a round
INTENT_TIMEOUT = 600  # the intents' own deadline: never EXPIRED under load
RESUBMITS = 3  # a submit's answer lost to a client-side timeout: sent again, same id
# The benchmark's clients' reply subjects: how their JetStream API requests
# are told from the process's.
OWN_INBOX = "_INBOX_BENCH"
SUCCEEDED = IntentState.SUCCEEDED.value
DUPLICATE = ReasonCode.DUPLICATE_SUPPRESSED.value
TERMINAL_STATES = frozenset(state.value for state in TERMINAL)


class Process:
    """One `exoarmur run`: start, RSS, stop."""

    def __init__(
        self, root: Path, *, backend: str, server: ServerProcess, config: Path | None = None, url: str | None = None
    ) -> None:
        self.state_dir = root / f"exoarmur-{backend}"
        self.config = config  # a TOML file of the run's own (the built-in default without)
        self.url = url or server.url  # where it reaches the server (a proxy's, in a chaos run)
        self.state_dir.mkdir(parents=True)
        self.log = root / f"exoarmur-{backend}.log"
        self.backend = backend
        self.server = server
        self.popen: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        # Several processes on one machine: each serves health and metrics on a free port.
        env = {**os.environ, "EXOARMUR_NATS_TOKEN": self.server.token or "", "EXOARMUR_HTTP__PORT": "0"}
        env.pop("EXOARMUR_FAULTS", None)
        argv = [*PYTHON, "-m", "exoarmur", "run", "--nats-url", self.url,
                "--state-dir", str(self.state_dir), "--backend", self.backend]  # fmt: skip
        if self.config is not None:
            argv += ["--config", str(self.config)]
        with self.log.open("ab") as log:  # started again (a chaos run): its log goes on
            self.popen = subprocess.Popen(
                [sys.executable, "-I", str(PDEATHSIG), str(os.getpid()), *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        # Started again after a SIGKILL, the last one's file is still there: until it names this one.
        connection = self.state_dir / "connection.json"
        with anyio.fail_after(START_SECONDS):
            while _pid_in(connection) != self.popen.pid:
                expect(self.popen.poll() is None, f"exoarmur run exited with {self.popen.returncode}: {self.tail()}")
                await anyio.sleep(POLL_SECONDS)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_SECONDS; the exit status."""
        popen = self.popen
        if popen is None:
            return None
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            with anyio.move_on_after(STOP_SECONDS):
                while popen.poll() is None:
                    await anyio.sleep(POLL_SECONDS)
        if popen.poll() is None:
            popen.kill()
            with anyio.move_on_after(REAP_SECONDS):
                while popen.poll() is None:
                    await anyio.sleep(POLL_SECONDS)
        return popen.poll()

    def tail(self, lines: int = 8) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:] if self.log.exists() else []
        return " | ".join(text).replace(self.server.token or "\0", "***")


def _pid_in(connection: Path) -> int | None:
    try:
        return orjson.loads(connection.read_bytes())["pid"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):  # not there yet, or being replaced
        return None


@asynccontextmanager
async def running_exoarmur(
    root: Path, *, backend: str, server: ServerProcess, config: Path | None = None, url: str | None = None
) -> AsyncIterator[Process]:
    process = Process(root, backend=backend, server=server, config=config, url=url)
    try:
        await process.start()
        yield process
        expect(process.alive(), f"exoarmur run died during the run: {process.tail()}")
    finally:
        with anyio.CancelScope(shield=True):
            status = await process.stop()
    expect(status == 0, f"exoarmur run exited with {status} after SIGTERM: {process.tail()}")


@asynccontextmanager
async def connected(server: ServerProcess, name: str) -> AsyncIterator[Any]:
    """A plain nats-py client of the benchmark's (not exoarmur's options: it is the user)."""
    nc = await asyncio.wait_for(
        nats.connect(
            server.url,
            token=server.token,
            name=name,
            connect_timeout=CONNECT_ATTEMPT_SECONDS,
            inbox_prefix=OWN_INBOX,
        ),
        READY_SECONDS,
    )
    try:
        yield nc
    finally:
        await asyncio.wait_for(nc.close(), CALL_SECONDS)


class Written(Counter[str]):
    """Per round: KV writes per bucket, audit appends, leader reads, other API
    requests; and CPU microseconds per process (`cpu_us:<process>`)."""


class CpuMeter:
    """CPU time (user + system) of the processes of a run: this one (the
    client and the raw baseline) and, by pid, the server and exoarmur."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def sample(self) -> dict[str, float]:
        times = {name: process.cpu_times() for name, process in self.processes.items()}
        own = os.times()
        return {
            **{f"cpu_us:{name}": (t.user + t.system) * 1e6 for name, t in times.items()},
            "cpu_us:client": (own.user + own.system) * 1e6,
        }

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in after}


class IntentClient:
    """Submits intents to the process and learns their end from the reply."""

    def __init__(self, nc: Any, *, tenants: int, cpu: CpuMeter) -> None:
        self.nc = nc
        self.cpu = cpu
        self.js = nc.jetstream(timeout=CALL_SECONDS)
        self.tenants = tenants
        self.api: Counter[str] = Counter()  # JetStream API requests seen, by kind
        self.stranded: list[dict[str, Any]] = []  # acknowledged, never driven to the end
        self.resubmitted = 0  # submits sent again after a timed-out answer
        self.subs: list[Any] = []

    async def open(self) -> None:
        self.subs.append(await self.nc.subscribe("$JS.API.>", cb=self._api_request))
        await self.nc.flush(timeout=CALL_SECONDS)

    async def close(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()

    async def _api_request(self, msg: Any) -> None:
        if not msg.reply.startswith(OWN_INBOX):  # the benchmark's own requests do not count
            self.api[msg.subject.removeprefix("$JS.API.")] += 1

    async def submit(self, tenant: str, intent: str, kind: str) -> None:
        """Submit, and return once the intent is SUCCEEDED."""
        key = f"{tenant}.{intent}"
        body = orjson.dumps({"id": intent, "type": kind, "timeout": INTENT_TIMEOUT, "wait": STRANDED_SECONDS})
        for attempt in range(RESUBMITS + 1):
            try:
                answer = await self._ask(f"{PREFIX}.{tenant}.submit", body, STRANDED_SECONDS)
                break
            except nats.errors.TimeoutError:
                if attempt == RESUBMITS:
                    raise
                self.resubmitted += 1
        codes = ("", DUPLICATE) if attempt else ("",)  # a resubmit finds the first one's intent
        expect(answer.get("ok") is True and answer.get("code") in codes, f"submit of {key}: {answer}")
        record = answer["intent"]
        if record["state"] not in TERMINAL_STATES:
            record = await self._unended(tenant, intent, record)
        if record is not None:
            expect(record["state"] == SUCCEEDED, f"intent {key} ended {record['state']}: {str(record)[:500]}")

    async def _unended(self, tenant: str, intent: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """Not ended within STRANDED_SECONDS: stranded (counted, None) if its
        open-index entry is gone (no actor drives it and none ever will: the
        resumer finds intents through that index), else its end."""
        open_key = f"$KV.{OPEN}.{record['owner']}.{tenant}.{intent}"
        try:
            entry = await self.js.get_msg(f"KV_{OPEN}", subject=open_key, direct=False)
            indexed = (entry.headers or {}).get("KV-Operation") not in ("DEL", "PURGE")
        except NotFoundError:
            indexed = False
        if not indexed:
            self.stranded.append({"tenant": tenant, "id": intent, "state": record["state"], "revision": record["revision"]})
            return None
        body = orjson.dumps({"id": intent, "wait": INTENT_SECONDS})
        return (await self._ask(f"{PREFIX}.{tenant}.get", body, INTENT_SECONDS))["intent"]

    async def _ask(self, subject: str, body: bytes, wait: float) -> dict[str, Any]:
        reply = await self.nc.request(subject, body, timeout=wait + CALL_SECONDS)
        return orjson.loads(reply.data)

    async def run(self, kind: str, *, count: int, inflight: int, tag: str) -> Lap:
        """A closed loop of `count` intents of type `kind`, `inflight` at a time."""

        async def one(index: int) -> None:
            await self.submit(tenant_of(index, self.tenants), intent_id(tag, index), kind)

        return await closed_loop(one, count=count, inflight=inflight)

    # ---- counting ----------------------------------------------------------------------

    async def last_seqs(self) -> dict[str, int]:
        streams = {"records": f"KV_{RECORDS}", "open": f"KV_{OPEN}", "audit": AUDIT_STREAM}
        return {name: await last_seq(self.js, stream) for name, stream in streams.items()}

    async def settle(self) -> None:
        """Until the open index is empty: every intent audited to the end and deindexed."""
        with anyio.fail_after(SETTLE_SECONDS):
            while await live_keys(self.js, OPEN):
                await anyio.sleep(POLL_SECONDS)

    async def counted_run(self, kind: str, *, count: int, inflight: int, tag: str) -> tuple[Lap, Written]:
        """`run`, then (untimed) the process settled and what it wrote and read."""
        before, api_before = await self.last_seqs(), Counter(self.api)
        cpu_before, stranded_before, resubmitted_before = self.cpu.sample(), len(self.stranded), self.resubmitted
        lap = await self.run(kind, count=count, inflight=inflight, tag=tag)
        await self.settle()
        cpu = CpuMeter.spent(cpu_before, self.cpu.sample())
        after, api = await self.last_seqs(), self.api - api_before
        written = Written({name: after[name] - before[name] for name in after})
        written["audit_events"] = await audit_events(self.js, before["audit"] + 1, after["audit"])
        written.update(cpu)
        written["stranded"] = len(self.stranded) - stranded_before
        written["resubmitted"] = self.resubmitted - resubmitted_before
        written["reads"] = api[f"STREAM.MSG.GET.KV_{RECORDS}"]
        written["switch_reads"] = api[f"STREAM.MSG.GET.KV_{CONTROLS}"]
        written["other_api"] = sum(api.values()) - written["reads"] - written["switch_reads"]
        return lap, written


async def last_seq(js: Any, stream: str) -> int:
    """The stream's last sequence; 0 before it exists (the audit stream is
    made when the first tenant starts)."""
    try:
        return (await js.stream_info(stream)).state.last_seq
    except NotFoundError:
        return 0


async def audit_events(js: Any, first: int, last: int) -> int:
    """The events the audit stream's records hold from sequence `first` to
    `last` (a batch record holds several)."""
    if last < first:
        return 0
    count = 0
    read = asyncio.Event()

    async def seen(msg: Any) -> None:
        nonlocal count
        count += len(events_of(orjson.loads(msg.data)["event"]))
        if msg.metadata.sequence.stream >= last:
            read.set()

    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first)
    sub = await js.subscribe("exoarmur.audit.>", stream=AUDIT_STREAM, cb=seen, ordered_consumer=True, config=config)
    try:
        await asyncio.wait_for(read.wait(), SETTLE_SECONDS)
    finally:
        await sub.unsubscribe()
    return count


async def live_keys(js: Any, bucket: str) -> set[str]:
    """The bucket's live keys now: the last message of every key, headers
    only, read until the consumer says none is pending; a key whose last
    message is a delete or purge is not live. (nats-py's own watcher can
    signal "no more" before the entries it has received are handed over.)"""
    if await stream_messages(js, f"KV_{bucket}") == 0:
        return set()
    prefix = f"$KV.{bucket}."
    live: set[str] = set()
    read = asyncio.Event()

    async def seen(msg: Any) -> None:
        key = msg.subject[len(prefix) :]
        if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            live.discard(key)
        else:
            live.add(key)
        if msg.metadata.num_pending == 0:
            read.set()

    sub = await js.subscribe(
        f"{prefix}>", cb=seen, ordered_consumer=True, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, headers_only=True
    )
    try:
        async with asyncio.timeout(SETTLE_SECONDS):
            while not read.is_set():
                try:
                    await asyncio.wait_for(read.wait(), POLL_SECONDS)
                except TimeoutError:  # nothing delivered: the last keys may have been erased meanwhile
                    if await stream_messages(js, f"KV_{bucket}") == 0:
                        return set()
    finally:
        await sub.unsubscribe()
    return live


async def stream_messages(js: Any, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages
