"""The health and metrics server (actors/app/health.py) on both backends,
over real loopback sockets: the routes, readiness with its reasons, the
Prometheus text that prometheus-client parses back, and what a bad or
greedy client gets. (Against a real `exoarmur run` and a NATS outage:
tests/integration/test_operating.py.)"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter

import anyio
import h11
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exoarmur.actors.app.health import MAX_CONNECTIONS, HealthServer, ServingAt
from exoarmur.actors.app.http_config import HttpConfig
from exoarmur.actors.app.metrics import AuditCounts, Observed
from exoarmur.actors.app.readiness import Readiness
from exoarmur.actors.nats import Get, NatsStatistics, Statistics, StreamLast
from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, handles, message
from exoarmur.supervisors import BreakerPolicy, ChildSpec, Strategy, Supervisor, SupervisorSpec


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    """Real clocks: real sockets (trio's MockClock would jump past every wait)."""
    if request.param == "trio":
        return ("trio", {})
    return ("asyncio", {"loop_factory": asyncio.SelectorEventLoop})


class Connection(Actor):
    """Answers what the readiness check asks a NATS connection; `connected` as set."""

    def __init__(self, *, connected: bool = True) -> None:
        self.connected = connected

    @handles(Statistics)
    def statistics(self, m: Statistics) -> NatsStatistics:
        return NatsStatistics(connected=self.connected, reconnects=2, disconnects=3, aborted_sockets=0,
                              permission_errors=0, slow_consumer_drops=0, mailbox_drops=0, subscriptions=0)  # fmt: skip

    @handles(StreamLast)
    def last(self, m: StreamLast) -> None:
        return None


class Bucket(Actor):
    @handles(Get)
    def get(self, m: Get) -> None:
        return None


@message("test.health.fail")
class Fail:
    pass


class Flaky(Actor):
    @handles(Fail)
    def fail(self, m: Fail) -> None:
        self.context.report_failure(ReasonCode.TIMEOUT_KV_GET, "the store is slow")


READINESS = Readiness(connection="nats/connection", buckets={"b1": "store/b1"}, streams=(("S", "s.one"),), roots=("store",))


async def serve(system: ActorSystem, *, readiness: Readiness = READINESS, port: int = 0) -> tuple[str, Observed]:
    observed = Observed(audit=AuditCounts(system.audit), appends={"controls": Counter({"stored": 4})})
    system.audit = observed.audit
    kwargs = {"http": HttpConfig(port=port), "readiness": readiness, "observed": observed, "owner": "p-test",
              "breaker_roots": ("store",)}  # fmt: skip
    url = await (await system.spawn(HealthServer, name="http", kwargs=kwargs)).ask(ServingAt())
    return url, observed


async def request(
    url: str, target: str, *, method: str = "GET", raw: bytes | None = None, accept: str = ""
) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as stream:
        client = h11.Connection(h11.CLIENT)
        if raw is not None:
            await stream.send(raw)
        else:
            headers = [("host", host), *([("accept", accept)] if accept else [])]
            await stream.send(client.send(h11.Request(method=method, target=target, headers=headers)) + client.send(h11.EndOfMessage()))
        status, headers, body = 0, {}, b""
        with anyio.fail_after(10):
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    try:
                        client.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        client.receive_data(b"")
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, headers, body


@pytest.mark.anyio
async def test_livez_and_healthz_answer_ok_and_head_has_no_body():
    async with ActorSystem() as system:
        url, _ = await serve(system)
        assert url.startswith("http://127.0.0.1:")
        for path in ("/livez", "/healthz"):
            status, headers, body = await request(url, path)
            assert (status, body, headers["content-type"]) == (200, b"ok\n", "text/plain")
        status, headers, body = await request(url, "/livez", method="HEAD")
        assert (status, body, headers["content-length"]) == (200, b"", "3")


async def readiness_until(url: str, holds, *, timeout: float = 5.0) -> tuple[int, dict]:
    """/readyz until `holds(status, result)` (an answer is reused for a second)."""
    with anyio.fail_after(timeout):
        while True:
            status, _, body = await request(url, "/readyz")
            if holds(status, result := json.loads(body)):
                return status, result
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_readyz_is_503_naming_each_failed_check_then_200_once_all_answer():
    async with ActorSystem() as system:
        url, _ = await serve(system)
        status, result = await readiness_until(url, lambda status, result: True)
        assert status == 503 and result["ready"] is False
        assert result["checks"]["nats"].startswith("ACTOR_NOT_FOUND")
        assert result["checks"]["bucket b1"].startswith("ACTOR_NOT_FOUND")
        assert result["checks"]["stream s.one"].startswith("ACTOR_NOT_FOUND")
        connection = await system.spawn(Connection, name="nats/connection", kwargs={"connected": False})
        await system.spawn(Bucket, name="store/b1")
        status, result = await readiness_until(url, lambda status, result: result["checks"]["bucket b1"] == "ok")
        assert status == 503 and result["checks"]["nats"] == "NATS_DISCONNECTED: not connected", result
        await system.stop(connection)
        await system.spawn(Connection, name="nats/connection")
        status, result = await readiness_until(url, lambda status, result: status == 200)
        assert result["ready"] is True and set(result["checks"].values()) == {"ok"}


@pytest.mark.anyio
async def test_readyz_answers_probes_faster_than_a_second_from_one_check():
    async with ActorSystem() as system:
        url, _ = await serve(system, readiness=Readiness(connection="nats/connection", buckets={}, streams=()))
        connection = await system.spawn(Connection, name="nats/connection")
        for _ in range(20):
            assert (await request(url, "/readyz"))[0] == 200
        assert connection.statistics().processed == 1


@pytest.mark.anyio
async def test_readyz_names_an_open_breaker_of_a_top_level_supervisor():
    async with ActorSystem() as system:
        readiness = Readiness(connection="nats/connection", buckets={}, streams=(), roots=("store",))
        url, _ = await serve(system, readiness=readiness)
        await system.spawn(Connection, name="nats/connection")
        flaky = ChildSpec("flaky", Flaky, breaker=BreakerPolicy(threshold=1, cooldown=60.0))
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(flaky,))
        await system.spawn(Supervisor, name="store", kwargs={"spec": spec})
        await system.spawn(Supervisor, name="tenants", kwargs={"spec": spec})  # not a root of readiness
        await system.lookup("tenants/flaky").tell(Fail())
        await anyio.sleep(1.1)  # past the reuse of the last answer
        assert (await request(url, "/readyz"))[0] == 200  # a tenant's open breaker is that tenant's
        await system.lookup("store/flaky").tell(Fail())
        status, result = await readiness_until(url, lambda status, result: status == 503)
        assert result["checks"]["breakers"] == "BREAKER_OPEN: store/flaky"
        families = {f.name: f for f in text_string_to_metric_families((await request(url, "/metrics"))[2].decode())}
        states = {s.labels["state"]: s.value for s in families["exoarmur_breaker_state"].samples if s.labels["path"] == "store/flaky"}
        assert states == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
        opened = [s for s in families["exoarmur_breaker_transitions"].samples if s.name.endswith("_total")]
        assert [(s.labels["state"], s.value) for s in opened] == [("open", 2.0)]  # the tenant's and the store's
        assert {s.labels["path"] for s in families["exoarmur_breaker_state"].samples} == {"store/flaky"}


@pytest.mark.anyio
async def test_metrics_parse_back_and_counters_outlive_the_actors_that_counted():
    async with ActorSystem() as system:
        url, observed = await serve(system)
        await system.spawn(Connection, name="nats/connection")
        bucket = await system.spawn(Bucket, name="store/b1")
        for _ in range(5):
            await bucket.ask(Get("k"))
        with pytest.raises(ExoarmurError):
            await system.lookup("store/none").ask(Get("k"))
        await system.stop(bucket)
        status, headers, body = await request(url, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        processed = {s.labels["actor"]: s.value for s in families["exoarmur_envelopes_processed"].samples if s.name.endswith("_total")}
        assert processed["Bucket"] == 5.0  # its actor is gone; its count is not
        live = {s.labels["actor"]: s.value for s in families["exoarmur_actors"].samples}
        assert live.get("Bucket") == 0 and live["HealthServer"] == 1  # gone, its type still shown
        rejected = {s.labels["code"]: s.value for s in families["exoarmur_envelopes_rejected"].samples if s.name.endswith("_total")}
        assert rejected["ACTOR_NOT_FOUND"] == 1.0
        nats = {f: families[f].samples[0].value for f in ("exoarmur_nats_connected", "exoarmur_nats_reconnects")}
        assert nats == {"exoarmur_nats_connected": 1.0, "exoarmur_nats_reconnects": 2.0}
        appends = [(s.labels, s.value) for s in families["exoarmur_audit_appends"].samples if s.name.endswith("_total")]
        assert appends == [({"chain": "controls", "result": "stored"}, 4.0)]
        assert families["exoarmur_info"].samples[0].labels["owner"] == "p-test"
        assert "process_resident_memory_bytes" in families or "process_cpu_seconds" in families
        status, headers, body = await request(url, "/metrics", accept="application/openmetrics-text; version=1.0.0")
        assert headers["content-type"].startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")


@pytest.mark.anyio
async def test_wrong_paths_methods_and_garbage_get_4xx_and_keep_alive_serves_several():
    async with ActorSystem() as system:
        url, _ = await serve(system)
        status, _, body = await request(url, "/admin")
        assert status == 404 and b"/metrics" in body
        status, headers, _ = await request(url, "/livez", method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        status, _, _ = await request(url, "", raw=b"\x16\x03\x01 not http at all\r\n\r\n")
        assert status == 400
        status, _, _ = await request(url, "", raw=b"GET /livez HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 40_000 + b"\r\n\r\n")
        assert status in (400, 431)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            seen = b""
            with anyio.fail_after(5):
                while seen.count(b"200 OK") < 2:
                    seen += await stream.receive()


@pytest.mark.anyio
async def test_connections_over_the_limit_are_closed_unread_and_silent_ones_let_go():
    async with ActorSystem() as system:
        url, _ = await serve(system)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        idle = [await anyio.connect_tcp(host, int(port)) for _ in range(MAX_CONNECTIONS)]
        try:
            await anyio.sleep(0.2)  # each taken in by the server
            async with await anyio.connect_tcp(host, int(port)) as one_more:
                with anyio.fail_after(5):
                    assert await read_to_end(one_more) == b""  # closed, nothing answered
        finally:
            for stream in idle[1:]:
                await stream.aclose()
        with anyio.fail_after(5):  # the silent one is let go after IDLE seconds
            assert await read_to_end(idle[0]) == b""
        await idle[0].aclose()
        assert (await request(url, "/livez"))[0] == 200


async def read_to_end(stream) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return data


@pytest.mark.anyio
async def test_no_request_ends_the_server_not_even_a_hostile_one():
    """Requests that once raised inside a connection: an Accept header
    prometheus-client cannot read, a HEAD whose body is malformed. Each ends
    its own connection at most; the server answers on, and nothing crashed."""
    async with ActorSystem() as system:
        url, _ = await serve(system)
        status, headers, body = await request(url, "/metrics", accept="application/openmetrics-text; version=abc")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        raw = b"HEAD /livez HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
        host, port = url.removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(raw)
            with anyio.fail_after(5):
                await read_to_end(stream)
        assert (await request(url, "/livez"))[0] == 200
        assert [e for e in system.audit.inner.events if e.kind == "crashed"] == []


@pytest.mark.anyio
async def test_a_port_in_use_is_config_invalid_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with ActorSystem() as system:
            with pytest.raises(ExoarmurError) as caught:
                await serve(system, port=port)
    assert caught.value.code is ReasonCode.CONFIG_INVALID
    assert f"cannot listen on 127.0.0.1:{port}" in caught.value.detail and "EXOARMUR_HTTP__PORT" in caught.value.detail

