"""The NATS connection as an actor: the only place a nats-py Client is touched.

Every operation is a message, bounded by its envelope's deadline and failing
with its own code (`TIMEOUT_NATS_PUBLISH`, `TIMEOUT_KV_PUT`, `KV_CONFLICT`,
`NATS_DISCONNECTED`, ...; `actors/nats_errors.py`). A request is started at
once from a plain handler and answered later (runtime/deferred.py), with no
task of ours while it waits; at most `requests_limit` wait at once (past it,
OVERLOAD_SHED at once). JetStream calls are concurrent handlers (up to
`concurrency` in flight). `Serve` answers a subject's requests with no
mailbox between the wire and the actor that does the work (a gateway's data
plane, actors/remote.py); the replies go straight into nats-py's buffer. KV gets and
puts waiting together are one concurrent run (runtime/batch.py): one crossing
to nats-py, each asker answered on its own. Publishes waiting together are one
run handled in order, so they reach the server in the order they were sent,
buffered as one write.

nats-py's traps, and what this actor does about each:
- a first connect with unlimited reconnects never returns: it is cut at the
  NATS_CONNECT deadline (TIMEOUT_NATS_CONNECT; `started` fails, the
  supervisor decides);
- `flush_timeout=None` lets a full buffer block a publish forever: it is set;
- a dead link is found after ping_interval x (max_outstanding_pings + 1):
  seconds, not minutes;
- a reconnect against a silent peer can hang for minutes (nats-py #671): a
  watchdog aborts the stuck socket, and if the client is still stuck after
  that, crashes the actor so its supervisor starts a fresh client;
- `publish_async` futures that never resolve (#985): not used; every
  JetStream call is a request bounded by the deadline;
- a cancel that lands while `drain` waits for the subscriptions is
  swallowed, and a flush follows: the drain is bounded by its own
  `drain_timeout` (`_drain`), within the stop's bound;
- permission errors reach only the error callback: they are counted and
  audited (NATS_PERMISSION_DENIED);
- a slow consumer drops messages: nats-py's pending limits are set per
  subscription, deliveries go into the target actor's mailbox with
  `tell_nowait`, and every drop is counted (NATS_SLOW_CONSUMER audited once per
  burst).
Connection loss and timeouts are reported to the supervisor's breaker
(`context.report_failure`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from secrets import token_hex
from typing import Any

import anyio
import attrs
import nats
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header, KeyValueConfig, StreamConfig
from nats.js.errors import APIError, NoKeysError, NoStreamResponseError, NotFoundError, ServiceUnavailableError
from nats.js.kv import _is_key_valid

from exoarmur.actors.nats.aio import Bridge, StrayCancellation, open_bridge
from exoarmur.actors.nats.errors import DEPENDENCY_CODES, coded
from exoarmur.actors.nats.read_loop import Inline, ReplySlot, inline_replies
from exoarmur.runtime import Actor, ActorRef, ReasonCode, TimeoutCategory, handles, message
from exoarmur.runtime.audit import AuditEvent
from exoarmur.runtime.deferred import Deferred
from exoarmur.runtime.errors import ExoarmurError, error_for

__all__ = [
    "ConnectionOptions",
    "Delivery",
    "Flush",
    "KvCreate",
    "KvDelete",
    "KvEntry",
    "KvGet",
    "KvKeys",
    "KvOpen",
    "KvPut",
    "KvUnwatch",
    "KvUpdate",
    "KvWatch",
    "KvChange",
    "NatsConnection",
    "NatsStatistics",
    "JsPublish",
    "PubAck",
    "Publish",
    "Request",
    "Response",
    "Statistics",
    "StreamEnsure",
    "StreamLast",
    "StreamMessage",
    "StreamRead",
    "Subscribe",
    "Subscriptions",
    "Unsubscribe",
]

KV_OPERATION = "KV-Operation"
# nats-py's own timeout on JetStream calls; each call is cut at its envelope's
# deadline long before (`NatsConnection._call`).
JS_BACKSTOP_SECONDS = 3600.0
# What `_call` leaves of the deadline for the answer to reach the asker.
ANSWER_MARGIN = 0.002
# The same for a timer on trio-asyncio's loop, which fires 0.6 to 3.4 ms late
# (measured here): the connection must answer before the asker's own timer.
BRIDGED_ANSWER_MARGIN = 0.010


@attrs.frozen(kw_only=True)
class ConnectionOptions:
    """How to reach NATS. Secrets are never part of a repr."""

    urls: tuple[str, ...] = attrs.field(converter=tuple)
    token: str | None = attrs.field(default=None, repr=False)
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    creds_file: str | None = None
    nkeys_seed_file: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    name: str = "exoarmur"
    ping_interval: float = 2.0
    max_outstanding_pings: int = 2
    reconnect_time_wait: float = 0.5
    flush_timeout: float = 2.0
    pending_size: int = 8 * 1024 * 1024
    # The watchdog: a reconnect stuck longer than this gets its socket aborted.
    stuck_after: float = 10.0

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "servers": list(self.urls),
            "name": self.name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # the watchdog and the breaker bound it
            "reconnect_time_wait": self.reconnect_time_wait,
            "ping_interval": self.ping_interval,
            "max_outstanding_pings": self.max_outstanding_pings,
            "flush_timeout": self.flush_timeout,
            "pending_size": self.pending_size,
        }
        if self.token is not None:
            kwargs["token"] = self.token
        if self.user is not None:
            kwargs["user"], kwargs["password"] = self.user, self.password
        if self.creds_file is not None:
            kwargs["user_credentials"] = self.creds_file
        if self.nkeys_seed_file is not None:
            kwargs["nkeys_seed"] = self.nkeys_seed_file
        if self.tls_ca_file or self.tls_cert_file:
            context = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            kwargs["tls"] = context
        return kwargs


# ---- messages ----------------------------------------------------------------


@message("exoarmur.nats.publish", timeout=TimeoutCategory.NATS_PUBLISH)
class Publish:
    subject: str
    data: bytes
    headers: dict[str, str] | None = None
    reply: str = ""


@message("exoarmur.nats.flush", timeout=TimeoutCategory.NATS_PUBLISH)
class Flush:
    """Until the server has everything published so far."""


@message("exoarmur.nats.request", timeout=TimeoutCategory.NATS_REQUEST)
class Request:
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


@attrs.frozen
class Response:
    data: bytes
    headers: dict[str, str] | None


@message("exoarmur.nats.subscribe", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Subscribe:
    """Deliver what arrives on `subject` to the actor at `target` as Delivery
    tells; past `pending_msgs` waiting in nats-py, messages are dropped and
    counted. Answers the subscription id."""

    subject: str
    target: str
    queue: str = ""
    pending_msgs: int = 10_000
    pending_bytes: int = 64 * 1024 * 1024


@message("exoarmur.nats.serve", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Serve:
    """Answer the requests on `subject` from here, with no mailbox between
    the wire and the actor that does the work (the data plane of a gateway,
    as Erlang's distribution controller delivers straight to the target).
    For each message, `responder(context, data, headers, respond)` runs at
    once as this connection (`context.call_as_self`): it must not block; it
    hands the work on (`ask_then`) and calls `respond(reply_bytes)` once,
    now or from the callback. A subject served again gets the new responder
    (a restarted gateway does not answer twice). Answers the subscription
    id, which Unsubscribe takes. The responder runs from nats-py's read loop
    as each request arrives: no queue of nats-py's stands in between, so
    nothing waits there; the work's own mailbox is the backpressure."""

    subject: str
    responder: Callable[..., None]
    queue: str = ""


@message("exoarmur.nats.unsubscribe", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Unsubscribe:
    sid: int


@message("exoarmur.nats.delivery", timeout=TimeoutCategory.NATS_SUBSCRIBE)
class Delivery:
    sid: int
    subject: str
    data: bytes
    headers: dict[str, str] | None = None
    reply: str = ""


@message("exoarmur.nats.statistics")
class Statistics:
    pass


@attrs.frozen(kw_only=True)
class NatsStatistics:
    connected: bool
    reconnects: int
    disconnects: int
    aborted_sockets: int
    permission_errors: int
    slow_consumer_drops: int  # nats-py's own (pending limits)
    mailbox_drops: int  # the target's mailbox refused a delivery
    subscriptions: int
    replies_lost: int = 0  # served requests whose reply could not be sent
    requests_in_flight: int = 0  # requests and JetStream publishes started, not yet ended


# KV (the KvBucket actor sends these; they run here, on this client).


@message("exoarmur.kv.open", timeout=TimeoutCategory.KV_CREATE)
class KvOpen:
    """Create the bucket if absent (with these settings), else open it."""

    bucket: str
    replicas: int = 1
    history: int = 1


@message("exoarmur.kv.get", timeout=TimeoutCategory.KV_GET)
class KvGet:
    bucket: str
    key: str


@attrs.frozen
class KvEntry:
    key: str
    value: bytes
    revision: int


@message("exoarmur.kv.put", timeout=TimeoutCategory.KV_PUT)
class KvPut:
    bucket: str
    key: str
    value: bytes


@message("exoarmur.kv.create", timeout=TimeoutCategory.KV_PUT)
class KvCreate:
    bucket: str
    key: str
    value: bytes


@message("exoarmur.kv.update", timeout=TimeoutCategory.KV_PUT)
class KvUpdate:
    bucket: str
    key: str
    value: bytes
    last: int


@message("exoarmur.kv.delete", timeout=TimeoutCategory.KV_DELETE)
class KvDelete:
    bucket: str
    key: str
    last: int | None = None


@message("exoarmur.kv.keys", timeout=TimeoutCategory.KV_GET)
class KvKeys:
    bucket: str


@message("exoarmur.kv.watch", timeout=TimeoutCategory.KV_GET)
class KvWatch:
    """Tell the actor at `target` a KvChange for the latest value of every key
    matching `keys`, then for every change after it; answers the watch id.
    After a reconnect or a restart of this connection the watch resumes after
    the last revision it delivered (nothing twice, nothing skipped)."""

    bucket: str
    target: str
    keys: str = ">"


@message("exoarmur.kv.unwatch", timeout=TimeoutCategory.KV_GET)
class KvUnwatch:
    watch: int


@message("exoarmur.kv.change", timeout=TimeoutCategory.KV_GET)
class KvChange:
    watch: int
    key: str
    value: bytes
    revision: int
    deleted: bool


# JetStream streams (the AuditStream actor sends these).


@message("exoarmur.js.stream", timeout=TimeoutCategory.NATS_STREAM_CREATE)
class StreamEnsure:
    """Create the stream if absent; an existing one is left as it is."""

    name: str
    subjects: tuple[str, ...]
    replicas: int = 1
    duplicate_window: float = 120.0


@message("exoarmur.js.publish", timeout=TimeoutCategory.NATS_PUBLISH)
class JsPublish:
    """Publish and wait for the stream's ack. With `msg_id`, a second publish
    of the same id within the stream's duplicate window is acked as a duplicate
    and stored once."""

    subject: str
    data: bytes
    msg_id: str | None = None
    # Stored only if the subject's last message still has this sequence (0:
    # none yet); KV_CONFLICT otherwise. What keeps a writer's chain from forking.
    expected_last_subject_seq: int | None = None


@attrs.frozen
class PubAck:
    stream: str
    seq: int
    duplicate: bool


@message("exoarmur.js.last", timeout=TimeoutCategory.NATS_REQUEST)
class StreamLast:
    """The stream's last message on `subject` (a leader read), or None."""

    stream: str
    subject: str


@message("exoarmur.js.read", timeout=TimeoutCategory.NATS_REQUEST)
class StreamRead:
    """The stream's message at `seq` (a leader read), or None."""

    stream: str
    seq: int


@attrs.frozen
class StreamMessage:
    seq: int
    data: bytes


# ---- the actor -------------------------------------------------------------------


@attrs.define
class _Subscription:
    sid: int
    spec: Subscribe | Serve
    target: ActorRef | None  # Subscribe's; None for Serve
    handle: Any = None  # nats-py's Subscription on the current client
    dropped: int = 0


@attrs.define
class _Watch:
    wid: int
    spec: KvWatch
    target: ActorRef
    last_revision: int = 0  # the last one delivered (or refused): resume after it
    handle: Any = None
    dropped: int = 0


class Subscriptions:
    """The subscriptions and KV watches of one connection, by our own ids.
    Give one instance in the connection's spec kwargs and it outlives the
    connection's restarts: a fresh instance subscribes every one again on its
    new client, and deliveries keep their ids. (Without it each instance
    starts empty.)"""

    def __init__(self) -> None:
        self.records: dict[int, _Subscription] = {}
        self.watches: dict[int, _Watch] = {}
        self.next_id = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def add(self, spec: Subscribe | Serve, target: ActorRef | None) -> _Subscription:
        return _Subscription(self.new_id(), spec, target)


class NatsConnection(Actor):
    mailbox_capacity = 10_000
    concurrency = 256
    # Requests and JetStream publishes started and not yet ended (answered, or
    # timed out): one more is refused at once with OVERLOAD_SHED, so a sender
    # faster than the replies slows down or retries, instead of its requests
    # piling up in nats-py until their deadlines end them.
    requests_limit = 10_000

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
        self.bridge = Bridge()
        self.nc: Any = None
        self.subscriptions = subscriptions if subscriptions is not None else Subscriptions()
        self._kv: dict[str, Any] = {}
        self._js: tuple[Any, Any] | None = None  # (client, its JetStream context)
        self.reconnects = self.disconnects = self.aborted = self.permission_errors = 0
        self.slow_consumer_drops = self.mailbox_drops = 0
        self.replies_lost = 0  # served requests whose reply the connection could not take
        self.requests_in_flight = 0  # counted here, ended on the asyncio side (one thread)
        # Requests made by nats-py's own request task (while not connected): reaped at close.
        self._request_tasks: set[asyncio.Task] = set()

    # ---- lifecycle -------------------------------------------------------------

    async def started(self) -> None:
        system = self.context.system
        if self.options is None:
            from exoarmur.actors.nats.server import ServerInfo

            endpoint = await system.lookup(self.server).ask(ServerInfo())
            self.options = ConnectionOptions(urls=endpoint.urls, token=endpoint.token)
        self.bridge = await open_bridge(self.context)
        deadline = system.now() + system.timeouts.seconds[TimeoutCategory.NATS_CONNECT]
        self.nc = await self._connect(deadline)
        self.context.start_task(self._close_when_gone, self.nc)
        for record in self.subscriptions.records.values():  # a restart: subscribe again
            await self._attach(record)
        for watch in self.subscriptions.watches.values():
            await self._attach_watch(watch)
        self.context.start_task(self._watchdog)

    async def _close_when_gone(self, nc: Any) -> None:
        """Lives as long as this instance: when it crashes (no `stopping` runs
        then), its client is closed, so a fresh instance never runs beside a
        client that still delivers."""
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close(nc)

    async def _connect(self, deadline: float) -> Any:
        assert self.options is not None
        kwargs = self.options.client_kwargs()
        kwargs.update(
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            connect_timeout=max(min(2.0, deadline - self.context.now()), 0.1),
        )
        with anyio.move_on_after(max(deadline - self.context.now(), 0.0)) as scope:
            try:
                nc = await self.bridge.call(nats.connect, **kwargs)
                await self.bridge.call(inline_replies, nc)
                return nc
            except Exception as exc:
                error = coded(exc, timeout=ReasonCode.TIMEOUT_NATS_CONNECT)
                if error is None:
                    raise
                raise error from None
        assert scope.cancelled_caught
        raise error_for(ReasonCode.TIMEOUT_NATS_CONNECT, f"no connection to {', '.join(self.options.urls)}")

    async def stopping(self) -> None:
        nc, self.nc = self.nc, None
        if nc is None:
            return
        tasks = _client_tasks(nc)  # before the drain forgets the subscriptions
        bound = max(self.options.flush_timeout, 1.0) if self.options else 1.0
        with anyio.move_on_after(bound):
            try:
                await self.bridge.call(_drain, nc, bound / 2)
            except Exception:  # noqa: BLE001 - drain failing is why close follows
                pass
        await self._close(nc, tasks)

    async def _close(self, nc: Any, tasks: frozenset[Any] | set[Any] = frozenset()) -> None:
        """Close within a second; a close stuck on a silent peer aborts the socket.
        Afterwards no task of the client is left running (`tasks`: its tasks
        found before a drain, which forgets the subscriptions)."""
        tasks = _client_tasks(nc) | tasks | self._request_tasks  # before the close forgets them
        if not nc.is_closed:
            with anyio.move_on_after(1.0):
                try:
                    await self.bridge.call(nc.close)
                except Exception:  # noqa: BLE001 - closing is best effort (the bridge may be gone); the socket goes below
                    pass
            if not nc.is_closed or _transport(nc) is not None:
                _abort(nc)
        await self._reap(nc, tasks)

    async def _reap(self, nc: Any, tasks: set[Any]) -> None:
        """nats-py's close can stop short (cut at its second, or by a stray
        cancellation inside it), and it cancels the reconnect loop once: that
        cancel is lost when it lands as a refused connect completes (3.11's
        wait_for turns it into the OSError; cf. nats-py #981), and the loop
        would retry forever. With no server left in its pool, its next pick
        ends it; the client's other tasks are cancelled here."""
        nc._server_pool.clear()
        tasks = {task for task in tasks | _client_tasks(nc) if not task.done()}
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        with anyio.move_on_after(1.0):
            try:
                await self.bridge.call(asyncio.wait, tasks)
            except Exception:  # noqa: BLE001 - the bridge may be gone with the instance; the loop still ends itself
                pass

    def _current(self) -> bool:
        """Callbacks of a client this instance no longer owns are ignored."""
        return self.context.cell.actor is self and self.nc is not None

    # ---- the watchdog (nats-py #671) --------------------------------------------

    async def _watchdog(self) -> None:
        assert self.options is not None
        stuck_since: float | None = None
        aborted_at: float | None = None
        while True:
            await anyio.sleep(self.options.ping_interval)
            nc = self.nc
            if nc is None:
                return
            now = self.context.now()
            # Not connected and not closed: reconnecting, or in one of its
            # connect attempts (nats-py says CONNECTING then, not RECONNECTING).
            if nc.is_connected or nc.is_closed:
                stuck_since = aborted_at = None
                continue
            stuck_since = stuck_since if stuck_since is not None else now
            if aborted_at is None and now - stuck_since >= self.options.stuck_after:
                self.aborted += 1
                aborted_at = now
                _abort(nc)
            elif aborted_at is not None and now - aborted_at >= self.options.stuck_after:
                self.nc = None
                await self._close(nc)
                raise ConnectionError("nats client stuck reconnecting after its socket was aborted")

    # ---- callbacks (they run on the asyncio side) -------------------------------

    async def _on_error(self, exc: Exception) -> None:
        if self._current():
            self.bridge.actor_side(self._error, exc)

    def _error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.slow_consumer_drops += 1
            if _audited_drop(self.slow_consumer_drops):
                self._audit(ReasonCode.NATS_SLOW_CONSUMER, f"{self.slow_consumer_drops} dropped so far")
        elif "permissions violation" in str(exc):
            self.permission_errors += 1
            self._audit(ReasonCode.NATS_PERMISSION_DENIED, str(exc))

    async def _on_disconnected(self) -> None:
        if self._current():
            self.disconnects += 1
            self.bridge.actor_side(self.context.report_failure, ReasonCode.NATS_DISCONNECTED, "connection lost")

    async def _on_reconnected(self) -> None:
        if self._current():
            self.reconnects += 1
            if self.subscriptions.watches:  # nats-py's ordered consumers stall ~20 s after a reconnect
                self.bridge.actor_side(self.context.start_task, self._resume_watches)

    async def _resume_watches(self) -> None:
        for watch in list(self.subscriptions.watches.values()):
            old, watch.handle = watch.handle, None
            if old is not None:
                with anyio.move_on_after(1.0):
                    try:
                        await self.bridge.call(old.unsubscribe)
                    except Exception:  # noqa: BLE001 - the old consumer may be gone with the old link
                        pass
            with anyio.move_on_after(self.context.system.timeouts.seconds[TimeoutCategory.KV_GET]):
                await self._attach_watch(watch)

    def _audit(self, code: ReasonCode, detail: str) -> None:
        system = self.context.system
        system.audit.emit(AuditEvent(kind="nats", code=code, at=system.now(), path=self.context.path, detail=detail))

    # ---- calls -------------------------------------------------------------------

    async def _call(
        self,
        code: ReasonCode,
        fn: Callable[..., Awaitable[Any]],
        /,
        *args: Any,
        absent_on: tuple[type[Exception], ...] = (),
        bounded: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Call nats-py until just before the envelope's deadline; its
        exceptions become coded errors (`absent_on` ones: None), and the
        dependency failures among them, running out of time included, are
        reported to the breaker. `bounded=False`: no cancel scope of its own
        (for calls that do not wait on the network, a publish into nats-py's
        buffer: the handler's deadline still bounds them)."""
        if not bounded:
            return await self._attempt(code, fn, args, kwargs, absent_on)
        if self.context.deadline is None:  # in a hook: the operation's default time
            budget = self.context.system.timeouts.seconds[TimeoutCategory(code)]
        else:
            budget = self._remaining() - ANSWER_MARGIN
        with anyio.move_on_after(budget):
            return await self._attempt(code, fn, args, kwargs, absent_on)
        error = error_for(code, "no answer from NATS before the deadline")
        self.context.report_failure(code, error.detail)
        raise error

    async def _call_each(self, code: ReasonCode, calls: list[tuple[Any, ...] | ExoarmurError]) -> list[Deferred]:
        """For a batch handler's run: `calls` (one per message: (fn, *args), or
        the message's coded answer if already known) start at once on the
        asyncio side, in one crossing of the bridge. Each asker is answered
        (its value, or its coded error; a dependency failure is reported) as
        soon as its own call ends on asyncio, when the run's last one does on
        trio. The run waits until just before its latest deadline; each asker
        no longer than its own. An exception that is not NATS's crashes the
        actor once every call has ended."""
        laters = self.context.defer_each()
        pending = [later for later, call in zip(laters, calls, strict=True) if not isinstance(call, ExoarmurError)]
        started = [call for call in calls if not isinstance(call, ExoarmurError)]
        bugs: list[BaseException] = []

        def settle(index: int, result: Any) -> None:
            bug = self._settle(pending[index], code, result)
            if bug is not None:
                bugs.append(bug)

        for later, call in zip(laters, calls, strict=True):
            if isinstance(call, ExoarmurError):  # one bucket's error, shared: each asker's own event
                later.fail(error_for(call.code, call.detail))
        with anyio.move_on_after(self._remaining() - ANSWER_MARGIN):
            nc = self._client()
            if self.bridge.loop is None:
                await _start_each(nc, started, settle)
            else:
                # On trio a crossing of the bridge costs more than waiting for
                # the run's last answer: answered one by one, the askers would
                # come back one by one, a crossing each. The run ends as one.
                for index, result in enumerate(await self.bridge.call(_gather, nc, started)):
                    settle(index, result)
            if bugs:
                raise bugs[0]
            return laters
        detail = "no answer from NATS before the deadline"
        for later in pending:
            if not later.settled:
                self.context.report_failure(code, detail)
                later.fail(error_for(code, detail))
        return laters

    async def _attempt(
        self,
        code: ReasonCode,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        absent_on: tuple[type[Exception], ...],
    ) -> Any:
        try:
            return await self.bridge.call(fn, *args, **kwargs)
        except absent_on:
            return None
        except Exception as exc:
            error = self._coded(exc, code)
            if error is None:
                raise
            raise error from None

    def _coded(self, exc: BaseException, code: ReasonCode) -> ExoarmurError | None:
        """nats-py's exception as its coded error, reported to the breaker if a
        dependency failed; None for any other exception (a bug: the caller
        crashes the actor with it)."""
        error = coded(exc, timeout=code)
        if error is not None and error.code in DEPENDENCY_CODES:
            self.context.report_failure(error.code, error.detail)
        return error

    def _client(self) -> Any:
        if self.nc is None or self.nc.is_closed:
            raise error_for(ReasonCode.NATS_DISCONNECTED, "no client")
        return self.nc

    def _jetstream(self) -> Any:
        """The client's JetStream context, made once per client: its timeout is
        a backstop, `_call` bounds each call by the deadline (a context per
        call costs tens of µs in nats-py)."""
        nc = self._client()
        if self._js is None or self._js[0] is not nc:
            self._js = (nc, nc.jetstream(timeout=JS_BACKSTOP_SECONDS))
            self._kv.clear()
        return self._js[1]

    def _remaining(self) -> float:
        deadline = self.context.deadline
        return max((deadline if deadline is not None else self.context.now()) - self.context.now(), 0.001)

    def _answer_by(self) -> float:
        """When a request ends unanswered (counted as a failed dependency):
        just before the envelope's deadline, an instant on the runtime's
        clock, which is the asyncio side's too (trio-asyncio's loop reads
        trio's), so a request started a pass later still ends in time."""
        margin = ANSWER_MARGIN if self.bridge.loop is None else BRIDGED_ANSWER_MARGIN
        now = self.context.now()
        deadline = self.context.deadline
        remaining = max(deadline - now, 0.001) if deadline is not None else 0.001  # as _remaining()
        return now + max(remaining - margin, 0.001)

    @handles(Publish, batch=True, per_item=True)
    async def publish(self, batch: list[Publish]) -> list[None | ExoarmurError]:
        """A run of publishes in one call (runtime/batch.py), crossing to
        nats-py once: in order, into its buffer as one write; none waits on
        the network unless the buffer is full, and then the flush timeout and
        the run's deadline bound it. A publish nats-py refuses (a bad subject,
        too big, a closed client) is that publish's coded error alone."""
        nc = self._client()
        # On asyncio, connected with room: straight into the buffer. Not on
        # trio: requests and replies started before reach the buffer at the
        # asyncio side's next pass, and this run must go after them.
        results = _buffered_run(nc, batch) if self.bridge.loop is None else None
        if results is None:
            results = await self._call(ReasonCode.TIMEOUT_NATS_PUBLISH, _publish_all, nc, batch, bounded=False)
        answers: list[None | ExoarmurError] = []
        for result in results:
            error = None if result is None else self._coded(result, ReasonCode.TIMEOUT_NATS_PUBLISH)
            if result is not None and error is None:
                raise result  # not NATS's: a bug, a crash
            answers.append(error)
        return answers

    @handles(Flush)
    async def flush(self, m: Flush) -> None:
        nc = self._client()
        await self._call(ReasonCode.TIMEOUT_NATS_PUBLISH, nc.flush, timeout=self._remaining())

    @handles(Request)
    def request(self, m: Request) -> Deferred:
        call = _OneRequest(m.subject, m.data, _response, nats.errors.NoRespondersError, m.headers)
        return self._request(ReasonCode.TIMEOUT_NATS_REQUEST, call)

    def _request(self, code: ReasonCode, call: _OneRequest) -> Deferred:
        """Started at once on the asyncio side (no task, no scope of ours);
        answered when the reply comes, or with `code` (a failed dependency)
        just before the deadline."""
        nc = self._client()
        if self.requests_in_flight >= self.requests_limit:
            raise error_for(
                ReasonCode.OVERLOAD_SHED, f"{self.requests_in_flight} requests in flight (requests_limit)"
            )
        later = self.context.defer()
        self.requests_in_flight += 1
        self.bridge.soon(self._start_request, nc, call, code, self._answer_by(), later)
        return later

    def _start_request(self, nc: Any, call: _OneRequest, code: ReasonCode, answer_by: float, later: Deferred) -> None:
        """On the asyncio side: the request started (`_begin`), ended by its
        reply or by a timer at `answer_by`. Whatever happens here
        reaches the asker (on trio this runs as a loop callback, whose
        exceptions asyncio would only log)."""
        answer = partial(self.context.call_as_self, envelope=later.envelope)
        on_asyncio = self.bridge.loop is None
        loop = asyncio.get_running_loop()
        try:
            future, key = _begin(nc, call, loop)
        except Exception as exc:  # noqa: BLE001 - a bug: this connection crashes, its asker hears so
            self.requests_in_flight -= 1
            self.bridge.actor_side(answer, _raise, exc)
            return
        if key is None:
            self._request_tasks.add(future)
        time_was_up = False

        def time_up() -> None:
            nonlocal time_was_up
            time_was_up = True  # before the cancel: a ReplySlot's callbacks run within it
            future.cancel()

        def ended(_: asyncio.Future) -> None:
            self.requests_in_flight -= 1
            self._request_tasks.discard(future)
            timer.cancel()
            nc._resp_map.pop(key, None)
            # A task asked to stop may still have returned its reply: that counts.
            timed_out = time_was_up and future.cancelled()
            result = nats.errors.TimeoutError() if timed_out else _result(call, future)
            if on_asyncio and not isinstance(result, BaseException):
                self._settle(later, code, result)  # a value: nothing here runs as the actor
            else:
                self.bridge.actor_side(answer, self._answer_request, later, code, result)

        timer = loop.call_at(answer_by, time_up)
        future.add_done_callback(ended)

    def _answer_request(self, context: Any, later: Deferred, code: ReasonCode, result: Any) -> None:
        bug = self._settle(later, code, result)
        if bug is not None:
            raise bug  # not NATS's: this connection crashes, the asker hears ACTOR_CRASHED

    def _settle(self, later: Deferred, code: ReasonCode, result: Any) -> BaseException | None:
        """Answer `later` with a call's value, or its exception coded (a
        dependency failure reported); the exception if it is not NATS's (a
        bug, for the caller to raise). Nothing if the asker was answered
        already (a stop, a run's deadline)."""
        if later.settled:
            return None
        if isinstance(result, asyncio.CancelledError):
            result = StrayCancellation(f"{code}: cancelled by nats-py")
        if not isinstance(result, BaseException):
            later.reply(result)
            return None
        error = self._coded(result, code)
        if error is None:
            return result
        later.fail(error)
        return None

    @handles(Subscribe)
    async def subscribe(self, m: Subscribe) -> int:
        target = self.context.system.lookup(m.target)
        record = self.subscriptions.add(m, target)
        await self._attach(record)
        try:
            await self._call(ReasonCode.TIMEOUT_NATS_SUBSCRIBE, self._client().flush, timeout=self._remaining())
        except ExoarmurError:
            # Not known to the server in time: the asker never learns the id,
            # so nothing may go on delivering to it.
            with anyio.CancelScope(shield=True), anyio.move_on_after(ANSWER_MARGIN):
                await self.bridge.call(_unsubscribe_quietly, record.handle)
            raise
        self.subscriptions.records[record.sid] = record
        return record.sid

    @handles(Serve)
    async def serve(self, m: Serve) -> int:
        for record in self.subscriptions.records.values():
            if isinstance(record.spec, Serve) and record.spec.subject == m.subject:
                record.spec = m  # served again: the new responder, one subscription
                return record.sid
        record = self.subscriptions.add(m, None)
        await self._attach(record)
        # Kept before the flush: if that fails, the asker (a gateway) serves
        # again, and finds this record instead of subscribing twice.
        self.subscriptions.records[record.sid] = record
        await self._call(ReasonCode.TIMEOUT_NATS_SUBSCRIBE, self._client().flush, timeout=self._remaining())
        return record.sid

    def _respond(self, subject: str, data: bytes) -> None:
        """A served request's reply. Connected, it goes straight into
        nats-py's buffer (with `nc.publish`'s checks, as `msg.respond` would;
        on trio from the asyncio side, at its next pass); otherwise through
        this connection's mailbox as a Publish."""
        nc = self.nc
        if nc is None:
            self._publish_later(subject, data)
        elif self.bridge.loop is None:
            if not _buffered(nc, subject, data):
                self._publish_later(subject, data)
        else:
            self.bridge.soon(self._buffer_or_publish_later, nc, subject, data)

    def _buffer_or_publish_later(self, nc: Any, subject: str, data: bytes) -> None:
        if not _buffered(nc, subject, data):  # on the asyncio side
            self.bridge.actor_side(self._publish_later, subject, data)

    def _publish_later(self, subject: str, data: bytes) -> None:
        try:
            self.context.self_ref.tell_nowait(Publish(subject, data))
        except ExoarmurError:
            self.replies_lost += 1  # full or stopping (audited there): the asker hears at its deadline

    async def _attach(self, record: _Subscription) -> None:
        spec = record.spec

        async def deliver(msg: Any) -> None:  # runs on the asyncio side; never blocks
            self.bridge.actor_side(handle, msg)

        def serve(msg: Any) -> None:
            respond = partial(self._respond, msg.reply) if msg.reply else _unanswered
            headers = dict(msg.headers) if msg.headers else None
            self.context.call_as_self(record.spec.responder, msg.data, headers, respond)

        def handle(msg: Any) -> None:
            assert record.target is not None
            try:
                record.target.tell_nowait(
                    Delivery(
                        sid=record.sid,
                        subject=msg.subject,
                        data=msg.data,
                        headers=dict(msg.headers) if msg.headers else None,
                        reply=msg.reply or "",
                    )
                )
            except ExoarmurError as exc:
                record.dropped += 1
                self.mailbox_drops += 1
                if _audited_drop(record.dropped):
                    self._audit(ReasonCode.NATS_SLOW_CONSUMER, f"{spec.subject} -> {spec.target}: {exc.code}")

        if isinstance(spec, Serve):
            # `serve` never blocks nor raises (a responder's crash is this
            # actor's): it can run in nats-py's read loop.
            sink = {"future": Inline(partial(self.bridge.actor_side, serve))}
        else:
            sink = {"cb": deliver, "pending_msgs_limit": spec.pending_msgs, "pending_bytes_limit": spec.pending_bytes}
        record.handle = await self._call(
            ReasonCode.TIMEOUT_NATS_SUBSCRIBE, self._client().subscribe, spec.subject, queue=spec.queue, **sink
        )

    @handles(Unsubscribe)
    async def unsubscribe(self, m: Unsubscribe) -> None:
        """Answered once the server has taken the UNSUB (a flush): from then
        on it routes nothing more here (a request finds no responders)."""
        record = self.subscriptions.records.pop(m.sid, None)
        if record is not None and record.handle is not None:
            await self._call(ReasonCode.TIMEOUT_NATS_SUBSCRIBE, record.handle.unsubscribe)
            await self._call(ReasonCode.TIMEOUT_NATS_SUBSCRIBE, self._client().flush, timeout=self._remaining())

    @handles(Statistics)
    def statistics(self, m: Statistics) -> NatsStatistics:
        return NatsStatistics(
            connected=self.nc is not None and self.nc.is_connected,
            reconnects=self.reconnects,
            disconnects=self.disconnects,
            aborted_sockets=self.aborted,
            permission_errors=self.permission_errors,
            slow_consumer_drops=self.slow_consumer_drops,
            mailbox_drops=self.mailbox_drops,
            subscriptions=len(self.subscriptions.records),
            replies_lost=self.replies_lost,
            requests_in_flight=self.requests_in_flight,
        )

    # ---- KV ------------------------------------------------------------------------

    async def _bucket(self, name: str) -> Any:
        kv = self._kv.get(name)
        if kv is None:
            js = self._jetstream()
            kv = await self._call(ReasonCode.TIMEOUT_KV_GET, js.key_value, name)
            self._kv[name] = kv
        return kv

    @handles(KvOpen, concurrent=True)
    async def kv_open(self, m: KvOpen) -> None:
        js = self._jetstream()
        try:
            kv = await self._call(ReasonCode.TIMEOUT_KV_CREATE, js.key_value, m.bucket)
        except ExoarmurError as exc:
            if exc.code is not ReasonCode.KV_BUCKET_NOT_FOUND:
                raise
            config = KeyValueConfig(bucket=m.bucket, replicas=m.replicas, history=m.history)
            kv = await self._call(ReasonCode.TIMEOUT_KV_CREATE, js.create_key_value, config)
        self._kv[m.bucket] = kv

    @handles(KvGet, batch=True, per_item=True, concurrent=True)
    async def kv_get(self, batch: list[KvGet]) -> list[KvEntry | None | ExoarmurError]:
        """The latest value of each key, read from the stream leader (never a
        direct get, which any replica may answer stale); None if absent or
        deleted. A run of gets crosses to nats-py once."""
        kvs = await self._buckets(batch)
        calls = [kv if isinstance(kv := kvs[m.bucket], ExoarmurError) else _leader_get(m) for m in batch]
        return await self._call_each(ReasonCode.TIMEOUT_KV_GET, calls)

    async def _buckets(self, batch: list[Any]) -> dict[str, Any]:
        """The run's buckets, each opened once: its nats-py handle, or the
        coded error that is the answer of every message for it."""
        kvs: dict[str, Any] = {}
        for name in {m.bucket for m in batch}:
            try:
                kvs[name] = await self._bucket(name)
            except ExoarmurError as exc:
                kvs[name] = exc
        return kvs

    async def _leader_read(
        self, code: ReasonCode, js: Any, stream: str, subject: str | None = None, seq: int | None = None
    ) -> Any:
        """The last message on `subject` (or the one at `seq`) from the stream
        leader; None if there is none."""
        return await self._call(
            code, js.get_msg, stream, seq=seq, subject=subject, direct=False, absent_on=(NotFoundError,)
        )

    @handles(KvPut, batch=True, per_item=True, concurrent=True)
    async def kv_put(self, batch: list[KvPut]) -> list[int | ExoarmurError]:
        """Each put's revision; a run of puts crosses to nats-py once."""
        kvs = await self._buckets(batch)
        calls = [kv if isinstance(kv := kvs[m.bucket], ExoarmurError) else _put(kv, m) for m in batch]
        return await self._call_each(ReasonCode.TIMEOUT_KV_PUT, calls)

    @handles(KvCreate, concurrent=True)
    async def kv_create(self, m: KvCreate) -> int:
        kv = await self._bucket(m.bucket)
        return await self._call(ReasonCode.TIMEOUT_KV_PUT, kv.create, m.key, m.value)

    @handles(KvUpdate, concurrent=True)
    async def kv_update(self, m: KvUpdate) -> int:
        kv = await self._bucket(m.bucket)
        return await self._call(ReasonCode.TIMEOUT_KV_PUT, kv.update, m.key, m.value, last=m.last)

    @handles(KvDelete, concurrent=True)
    async def kv_delete(self, m: KvDelete) -> None:
        kv = await self._bucket(m.bucket)
        await self._call(ReasonCode.TIMEOUT_KV_DELETE, kv.delete, m.key, last=m.last)

    @handles(KvKeys, concurrent=True)
    async def kv_keys(self, m: KvKeys) -> list[str]:
        kv = await self._bucket(m.bucket)
        return sorted(await self._call(ReasonCode.TIMEOUT_KV_GET, kv.keys, absent_on=(NoKeysError,)) or [])

    @handles(KvWatch)
    async def kv_watch(self, m: KvWatch) -> int:
        watch = _Watch(self.subscriptions.new_id(), m, self.context.system.lookup(m.target))
        await self._attach_watch(watch)
        self.subscriptions.watches[watch.wid] = watch
        return watch.wid

    @handles(KvUnwatch)
    async def kv_unwatch(self, m: KvUnwatch) -> None:
        watch = self.subscriptions.watches.pop(m.watch, None)
        if watch is not None and watch.handle is not None:
            await self._call(ReasonCode.TIMEOUT_KV_GET, watch.handle.unsubscribe)

    async def _attach_watch(self, watch: _Watch) -> None:
        """An ordered push consumer from the watch's next revision (or the
        latest value per key, the first time)."""
        spec, prefix = watch.spec, f"$KV.{watch.spec.bucket}."
        if watch.last_revision:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=watch.last_revision + 1
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
        config.ack_policy = AckPolicy.NONE

        async def deliver(msg: Any) -> None:  # the asyncio side; never blocks
            self.bridge.actor_side(handle, msg)

        def handle(msg: Any) -> None:
            revision = msg.metadata.sequence.stream
            if revision <= watch.last_revision:
                return  # seen before a resume
            watch.last_revision = revision
            operation = msg.headers.get(KV_OPERATION) if msg.headers else None
            change = KvChange(watch.wid, msg.subject[len(prefix):], msg.data or b"", revision, operation in ("DEL", "PURGE"))
            try:
                watch.target.tell_nowait(change)
            except ExoarmurError as exc:
                watch.dropped += 1
                self.mailbox_drops += 1
                if _audited_drop(watch.dropped):
                    self._audit(ReasonCode.NATS_SLOW_CONSUMER, f"watch {spec.bucket}/{spec.keys} -> {spec.target}: {exc.code}")

        watch.handle = await self._call(
            ReasonCode.TIMEOUT_KV_GET,
            self._jetstream().subscribe,
            prefix + spec.keys,
            cb=deliver,
            stream=f"KV_{spec.bucket}",
            ordered_consumer=True,
            config=config,
        )

    # ---- streams ---------------------------------------------------------------------

    @handles(StreamEnsure)
    async def stream_ensure(self, m: StreamEnsure) -> None:
        js = self._jetstream()
        code = ReasonCode.TIMEOUT_NATS_STREAM_CREATE
        if await self._call(code, js.stream_info, m.name, absent_on=(NotFoundError,)) is not None:
            return  # it exists: left as it is
        config = StreamConfig(
            name=m.name, subjects=list(m.subjects), num_replicas=m.replicas, duplicate_window=m.duplicate_window
        )
        await self._call(ReasonCode.TIMEOUT_NATS_STREAM_CREATE, js.add_stream, config)

    @handles(JsPublish)
    def js_publish(self, m: JsPublish) -> Deferred:
        """`js.publish` (nats/js/client.py) as the one request it is."""
        headers = {}
        if m.msg_id is not None:
            headers["Nats-Msg-Id"] = m.msg_id
        if m.expected_last_subject_seq is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(m.expected_last_subject_seq)
        call = _OneRequest(m.subject, m.data, _pub_ack, NoStreamResponseError, headers or None)
        return self._request(ReasonCode.TIMEOUT_NATS_PUBLISH, call)

    @handles(StreamLast, concurrent=True)
    async def stream_last(self, m: StreamLast) -> StreamMessage | None:
        js = self._jetstream()
        msg = await self._leader_read(ReasonCode.TIMEOUT_NATS_REQUEST, js, m.stream, m.subject)
        return None if msg is None else StreamMessage(msg.seq, msg.data or b"")

    @handles(StreamRead, concurrent=True)
    async def stream_read(self, m: StreamRead) -> StreamMessage | None:
        js = self._jetstream()
        msg = await self._leader_read(ReasonCode.TIMEOUT_NATS_REQUEST, js, m.stream, seq=m.seq)
        return None if msg is None else StreamMessage(msg.seq, msg.data or b"")


def _audited_drop(count: int) -> bool:
    """Drops are counted one by one and audited at the 1st, 2nd, 4th, 8th...:
    a flood is visible in the log without one event per lost message."""
    return count & (count - 1) == 0


async def _publish_all(nc: Any, batch: list[Publish]) -> list[Exception | None]:
    """On the asyncio side, in order, one result per publish (None, or what
    nats-py raised). Connected, the run's plain publishes go into nats-py's
    buffer as one command, with the checks `nc.publish` makes on each; a
    publish with headers, or any while reconnecting or draining, goes through
    `nc.publish` (which knows the buffer limits of those states)."""
    results: list[Exception | None] = [None] * len(batch)
    fast = _takes_publishes(nc)
    run = _PubRun()
    for index, m in enumerate(batch):
        if fast and not m.headers:
            results[index] = run.add(nc, m)
            continue
        if run.count:  # keep the order: what is gathered goes first
            await _send_run(nc, run)
            run = _PubRun()
        try:
            await nc.publish(m.subject, m.data, reply=m.reply, headers=m.headers)
        except Exception as exc:  # noqa: BLE001 - each publish's own error, coded by the caller
            results[index] = exc
    if run.count:
        await _send_run(nc, run)
    return results


class _PubRun:
    """A run's publishes without headers, gathered as one command: each
    checked as `nc.publish` checks it, once per (subject, reply, size) in
    the run, whose PUB line is then made once too."""

    __slots__ = ("parts", "count", "size", "_heads")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.count = self.size = 0
        self._heads: dict[tuple[str, str, int], bytes] = {}

    def add(self, nc: Any, m: Publish) -> Exception | None:
        """Gathered; or what `nc.publish` would raise for it (nothing gathered)."""
        key = (m.subject, m.reply, len(m.data))
        head = self._heads.get(key)
        if head is None:
            error = _refused(nc, m.subject, m.reply, m.data)
            if error is not None:
                return error
            head = self._heads[key] = b"PUB %s %s %d\r\n" % (m.subject.encode(), m.reply.encode(), key[2])
        self.parts += (head, m.data, b"\r\n")
        self.count += 1
        self.size += key[2]
        return None

    def command(self) -> bytes:
        return b"".join(self.parts)


def _takes_publishes(nc: Any) -> bool:
    """nats-py buffers a publish as `nc.publish` would: connected, not draining."""
    return nc.is_connected and not nc.is_draining_pubs and hasattr(nc, "_send_command")


def _can_buffer(nc: Any) -> bool:
    """nats-py takes a publish into its buffer without a wait: it takes
    publishes, and its flusher is alive to write them."""
    return _takes_publishes(nc) and nc._flusher_task is not None and not nc._flusher_task.done()


def _append(nc: Any, command: bytes, messages: int, payload: int, loop: asyncio.AbstractEventLoop) -> bool:
    """Put `command` in nats-py's buffer as `nc.publish` does, if it has room,
    and kick its flusher (a future on `loop`, the client's); False: no room."""
    if nc._max_pending_size > 0 and nc._pending_data_size + len(command) > nc._max_pending_size:
        return False
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    nc.stats["out_msgs"] += messages
    nc.stats["out_bytes"] += payload
    if nc._flush_queue is not None and nc._flush_queue.empty():
        nc._flush_queue.put_nowait(loop.create_future())
    return True


def _buffered(nc: Any, subject: str, data: bytes, headers: dict[str, str] | None = None, reply: str = "") -> bool:
    """One publish straight into nats-py's buffer, when that needs no wait
    (`_can_buffer`, nothing refused, room). False: it was not (publish it
    through the mailbox, where every state is handled). On the asyncio side."""
    if not _can_buffer(nc) or _refused(nc, subject, reply, data) is not None:
        return False
    command = _command(subject, data, headers, reply)
    return command is not None and _append(nc, command, 1, len(data), asyncio.get_running_loop())


def _buffered_run(nc: Any, batch: list[Publish]) -> list[Exception | None] | None:
    """A run of publishes without headers straight into nats-py's buffer, as
    one command, when none needs a wait: one result per publish (None, or
    what `nc.publish` would raise). None: not so, nothing was buffered
    (`_publish_all` handles every state). On the asyncio side."""
    if not _can_buffer(nc) or any(m.headers for m in batch):
        return None
    results: list[Exception | None] = [None] * len(batch)
    run = _PubRun()
    for index, m in enumerate(batch):
        results[index] = run.add(nc, m)
    if run.count and not _append(nc, run.command(), run.count, run.size, asyncio.get_running_loop()):
        return None
    return results


async def _drain(nc: Any, seconds: float) -> None:
    """`nc.drain`, its wait for the subscriptions bounded by `seconds`: a
    cancel that lands in that wait is swallowed by nats-py, which then
    flushes. A cancel lands only once through trio-asyncio, so only its own
    `drain_timeout` ends that wait; the caller's bound then cuts the flush."""
    nc.options["drain_timeout"] = seconds
    await nc.drain()


def _request_now(nc: Any, subject: str, data: bytes, headers: dict[str, str] | None) -> tuple[ReplySlot, str] | None:
    """nats-py's request (`_request_new_style`) started without a wait: the
    slot the reply settles (from the read loop: `inline_replies`) and
    its key in the client's map, which the caller pops when it ends; or None
    where only `nc.request` will do (a client without that subscription,
    reconnecting, draining, a refused subject, a full buffer).
    The caller bounds the wait."""
    if not nc._resp_sub_prefix:
        return None
    token = nc._nuid.next()
    token.extend(token_hex(2).encode())
    inbox = nc._resp_sub_prefix[:]
    inbox.extend(token)
    if not _buffered(nc, subject, data, headers, inbox.decode()):
        return None
    slot = ReplySlot()
    key = token.decode()
    nc._resp_map[key] = slot
    return slot, key


def _raise(context: Any, exc: BaseException) -> None:
    raise exc


async def _unsubscribe_quietly(handle: Any) -> None:
    """On the asyncio side: drop a subscription the server may not know of;
    a client already gone has dropped it too."""
    try:
        await handle.unsubscribe()
    except nats.errors.Error:
        pass


def _unanswered(data: bytes) -> None:
    """The reply of a request that asked for none (a plain publish): nowhere to go."""


def _command(subject: str, data: bytes, headers: dict[str, str] | None, reply: str) -> bytes | None:
    """The PUB (or HPUB) command `nc.publish` buffers, byte for byte; None
    for a header key nats-py refuses (it raises BadHeaderError)."""
    if headers is None:
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(data), data)
    block = [b"NATS/1.0\r\n"]
    for key, value in headers.items():
        key = key.strip()
        if not key:
            continue
        if not _HEADER_KEY.fullmatch(key):
            return None
        block.append(b"%s: %s\r\n" % (key.encode(), value.strip().translate(_HEADER_NEWLINES).encode()))
    block.append(b"\r\n")
    header = b"".join(block)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(), reply.encode(), len(header), len(header) + len(data), header, data
    )


# nats-py's header rules (nats/aio/client.py): keys are RFC 7230 tokens,
# CR and LF in values become spaces.
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_NO_RESPONDERS = "503"  # the status header of nats' no-responders reply

# What nats-py's publish refuses in a subject (CR/LF would inject protocol).
_SUBJECT_REFUSED = re.compile(r"[ \t\r\n]")


def _refused(nc: Any, subject: str, reply: str, data: bytes) -> Exception | None:
    """What `nc.publish` would raise before buffering a publish."""
    if not subject or _SUBJECT_REFUSED.search(subject) or (reply and _SUBJECT_REFUSED.search(reply)):
        return nats.errors.BadSubjectError()
    if len(data) > nc._max_payload:
        return nats.errors.MaxPayloadError()
    return None


async def _send_run(nc: Any, run: _PubRun) -> None:
    """Buffer the gathered PUB commands as one, then kick the flusher, as
    `nc.publish` does for one."""
    nc.stats["out_msgs"] += run.count
    nc.stats["out_bytes"] += run.size
    await nc._send_command(run.command())
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


@attrs.define  # not frozen: made per request, and a frozen __init__ costs twice as much
class _OneRequest:
    """A call that is one NATS request (a core request, a JetStream publish
    or API call): started straight into nats-py's buffer (`_request_now`, no
    task per call) and its reply read as nats-py's own coroutine reads it
    (`parse` raises nats-py's exception for an error reply; `unanswered` is
    what nats-py raises when nothing answers)."""

    subject: str
    data: bytes
    parse: Callable[[Any], Any]
    unanswered: type[Exception]
    headers: dict[str, str] | None = None


# A call of a run: (coroutine function, *args), or one request.
Call = tuple[Any, ...] | _OneRequest


def _put(kv: Any, m: KvPut) -> _OneRequest | ExoarmurError | tuple[Any, ...]:
    """`kv.put(key, value)` (nats/js/kv.py): a publish to the key's subject,
    answered with the stream's ack."""
    if not _is_key_valid(m.key):
        return (kv.put, m.key, m.value)  # nats-py's own InvalidKeyError
    return _OneRequest(f"{kv._pre}{m.key}", m.value, _acked_sequence, NoStreamResponseError)


def _acked_sequence(msg: Any) -> int:
    return _api_reply(msg)["seq"]


def _pub_ack(msg: Any) -> PubAck:
    reply = _api_reply(msg)
    return PubAck(reply["stream"], reply["seq"], bool(reply.get("duplicate")))


def _response(msg: Any) -> Response:
    return Response(msg.data, dict(msg.headers) if msg.headers else None)


def _leader_get(m: KvGet) -> _OneRequest:
    """`js.get_msg(stream, subject=..., direct=False)` (nats/js/manager.py):
    the key's last message, from the stream leader."""
    request = orjson.dumps({"last_by_subj": f"$KV.{m.bucket}.{m.key}"})
    return _OneRequest(f"$JS.API.STREAM.MSG.GET.KV_{m.bucket}", request, partial(_entry, m.key), ServiceUnavailableError)


def _entry(key: str, msg: Any) -> KvEntry | None:
    """The key's entry in a stream message reply; None if absent or deleted."""
    try:
        stored = _api_reply(msg)["message"]
    except NotFoundError:
        return None
    if stored.get("hdrs") and _operation(base64.b64decode(stored["hdrs"])) in (b"DEL", b"PURGE"):
        return None
    data = stored.get("data")
    return KvEntry(key, base64.b64decode(data) if data else b"", stored["seq"])


def _api_reply(msg: Any) -> dict[str, Any]:
    """A JetStream API reply, or the APIError (a subclass per status) it carries."""
    reply = orjson.loads(msg.data)
    if "error" in reply:
        raise APIError.from_error(reply["error"])
    return reply


def _operation(header: bytes) -> bytes | None:
    """The KV-Operation header's value in a raw header block, if any, as
    nats-py reads it (the name exactly, in this case; the value without its
    leading blanks)."""
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name == b"KV-Operation":
            return value.lstrip(b" \t")
    return None


def _begin(nc: Any, call: Call, loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future | ReplySlot, str | None]:
    """On the asyncio side: the call started. Its future (or slot) ends with the reply
    (a JetStream request: the raw reply, read by `_result`) or the value;
    with the key to pop from the client's reply map when it ends (None: a
    task of nats-py's own, which pops its own)."""
    if isinstance(call, _OneRequest):
        started = _request_now(nc, call.subject, call.data, call.headers)
        if started is not None:
            return started
        # Not now (see _request_now): nats-py's own request, in a task.
        return loop.create_task(nc.request(call.subject, call.data, timeout=JS_BACKSTOP_SECONDS, headers=call.headers)), None
    return loop.create_task(call[0](*call[1:])), None


def _result(call: Call, future: asyncio.Future | ReplySlot) -> Any:
    """An ended call's value, or its exception (CancelledError: cancelled, not by us)."""
    if future.cancelled():
        return asyncio.CancelledError()
    error = future.exception()
    if not isinstance(call, _OneRequest):
        return error or future.result()
    if isinstance(error, nats.errors.NoRespondersError):
        return call.unanswered()
    if error is not None:
        return error
    msg = future.result()
    if msg.headers and msg.headers.get(Header.STATUS) == _NO_RESPONDERS:
        return call.unanswered()
    try:
        return call.parse(msg)
    except Exception as exc:  # noqa: BLE001 - nats-py's error for this call, coded by the caller
        return exc


async def _gather(nc: Any, calls: list[Call]) -> list[Any]:
    """On the asyncio side: every call at once; each one's value or exception."""
    results: list[Any] = [None] * len(calls)
    await _start_each(nc, calls, results.__setitem__)
    return results


async def _start_each(nc: Any, calls: list[Call], settle: Callable[[int, Any], None]) -> None:
    """On the asyncio side: every call at once, each one's value or exception
    handed to `settle(index, result)` as it ends; returns when all have. Cut
    short, the calls still running are cancelled and settle nothing."""
    if not calls:
        return
    loop = asyncio.get_running_loop()
    all_ended = loop.create_future()
    running = [len(calls)]

    def ended(index: int, future: asyncio.Future) -> None:
        nc._resp_map.pop(keys[index], None)
        settle(index, _result(calls[index], future))
        running[0] -= 1
        if not running[0] and not all_ended.done():
            all_ended.set_result(None)

    futures, keys = [], []
    for index, call in enumerate(calls):
        future, key = _begin(nc, call, loop)
        callback = partial(ended, index)
        future.add_done_callback(callback)
        futures.append((future, callback))
        keys.append(key)
    try:
        await all_ended
    finally:
        for (future, callback), key in zip(futures, keys):
            if not future.done():
                future.remove_done_callback(callback)
                future.cancel()
                nc._resp_map.pop(key, None)


def _client_tasks(nc: Any) -> set[Any]:
    """The tasks nats-py runs for a client, those still running: its own, each
    subscription's, and a JetStream consumer's heartbeat and flow-control
    checks (which its close leaves running)."""
    tasks = {nc._reading_task, nc._ping_interval_task, nc._flusher_task, nc._reconnection_task}
    for sub in nc._subs.values():
        tasks.add(sub._wait_for_msgs_task)
        jsi = getattr(sub, "_jsi", None)
        if jsi is not None:
            tasks.update((getattr(jsi, "_hbtask", None), getattr(jsi, "_fctask", None)))
    return {task for task in tasks if task is not None and not task.done()}


def _transport(nc: Any) -> Any:
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    return getattr(writer, "transport", None)


def _abort(nc: Any) -> None:
    """Drop the socket now (nats-py has no public way): a reconnect or close
    stuck writing to a silent peer then moves on."""
    transport = _transport(nc)
    if transport is not None:
        transport.abort()

