"""The NATS connection as an actor: the only place a nats-py Client is touched.

Every operation is a message, bounded by its envelope's deadline and failing
with its own code (`TIMEOUT_NATS_PUBLISH`, `TIMEOUT_KV_PUT`, `KV_CONFLICT`,
`NATS_DISCONNECTED`, ...; errors.py). Connection loss and timeouts are
reported to the supervisor's breaker (`context.report_failure`).

The handlers here are thin: each hands its message to the module of its idea,
with the instance's `ConnectionState` (state.py), which holds everything the
parts share.

    lifecycle.py      connect, drain and close, the stuck-reconnect watchdog,
                      nats-py's callbacks
    calls.py          calls bounded by the deadline, coded errors
    publishing.py     runs of publishes in order, as one write (buffering.py)
    requests.py       requests started at once and answered later, with no
                      task of ours while they wait (starting.py)
    subscriptions.py  deliveries to an actor's mailbox; served subjects
    jetstream.py      KV buckets (js_replies.py) and streams
    watches.py        KV watches, resumed after a reconnect

nats-py's traps, and what the connection does about each: docs/nats.md.
"""

from __future__ import annotations

from exoarmur.actors.nats import jetstream, lifecycle, publishing, requests, subscriptions, watches
from exoarmur.actors.nats.aio import open_bridge
from exoarmur.actors.nats.kv_messages import (
    Create,
    Delete,
    Get,
    KvCreate,
    KvDelete,
    KvGet,
    KvKeys,
    KvOpen,
    KvPut,
    KvUnwatch,
    KvUpdate,
    KvWatch,
    Keys,
    Put,
    Update,
)
from exoarmur.actors.nats.messages import (
    Flush,
    NatsStatistics,
    Publish,
    Request,
    Serve,
    Statistics,
    Subscribe,
    Unsubscribe,
)
from exoarmur.actors.nats.options import ConnectionOptions
from exoarmur.actors.nats.server import ServerInfo
from exoarmur.actors.nats.state import ConnectionState, Subscriptions, statistics
from exoarmur.actors.nats.stream_messages import (
    JsPublish,
    StreamEnsure,
    StreamFetch,
    StreamLast,
    StreamMessage,
    StreamRead,
)
from exoarmur.runtime import Actor, Deferred, ExoarmurError, ReasonCode, error_for, handles

__all__ = ["NatsConnection"]


class NatsConnection(Actor):
    mailbox_capacity = 10_000
    concurrency = 256  # JetStream calls in flight at once (concurrent handlers)
    # Requests and JetStream publishes started and not yet ended (answered, or
    # timed out) at most: one more is refused at once with OVERLOAD_SHED.
    requests_limit = 10_000

    # Made by `started` (the handlers run only after it); a restart makes a
    # fresh one.
    state: ConnectionState

    def __init__(
        self,
        *,
        options: ConnectionOptions | None = None,
        server: str | None = None,
        subscriptions: Subscriptions | None = None,
    ) -> None:
        """`options`, or `server`: the path of an EmbeddedNatsServer to ask."""
        if (options is None) == (server is None):
            raise error_for(ReasonCode.CONFIG_INVALID, "NatsConnection needs exactly one of options= or server=")
        self.options = options
        self.server = server
        self.subscriptions = subscriptions if subscriptions is not None else Subscriptions()

    async def started(self) -> None:
        if self.options is None:
            endpoint = await self.context.system.lookup(self.server).ask(ServerInfo())
            self.options = ConnectionOptions(urls=endpoint.urls, token=endpoint.token)
        self.state = ConnectionState(
            context=self.context,
            options=self.options,
            bridge=await open_bridge(self.context),
            subscriptions=self.subscriptions,
            requests_limit=self.requests_limit,
        )
        await lifecycle.start(self.state)

    async def stopping(self) -> None:
        state = getattr(self, "state", None)  # None: `started` failed before it
        if state is not None:
            await lifecycle.stop(state)

    # ---- core NATS -----------------------------------------------------------------

    @handles(Publish, batch=True, per_item=True)
    async def publish(self, batch: list[Publish]) -> list[None | ExoarmurError]:
        """A run of publishes in one call (runtime/batch.py), crossing to
        nats-py once, in order (publishing.py)."""
        return await publishing.publish(self.state, batch)

    @handles(Flush)
    async def flush(self, m: Flush) -> None:
        await publishing.flush(self.state)

    @handles(Request)
    def request(self, m: Request) -> Deferred:
        return requests.request(self.state, m)

    @handles(Subscribe)
    async def subscribe(self, m: Subscribe) -> int:
        return await subscriptions.subscribe(self.state, m)

    @handles(Serve)
    async def serve(self, m: Serve) -> int:
        return await subscriptions.serve(self.state, m)

    @handles(Unsubscribe)
    async def unsubscribe(self, m: Unsubscribe) -> None:
        await subscriptions.unsubscribe(self.state, m.sid)

    @handles(Statistics)
    def statistics(self, m: Statistics) -> NatsStatistics:
        return statistics(self.state)

    # ---- KV (a KvBucket actor's form too, once it has named its bucket) ------------

    @handles(Get, Put, Update, Delete)
    def kv_at_once(self, m: Get | Put | Update | Delete) -> Deferred:
        """A KvBucket's operation, its bucket named: started now, with no task
        and no scope, as a Request is (a task opens its bucket first, if this
        client has not)."""
        return jetstream.kv_at_once(self.state, m)

    @handles(KvOpen, concurrent=True)
    async def kv_open(self, m: KvOpen) -> None:
        await jetstream.kv_open(self.state, m)

    @handles(KvGet, batch=True, per_item=True, concurrent=True)
    async def kv_get(self, batch: list[KvGet]) -> list[Deferred]:
        """A run of gets crosses to nats-py once; each asker is answered on its own."""
        return await jetstream.kv_get(self.state, batch)

    @handles(KvPut, batch=True, per_item=True, concurrent=True)
    async def kv_put(self, batch: list[KvPut]) -> list[Deferred]:
        """Each put's revision; a run of puts crosses to nats-py once."""
        return await jetstream.kv_put(self.state, batch)

    @handles(KvCreate, Create, concurrent=True)
    async def kv_create(self, m: KvCreate) -> int:
        return await jetstream.kv_create(self.state, m)

    @handles(KvUpdate, batch=True, per_item=True, concurrent=True)
    async def kv_update(self, batch: list[KvUpdate]) -> list[Deferred]:
        """Each update's revision (KV_CONFLICT if the key moved on); a run crosses once."""
        return await jetstream.kv_update(self.state, batch)

    @handles(KvDelete, batch=True, per_item=True, concurrent=True)
    async def kv_delete(self, batch: list[KvDelete]) -> list[Deferred]:
        return await jetstream.kv_delete(self.state, batch)

    @handles(KvKeys, Keys, concurrent=True)
    async def kv_keys(self, m: KvKeys) -> list[str]:
        return await jetstream.kv_keys(self.state, m)

    @handles(KvWatch)
    async def kv_watch(self, m: KvWatch) -> int:
        return await watches.watch(self.state, m)

    @handles(KvUnwatch)
    async def kv_unwatch(self, m: KvUnwatch) -> None:
        await watches.unwatch(self.state, m.watch)

    # ---- streams -------------------------------------------------------------------

    @handles(StreamEnsure)
    async def stream_ensure(self, m: StreamEnsure) -> None:
        await jetstream.stream_ensure(self.state, m)

    @handles(JsPublish)
    def js_publish(self, m: JsPublish) -> Deferred:
        return jetstream.js_publish(self.state, m)

    @handles(StreamLast, concurrent=True)
    async def stream_last(self, m: StreamLast) -> StreamMessage | None:
        return await jetstream.stream_read(self.state, m.stream, subject=m.subject)

    @handles(StreamRead, concurrent=True)
    async def stream_read(self, m: StreamRead) -> StreamMessage | None:
        return await jetstream.stream_read(self.state, m.stream, seq=m.seq)

    @handles(StreamFetch, concurrent=True)
    async def stream_fetch(self, m: StreamFetch) -> list[StreamMessage]:
        """A run of the stream's messages in one batch (jetstream.stream_fetch)."""
        return await jetstream.stream_fetch(self.state, m)
