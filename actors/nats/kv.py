"""A JetStream KV bucket as an actor: one per bucket.

It opens (creates if absent) its bucket when it starts, and answers get, put,
create, update (compare-and-set on the revision), delete (optionally CAS) and
keys: the KvBucket forms of the KV messages (kv_messages.py), `Get("i-1")`
and the rest, whose bucket this actor names. The work runs on the
NatsConnection actor named by `connection`, the only owner of the nats-py
client: each operation is handed over as it is, its bucket filled in, and
its answer deferred to the connection's (`context.defer`, `ask_then`).

This actor gives the bucket a path of its own, so its supervisor keeps a
breaker for it: a store that cannot be reached fails callers with a code
within their deadline, and after enough of those the breaker opens and they
fail fast with BREAKER_OPEN. There is no in-memory fallback. Reads go to the
stream leader, so a read that decides an outcome sees the latest
acknowledged write.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
import outcome

from exoarmur.actors.nats.errors import DEPENDENCY_CODES
from exoarmur.actors.nats.kv_messages import THIS_BUCKET, Create, Delete, Get, Keys, KvOpen, Put, Update
from exoarmur.actors.nats.patience import patiently
from exoarmur.runtime import Actor, ActorContext, ActorRef, Deferred, ExoarmurError, ReasonCode, error_for, handles
from exoarmur.runtime.margins import KV_HOP_SHARE

__all__ = ["KvBucket"]

Operation = Get | Put | Create | Update | Delete | Keys


class KvBucket(Actor):
    mailbox_capacity = 10_000

    def __init__(self, *, bucket: str, connection: str, replicas: int = 1, history: int = 1) -> None:
        self.bucket = bucket
        self.connection_path = connection
        self.replicas = replicas
        self.history = history
        self.connection: ActorRef | None = None

    async def started(self) -> None:
        connection = self.connection = self.context.system.lookup(self.connection_path)
        opening = KvOpen(self.bucket, replicas=self.replicas, history=self.history)
        await patiently(self.context, lambda: connection.ask(opening), what=f"opening bucket {self.bucket}")

    @handles(Get, Put, Create, Update, Delete, Keys)
    def operate(self, m: Operation) -> Deferred:
        """Hand `m` to the connection, named for this bucket; its answer goes
        to this envelope's asker (runtime/deferred.py: no task waits here
        meanwhile). A dependency failure also counts towards this bucket's
        breaker (the connection's own supervisor counts it too)."""
        if m.bucket != THIS_BUCKET and m.bucket != self.bucket:
            raise error_for(ReasonCode.KV_BUCKET_NOT_FOUND, f"this actor serves bucket {self.bucket!r}, not {m.bucket!r}")
        assert self.connection is not None
        context = self.context
        later = context.defer()
        now, deadline = context.now(), context.deadline
        assert deadline is not None
        # The hop gets most of the time left, so its failure comes back (and is
        # counted) before the asker's own deadline passes.
        self.connection.ask_then(
            attrs.evolve(m, bucket=self.bucket),
            partial(_answered, context, later),
            deadline=now + (deadline - now) * KV_HOP_SHARE,
        )
        return later


def _answered(context: ActorContext, later: Deferred, result: outcome.Outcome[Any]) -> None:
    """The connection's answer, to the bucket's asker; a dependency failure
    also counts towards the bucket's breaker."""
    error = getattr(result, "error", None)
    if isinstance(error, ExoarmurError) and error.code in DEPENDENCY_CODES:
        context.report_failure(error.code, error.detail)
    later.resolve(result)
