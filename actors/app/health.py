"""The health and metrics server: HTTP/1.1 on a loopback port, on either backend.

    GET /livez     200 "ok": the event loop answers (/healthz is the same)
    GET /readyz    200 or 503, JSON: each check and why it fails (actors/app/readiness.py)
    GET /metrics   the Prometheus text format (actors/app/metrics.py)

An actor that listens with anyio and speaks HTTP with h11 (sans-I/O), so it
runs wherever the process runs: asyncio or trio. What it guards against:
- at most MAX_CONNECTIONS at once; one more is closed at once, unread;
- a request head larger than MAX_HEAD is answered 431, one that is not
  HTTP 400;
- a connection lives CONNECTION_LIFETIME seconds at most, and IDLE seconds
  without a byte from its client;
- only GET and HEAD (405 otherwise), only the paths above (404 otherwise);
- whatever else goes wrong with one connection ends that connection only
  (logged, `http.connection_failed`), never the server.
A port it cannot listen on stops the start with CONFIG_INVALID naming it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from http import HTTPStatus
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import attrs
import h11
import orjson
import sniffio
from prometheus_client.exposition import choose_encoder
from anyio.abc import SocketAttribute

from exoarmur.actors.app.http_config import HttpConfig
from exoarmur.actors.app.metrics import Observed, exposition
from exoarmur.actors.app.readiness import READY_CHECK, Readiness
from exoarmur.actors.app.status import exoarmur_version
from exoarmur.actors.nats import NatsStatistics, Statistics
from exoarmur.runtime import Actor, ExoarmurError, InvalidInput, ReasonCode, handles, message
from exoarmur.runtime.logs import logged
from exoarmur.supervisors import describe_system

__all__ = ["HealthServer", "ServingAt"]

LOG = logging.getLogger("exoarmur.http")
MAX_CONNECTIONS = 16
MAX_HEAD = 16 * 1024
CONNECTION_LIFETIME = 10.0
READY_FRESH = 1.0  # seconds a /readyz answer is reused
IDLE = 2.0  # seconds a connection may stay silent before a request, or within one
READ_CHUNK = 4096
Answer = tuple[int, str, bytes]  # status, content type, body


@message("exoarmur.http.serving_at")
@attrs.frozen
class ServingAt:
    """Answers the server's base URL ("http://127.0.0.1:9464")."""


class HealthServer(Actor):
    mailbox_capacity = 4

    def __init__(
        self, *, http: HttpConfig, readiness: Readiness, observed: Observed, owner: str, breaker_roots: tuple[str, ...] = ()
    ) -> None:
        self.http = http
        self.breaker_roots = breaker_roots  # whose children's breakers /metrics shows
        self.readiness = readiness
        self.observed = observed
        self.owner = owner
        self.url = ""
        self.slots = anyio.CapacityLimiter(MAX_CONNECTIONS)
        self.failures = 0  # connections ended by something other than the client leaving
        self.ready_lock = anyio.Lock()
        self.last_ready: tuple[float, Answer] | None = None  # (when, the answer)

    async def started(self) -> None:
        try:
            self.listener = await anyio.create_tcp_listener(local_host=self.http.address, local_port=self.http.port)
        except OSError as exc:
            raise InvalidInput(
                ReasonCode.CONFIG_INVALID,
                f"http: cannot listen on {self.http.address}:{self.http.port}: {exc.strerror or exc}; "
                "set [http] port (0: any free port) or EXOARMUR_HTTP__PORT",
            ) from None
        host, port = self.listener.listeners[0].extra(SocketAttribute.local_address)[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.context.start_task(self._serve)

    async def _serve(self) -> None:
        async with self.listener:  # closed when this instance ends (the task is cancelled)
            await self.listener.serve(self._connection)

    @handles(ServingAt)
    def serving_at(self, m: ServingAt) -> str:
        return self.url

    # ---- one connection ------------------------------------------------------------

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            try:
                self.slots.acquire_on_behalf_of_nowait(stream)
            except anyio.WouldBlock:
                return  # no slot: closed at once, nothing read (a flood holds no task)
            try:
                with anyio.move_on_after(CONNECTION_LIFETIME):
                    await self._requests(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
                pass  # the client went away
            except Exception as exc:  # one connection's surprise never ends the server
                self.failures += 1
                if self.failures & (self.failures - 1) == 0:  # the 1st, 2nd, 4th...: seen, not a flood
                    logged(LOG, logging.WARNING, "http.connection_failed", f"a connection failed: {exc!r}",
                           path=self.context.path, failures=self.failures)  # fmt: skip
            finally:
                self.slots.release_on_behalf_of(stream)

    async def _requests(self, stream: anyio.abc.ByteStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        while True:
            try:
                request = await _next_request(conn, stream)
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    with contextlib.suppress(h11.LocalProtocolError):  # e.g. a HEAD's: no body may follow
                        await _send(stream, conn, "GET", (exc.error_status_hint, "text/plain", b"bad request\n"))
                return
            if request is None:
                return
            method = request.method.decode("ascii", "replace")
            accept = b",".join(value for name, value in request.headers if name == b"accept").decode("latin-1")
            await _send(stream, conn, method, await self._answer(method, request.target, accept))
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _answer(self, method: str, target: bytes, accept: str) -> Answer:
        path = target.split(b"?", 1)[0].decode("ascii", "replace")
        route = ROUTES.get(path)
        if route is None:
            return 404, "text/plain", b"not found: /livez, /healthz, /readyz, /metrics\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET or HEAD only\n"
        return await route(self, accept)

    # ---- the routes -----------------------------------------------------------------

    async def _live(self, accept: str) -> Answer:
        return 200, "text/plain", b"ok\n"

    async def _ready(self, accept: str) -> Answer:
        """One check at a time, its answer reused for READY_FRESH seconds: probes
        that come faster cost no more work (nor audit events, when checks fail)."""
        async with self.ready_lock:
            now = self.context.now()
            if self.last_ready is None or now - self.last_ready[0] >= READY_FRESH:
                self.last_ready = (now, await self._check())
            return self.last_ready[1]

    async def _check(self) -> Answer:
        with anyio.move_on_after(READY_CHECK * 2):
            result = await self.readiness.check(self.context.system)
            return (200 if result["ready"] else 503), "application/json", orjson.dumps(result) + b"\n"
        return 503, "application/json", orjson.dumps({"ready": False, "checks": {"readiness": "DEADLINE_EXCEEDED"}}) + b"\n"

    async def _metrics(self, accept: str) -> Answer:
        """The text format, or OpenMetrics when the scraper asks for it."""
        system = self.context.system
        try:
            nats: NatsStatistics | None = await system.lookup(self.readiness.connection).ask(Statistics(), timeout=READY_CHECK)
        except ExoarmurError:
            nats = None
        try:
            with anyio.fail_after(READY_CHECK):
                nodes = await describe_system(system, roots=self.breaker_roots)
        except (ExoarmurError, TimeoutError):
            nodes = []
        info = {"version": exoarmur_version(), "backend": sniffio.current_async_library(), "owner": self.owner,
                "python": platform.python_version(), "pid": str(os.getpid())}  # fmt: skip
        try:
            encoder, content_type = choose_encoder(accept)
        except (ValueError, TypeError):  # an Accept header it cannot read: the plain text format
            encoder, content_type = choose_encoder("")
        body = exposition(
            encoder,
            totals=system.totals(),
            dead_letters=system.dead_letters.total,
            observed=self.observed,
            nodes=nodes,
            nats=nats,
            info=info,
        )
        return 200, content_type, body


ROUTES: dict[str, Callable[[HealthServer, str], Awaitable[Answer]]] = {
    "/livez": HealthServer._live,
    "/healthz": HealthServer._live,
    "/readyz": HealthServer._ready,
    "/metrics": HealthServer._metrics,
}


async def _next_request(conn: h11.Connection, stream: anyio.abc.ByteStream) -> h11.Request | None:
    """The next request's head (a body, which GET has not, is read and
    dropped); None when the client closed the connection."""
    request = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                with anyio.fail_after(IDLE):
                    data = await stream.receive(READ_CHUNK)
            except (anyio.EndOfStream, TimeoutError):  # closed, or silent too long: done
                data = b""
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _send(stream: anyio.abc.ByteStream, conn: h11.Connection, method: str, answer: Answer) -> None:
    status, content_type, body = answer
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
    ]
    if status == 405:
        headers.append(("allow", "GET, HEAD"))
    if status >= 400 and status != 404:
        headers.append(("connection", "close"))
    out = conn.send(h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase))
    if method != "HEAD":
        out += conn.send(h11.Data(data=body))
    out += conn.send(h11.EndOfMessage())
    await stream.send(out)
