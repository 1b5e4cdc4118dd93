"""Audit events and the sinks that keep them.

The runtime emits one `AuditEvent` per failure a caller can see (same code as
the exception) and one per dead letter nobody else was told about. `emit` is
synchronous and must not block the event loop for long: sinks buffer or append.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import orjson

from exoarmur.runtime.codes import ReasonCode


class AuditEvent(NamedTuple):
    """One audited failure. Immutable and compared by value; a NamedTuple, as
    Envelope is, because one is built per crash and per refusal: 0.5 µs, where
    an attrs frozen class of twelve fields takes 3.5 µs."""

    kind: str  # what happened: "rejected", "dead_letter", "crashed", "deadline", ...
    code: ReasonCode
    at: float  # runtime clock
    path: str | None = None  # the actor concerned
    message: str | None = None  # wire name (or class name) of the message
    tenant: str | None = None
    sender: str | None = None
    correlation_id: str | None = None
    trace_id: str | None = None
    idempotency_key: str | None = None
    attempt: int | None = None
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AuditEvent:
        kwargs = {k: v for k, v in data.items() if k in cls._fields}
        kwargs["code"] = ReasonCode(kwargs["code"])
        return cls(**kwargs)  # type: ignore[arg-type]


@runtime_checkable
class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None: ...

    def close(self) -> None: ...


class MemoryAuditSink:
    """Keeps the newest events in memory, in order: at most `limit` of them
    (None: every one), so a long-running system's default sink stays bounded.
    `dropped` counts the older ones let go. For tests and inspection; a
    durable log is JsonlAuditSink or the JetStream sink."""

    def __init__(self, *, limit: int | None = 100_000) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        self.limit = limit
        self.events: list[AuditEvent] = []
        self.dropped = 0

    def emit(self, event: AuditEvent) -> None:
        events = self.events
        events.append(event)
        limit = self.limit
        if limit is not None and len(events) > limit:
            # Let a quarter go at once: amortized O(1) per event.
            cut = len(events) - limit + limit // 4
            del events[:cut]
            self.dropped += cut

    def close(self) -> None:
        pass

    def counts(self) -> Counter[ReasonCode]:
        return Counter(e.code for e in self.events)

    def of(self, code: ReasonCode) -> list[AuditEvent]:
        return [e for e in self.events if e.code == code]


class JsonlAuditSink:
    """Appends one JSON object per line; each line is flushed as it is written.

    With `fsync=True` each line is also forced to disk (slow; for tests of
    durability across kill -9 use it, or rely on the JetStream sink)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self._fsync = fsync

    def emit(self, event: AuditEvent) -> None:
        record = event.to_json()
        record["wall_time"] = time.time()
        self._file.write(orjson.dumps(record) + b"\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[AuditEvent]:
    """Replay a JSONL audit log, in order."""
    with open(path, "rb") as file:
        for line in file:
            if line.strip():
                yield AuditEvent.from_json(orjson.loads(line))
