"""Random requests at a gateway (through a loopback connection): every one
gets exactly one reply, a value or a code; the gateway and the connection
keep running; nothing reaches an actor that it does not export, and a
supervisor behind the gateway never escalates."""

from __future__ import annotations

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exoarmur.actors.nats import Request
from exoarmur.actors.remote import gateway_subject
from exoarmur.actors.remote.wire import decode_reply
from exoarmur.runtime import ActorSystem, ExoarmurError, ReasonCode
from exoarmur.supervisors import ChildSpec, Strategy, Supervisor, SupervisorSpec
from tests.actors.remote.support import EXPORTED, RemoteCounter, looped, remote
from tests.runtime.support import Get

pytestmark = pytest.mark.anyio

REPLY_SECONDS = 5.0  # every message below is answered at once; this only bounds a hang

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
TEXT = st.none() | st.text(max_size=6)
# Wire names and bodies that decode: exported (drawn most), handled but
# local, the supervisor's own signals, the connection's, and unknown. (Weights
# are repeats in a sampled_from: `one_of` does not weigh repeated strategies.)
BODIES = {
    "test.kernel.add": st.fixed_dictionaries({"n": st.integers(-3, 3)}),
    "test.kernel.get": st.just({}),
    "test.kernel.crash": st.just({}),
    "test.remote.peek": st.just({}),
    "test.remote.local": st.just({}),
    "exoarmur.supervisor.escalate": st.fixed_dictionaries({"last": st.text(max_size=8)}),
    "exoarmur.supervisor.restart_due": st.fixed_dictionaries({"ticket": st.integers(0, 3)}),
    "exoarmur.nats.unsubscribe": st.fixed_dictionaries({"sid": st.integers(0, 3)}),
    "no.such.message": st.just({}),
}
NAMES = st.sampled_from(["test.kernel.add"] * 4 + ["test.kernel.get"] * 2 + ["test.remote.peek"] * 2 + sorted(BODIES))
MESSAGES = NAMES.flatmap(lambda name: st.tuples(st.just(name), BODIES[name]))
MILLISECONDS = st.integers(-5, 10_000) | st.sampled_from([1, 2**63 - 1])


@st.composite
def envelopes(draw) -> bytes:
    """Mostly well formed (so most reach the gateway's checks), three in
    seven corrupted: a header dropped, one added, or one replaced by any JSON."""
    name, body = draw(MESSAGES)
    headers = {"v": 1, "m": name, "b": body, "ms": draw(MILLISECONDS), "a": draw(st.integers(1, 3))}
    headers.update({key: draw(TEXT) for key in ("t", "s", "c", "tr", "k")})
    corruption = draw(st.sampled_from(["none"] * 4 + ["drop", "add", "replace"]))
    if corruption == "drop":
        del headers[draw(st.sampled_from(sorted(headers)))]
    elif corruption == "add":
        headers[draw(st.text(max_size=3))] = draw(JSON)
    elif corruption == "replace":
        headers[draw(st.sampled_from(sorted(headers)))] = draw(JSON)
    try:
        return orjson.dumps(headers)
    except orjson.JSONEncodeError:  # NaN, an int past 64 bits: written by hand instead
        return repr(headers).encode()


TARGETS = st.sampled_from(["counter"] * 4 + ["sup/worker"] * 2 + ["sup"] * 2 + ["gateway", "wire", "nobody", ""])
MODES = st.sampled_from([b"ask", b"tell"] * 4 + [b"ASK", b""])
FRAMED = st.builds(lambda mode, path, envelope: b"%s %s\n%s" % (mode, path.encode(), envelope), MODES, TARGETS, envelopes())
ANY_BYTES = st.binary(max_size=40)
REQUESTS = st.lists(
    st.sampled_from([FRAMED] * 4 + [ANY_BYTES]).flatmap(lambda strategy: strategy), min_size=3, max_size=12
)

ANSWERABLE = {
    ReasonCode.ENVELOPE_INVALID,
    ReasonCode.DEADLINE_EXCEEDED,
    ReasonCode.ACTOR_NOT_FOUND,
    ReasonCode.NOT_EXPORTED,
    ReasonCode.ACTOR_CRASHED,  # test.kernel.crash, which the counter exports
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(requests=REQUESTS)
async def test_every_request_gets_one_reply_and_only_exported_messages_are_delivered(requests):
    spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(ChildSpec("worker", RemoteCounter),))
    async with ActorSystem(name="a") as system, looped(system) as loop:
        await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
        for data in requests:
            with anyio.fail_after(REPLY_SECONDS):
                response = await loop.wire.ask(Request(gateway_subject("a"), data))
            try:
                decode_reply(response.data)
            except ExoarmurError as exc:
                assert exc.code in ANSWERABLE, (exc.code, exc.detail, data)
        assert loop.replies == [1] * len(requests)
        assert set(loop.handled) <= EXPORTED
        assert system.fatal is None and not any(e.code is ReasonCode.ESCALATED for e in system.audit.events)
        assert not any(e.kind == "crashed" and e.path in ("wire", "gateway") for e in system.audit.events)
        assert isinstance(await remote(system, "counter").ask(Get()), int)
        assert isinstance(await remote(system, "sup/worker").ask(Get()), int)
