"""A JetStream KV bucket as an actor: one per bucket.

It opens (creates if absent) its bucket when it starts, and answers get, put,
create, update (compare-and-set on the revision), delete (optionally CAS) and
keys. The work runs on the NatsConnection actor named by `connection`, the only
owner of the nats-py client: each handler hands its operation over and defers
its answer to the connection's (`context.defer`, `ask_then`). This actor gives
the bucket a path of its own, so its supervisor keeps a breaker for it: a store
that cannot be reached fails callers with a code within their deadline, and
after enough of those the breaker opens and they fail fast with BREAKER_OPEN. There is no in-memory
fallback. Reads go to the stream leader, so a read that decides an outcome
sees the latest acknowledged write.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import outcome

from exoarmur.actors.nats.connection import KvCreate, KvDelete, KvGet, KvKeys, KvOpen, KvPut, KvUpdate
from exoarmur.actors.nats.errors import DEPENDENCY_CODES
from exoarmur.runtime import Actor, ActorContext, ActorRef, Deferred, TimeoutCategory, handles, message
from exoarmur.runtime.errors import ExoarmurError

HOP_SHARE = 0.9

__all__ = ["Create", "Delete", "Get", "KvBucket", "Keys", "Put", "Update"]


@message("exoarmur.bucket.get", timeout=TimeoutCategory.KV_GET)
class Get:
    key: str


@message("exoarmur.bucket.put", timeout=TimeoutCategory.KV_PUT)
class Put:
    key: str
    value: bytes


@message("exoarmur.bucket.create", timeout=TimeoutCategory.KV_PUT)
class Create:
    """Put only if the key is absent (or deleted); KV_CONFLICT otherwise."""

    key: str
    value: bytes


@message("exoarmur.bucket.update", timeout=TimeoutCategory.KV_PUT)
class Update:
    """Put only if the key's revision is still `last`; KV_CONFLICT otherwise."""

    key: str
    value: bytes
    last: int


@message("exoarmur.bucket.delete", timeout=TimeoutCategory.KV_DELETE)
class Delete:
    key: str
    last: int | None = None


@message("exoarmur.bucket.keys", timeout=TimeoutCategory.KV_GET)
class Keys:
    pass


class KvBucket(Actor):
    mailbox_capacity = 10_000

    def __init__(self, *, bucket: str, connection: str, replicas: int = 1, history: int = 1) -> None:
        self.bucket = bucket
        self.connection_path = connection
        self.replicas = replicas
        self.history = history
        self.connection: ActorRef | None = None

    async def started(self) -> None:
        self.connection = self.context.system.lookup(self.connection_path)
        await self.connection.ask(KvOpen(self.bucket, replicas=self.replicas, history=self.history))

    def _on_connection(self, message: Any) -> Deferred:
        """Hand `message` to the connection; its answer goes to this envelope's
        asker (runtime/deferred.py: no task waits here meanwhile). A dependency
        failure also counts towards this bucket's breaker (the connection's
        own supervisor counts it too)."""
        assert self.connection is not None
        context = self.context
        later = context.defer()
        now, deadline = context.now(), context.deadline
        assert deadline is not None
        # The hop gets most of the time left, so its failure comes back (and is
        # counted) before the asker's own deadline passes.
        self.connection.ask_then(message, partial(_answered, context, later), deadline=now + (deadline - now) * HOP_SHARE)
        return later

    @handles(Get)
    def get(self, m: Get) -> Deferred:
        return self._on_connection(KvGet(self.bucket, m.key))

    @handles(Put)
    def put(self, m: Put) -> Deferred:
        return self._on_connection(KvPut(self.bucket, m.key, m.value))

    @handles(Create)
    def create(self, m: Create) -> Deferred:
        return self._on_connection(KvCreate(self.bucket, m.key, m.value))

    @handles(Update)
    def update(self, m: Update) -> Deferred:
        return self._on_connection(KvUpdate(self.bucket, m.key, m.value, m.last))

    @handles(Delete)
    def delete(self, m: Delete) -> Deferred:
        return self._on_connection(KvDelete(self.bucket, m.key, m.last))

    @handles(Keys)
    def keys(self, m: Keys) -> Deferred:
        return self._on_connection(KvKeys(self.bucket))


def _answered(context: ActorContext, later: Deferred, result: outcome.Outcome) -> None:
    """The connection's answer, to the bucket's asker; a dependency failure
    also counts towards the bucket's breaker."""
    error = getattr(result, "error", None)
    if isinstance(error, ExoarmurError) and error.code in DEPENDENCY_CODES:
        context.report_failure(error.code, error.detail)
    later.resolve(result)
