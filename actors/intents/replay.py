"""`exoarmur replay --verify`: the audit stream replayed and compared with KV.

    report = await verify(system, records_bucket="exoarmur_intents")
    report.ok, report.summary, report.problems, report.to_dict()

What it does, in this order, through the NatsConnection actor named
`connection` (the only owner of nats-py):

1. Reads the whole audit stream in batches (`StreamFetch`, one pull request
   per FETCH_BATCH records, the next batch fetched while one is reduced) into
   the pure reducer (actors/intents/reducer.py): every chain verified, every
   intent's trail rebuilt. Then marks it.
2. Reads every record of the records bucket: its keys, then KV_READERS gets
   at a time (each a leader read).
3. Reads the stream's tail (what was appended while KV was read), so an
   intent still running is not taken for an audit left behind.
4. Compares (actors/intents/replay_compare.py).

The report is `ok` when nothing was found: every chain unbroken from its
genesis, every intent's trail legal, every KV record the audit's. Otherwise
it lists each problem with a stable `kind` and a sentence
(actors/intents/replay_problems.py). The whole run is bounded by `timeout`
(default: the REPLAY_PROCESSING category, 300 s); past it, verify raises
TIMEOUT_REPLAY_PROCESSING. A NATS failure on the way is raised with its own
code (the connection's: a timeout, NATS_DISCONNECTED, ...).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import attrs

from exoarmur.actors.intents.reducer import Reducer, Reduction
from exoarmur.actors.intents.replay_compare import compare
from exoarmur.actors.intents.replay_problems import Problem
from exoarmur.actors.nats import KvEntry, KvGet, KvKeys, StreamFetch, StreamMessage
from exoarmur.runtime import ActorRef, ActorSystem, ExoarmurError, ReasonCode, TimeoutCategory, together

__all__ = [
    "AUDIT_STREAM",
    "AUDIT_SUBJECT_PREFIX",
    "FETCH_BATCH",
    "KV_READERS",
    "ReplayReport",
    "ReplaySummary",
    "read_bucket",
    "read_stream",
    "verify",
]

AUDIT_STREAM = "EXOARMUR_AUDIT"
AUDIT_SUBJECT_PREFIX = "exoarmur.audit"
# Records per StreamFetch: ~60,000 records/s come in batches of this size, and
# one batch (a few MiB) is well within a NATS_REQUEST deadline.
FETCH_BATCH = 5_000
FETCH_ATTEMPTS = 3
FETCH_RETRYABLE = frozenset({ReasonCode.TIMEOUT_NATS_REQUEST, ReasonCode.JETSTREAM_UNAVAILABLE})
# KV gets in flight at once: the connection answers a run of them in one
# crossing to nats-py.
KV_READERS = 64


@attrs.frozen(kw_only=True)
class ReplaySummary:
    stream: str
    bucket: str
    # The reducer's counts (ReplayCounts), then KV's and the time taken.
    records: int  # stream messages read
    chains: int
    intents: int  # intents audited
    intent_records: int
    other_records: int  # the kernel's own audit events, and any other kind
    duplicates: int  # intent records repeated with the same content (harmless)
    kv_records: int
    last_seq: int  # the last stream sequence read
    seconds: float  # the whole replay
    kv_seconds: float  # of which reading KV
    records_per_s: float  # stream records per second of the whole replay

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class ReplayReport:
    summary: ReplaySummary
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """The audit proves the state: nothing was found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary.to_dict(),
            "problems": [problem.to_dict() for problem in self.problems],
        }

    def lines(self) -> list[str]:
        """For a person: the verdict and summary, then one line per problem."""
        s = self.summary
        verdict = "equivalent" if self.ok else f"{len(self.problems)} problem(s)"
        head = (
            f"replay of {s.stream} against {s.bucket}: {verdict}; {s.records:,} records on {s.chains} chains "
            f"({s.intent_records:,} of {s.intents:,} intents, {s.duplicates:,} duplicates), {s.kv_records:,} KV "
            f"records, {s.seconds:.1f} s ({s.records_per_s:,.0f} records/s)"
        )
        return [head, *(f"{p.kind}: {p.message}" for p in self.problems)]


async def verify(
    system: ActorSystem,
    *,
    records_bucket: str,
    connection: str = "nats",
    stream: str = AUDIT_STREAM,
    subject_prefix: str = AUDIT_SUBJECT_PREFIX,
    batch: int = FETCH_BATCH,
    readers: int = KV_READERS,
    timeout: float | None = None,
) -> ReplayReport:
    """Replay `stream` and compare it with `records_bucket` (see the module)."""
    started = time.perf_counter()
    seconds = system.timeouts[TimeoutCategory.REPLAY_PROCESSING] if timeout is None else timeout
    deadline = system.now() + seconds
    conn = system.lookup(connection)
    reducer = Reducer(subject_prefix=subject_prefix)
    entries: list[KvEntry] = []
    kv_seconds = 0.0
    try:
        with anyio.fail_after(seconds):
            next_seq = await read_stream(system, conn, stream, reducer, start=1, batch=batch, deadline=deadline)
            reducer.mark()
            kv_started = time.perf_counter()
            entries = await read_bucket(system, conn, records_bucket, readers=readers, deadline=deadline)
            kv_seconds = time.perf_counter() - kv_started
            await read_stream(system, conn, stream, reducer, start=next_seq, batch=batch, deadline=deadline)
    except (TimeoutError, ExoarmurError) as exc:
        # Out of time is the replay's code, whichever step ran out first.
        if isinstance(exc, ExoarmurError) and system.now() < deadline:
            raise
        raise system.failure(
            "replay_timeout",
            ReasonCode.TIMEOUT_REPLAY_PROCESSING,
            path="replay",
            detail=f"replay of {stream} took more than {seconds:g} s ({reducer.records:,} records read)",
        ) from None
    reduction = reducer.reduction()
    problems = (*reduction.problems, *compare(reduction, entries))
    elapsed = time.perf_counter() - started
    return ReplayReport(_summary(reduction, stream, records_bucket, len(entries), elapsed, kv_seconds), problems)


def _summary(
    reduction: Reduction, stream: str, bucket: str, kv_records: int, elapsed: float, kv_seconds: float
) -> ReplaySummary:
    return ReplaySummary(
        stream=stream,
        bucket=bucket,
        **attrs.asdict(reduction.counts),
        kv_records=kv_records,
        last_seq=reduction.last_seq,
        seconds=elapsed,
        kv_seconds=kv_seconds,
        records_per_s=reduction.counts.records / elapsed if elapsed > 0 else 0.0,
    )


async def read_stream(
    system: ActorSystem, conn: ActorRef, stream: str, reducer: Reducer, *, start: int, batch: int, deadline: float
) -> int:
    """Feed `reducer` the stream from sequence `start` to its end, fetching
    the next batch while one is reduced; the sequence after the last read."""
    send, receive = anyio.create_memory_object_stream[list[StreamMessage]](1)
    after = [start]

    async def fetch_all() -> None:
        async with send:
            while True:
                messages = await _fetched(system, conn, StreamFetch(stream, after[0], batch), deadline)
                if not messages:
                    return
                after[0] = messages[-1].seq + 1
                await send.send(messages)

    async def reduce_all() -> None:
        async with receive:
            async for messages in receive:
                for message in messages:
                    reducer.add_message(message)

    await together([fetch_all, reduce_all])
    return after[0]


async def read_bucket(
    system: ActorSystem, conn: ActorRef, bucket: str, *, readers: int, deadline: float
) -> list[KvEntry]:
    """Every entry of `bucket`: its keys (one listing, in the replay's time),
    then `readers` gets at a time."""
    keys: list[str] = await conn.ask(KvKeys(bucket), deadline=deadline)
    todo = iter(keys)
    entries: list[KvEntry] = []

    async def reader() -> None:
        for key in todo:  # shared: each key is read once, by whichever reader is free
            get = KvGet(bucket, key)
            entry: KvEntry | None = await conn.ask(get, deadline=_capped(system, get, deadline))
            if entry is not None:  # deleted since it was listed
                entries.append(entry)

    await together([reader] * min(readers, len(keys)))
    return entries


async def _fetched(system: ActorSystem, conn: ActorRef, fetch: StreamFetch, deadline: float) -> list[StreamMessage]:
    """One batch; a batch that times out or finds JetStream unavailable (a
    cluster electing a leader, its consumer placed on a node just lost) is
    asked again, FETCH_ATTEMPTS times at most, within the replay's deadline."""
    for _ in range(FETCH_ATTEMPTS - 1):
        try:
            return await conn.ask(fetch, deadline=_capped(system, fetch, deadline))
        except ExoarmurError as exc:
            if exc.code not in FETCH_RETRYABLE or system.now() >= deadline:
                raise
    return await conn.ask(fetch, deadline=_capped(system, fetch, deadline))


def _capped(system: ActorSystem, message: object, deadline: float) -> float:
    """The earlier of the message's own default deadline and the replay's."""
    return min(deadline, system.now() + system.default_seconds(type(message)))
