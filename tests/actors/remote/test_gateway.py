"""The gateway, through a loopback connection (no server): only exported
messages reach an actor from the wire, supervision signals never do, and no
remote deadline lies further out than the gateway's cap."""

from __future__ import annotations

import math

import anyio
import pytest

from exoarmur.actors.nats import Request
from exoarmur.actors.remote import MAX_REMOTE_DEADLINE, Gateway, gateway_subject
from exoarmur.actors.remote.wire import decode_reply, frame
from exoarmur.runtime import ActorSystem, ExoarmurError, ReasonCode
from exoarmur.supervisors import ChildSpec, Strategy, Supervisor, SupervisorSpec
from exoarmur.supervisors.messages import Escalate
from tests.actors.remote.support import Local, Peek, RemoteCounter, code_of, looped, remote, wire_envelope
from tests.runtime.support import Add, Get, Sleep

pytestmark = pytest.mark.anyio

INT64_MAX = 2**63 - 1


async def raw_request(system: ActorSystem, mode: bytes, path: str, envelope: bytes) -> object:
    """What the gateway answers a hand-written request: the value, or the coded error raised."""
    response = await system.lookup("wire").ask(Request(gateway_subject("a"), frame(mode, path, envelope)))
    return decode_reply(response.data)


def refusals(system: ActorSystem, code: ReasonCode) -> list[tuple[str, str | None, str | None]]:
    """(kind, path, the wire name its detail begins with) of each refusal audited with `code`."""
    return [(e.kind, e.path, e.detail.split(":")[0]) for e in system.audit.events if e.code is code]


class TestExports:
    @pytest.mark.parametrize("mode", ["ask", "tell"])
    async def test_a_forged_escalate_to_a_healthy_supervisor_is_refused_and_the_tree_runs_on(self, mode):
        """The supervisor's own escalate signal sent through the gateway is
        NOT_EXPORTED, audited once there (and once at the sender); the
        supervisor does not stop its children nor escalate."""
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE, children=(ChildSpec("worker", RemoteCounter),))
        async with ActorSystem(name="a") as system, looped(system):
            await system.spawn(Supervisor, name="sup", kwargs={"spec": spec})
            send = getattr(remote(system, "sup"), mode)
            assert await code_of(send(Escalate("worker crashed 4 times"))) is ReasonCode.NOT_EXPORTED
            assert refusals(system, ReasonCode.NOT_EXPORTED) == [
                ("rejected", "gateway", "exoarmur.supervisor.escalate"),
                ("remote", "sup", "exoarmur.supervisor.escalate"),
            ]
            assert await system.lookup("sup/worker").ask(Add(2)) == 2
            assert await remote(system, "sup/worker").ask(Add(1)) == 3
            assert system.fatal is None and not system.failed.is_set()
            assert refusals(system, ReasonCode.ESCALATED) == []
            assert "sup" in system.paths()

    @pytest.mark.parametrize("mode", ["ask", "tell"])
    async def test_a_message_the_target_handles_but_does_not_export_is_refused(self, mode):
        async with ActorSystem(name="a") as system, looped(system) as loop:
            send = getattr(remote(system, "counter"), mode)
            assert await code_of(send(Local())) is ReasonCode.NOT_EXPORTED
            assert refusals(system, ReasonCode.NOT_EXPORTED)[0] == ("rejected", "gateway", "test.remote.local")
            assert Local not in loop.handled
            assert await system.lookup("counter").ask(Local()) == "local"  # handled, locally

    async def test_the_gateway_itself_and_the_connection_export_nothing(self):
        """Not the connection's Request (a relay for any peer), not anything of the gateway's."""
        async with ActorSystem(name="a") as system, looped(system):
            for path in ("wire", "gateway"):
                assert await code_of(remote(system, path).ask(Get())) is ReasonCode.NOT_EXPORTED

    async def test_exported_messages_are_asked_and_told(self):
        async with ActorSystem(name="a") as system, looped(system) as loop:
            counter = remote(system, "counter")
            assert await counter.ask(Add(5)) == 5
            assert await counter.tell(Add(2)) is None
            assert await counter.ask(Get()) == 7
            assert loop.replies == [1, 1, 1]

    async def test_no_such_actor_and_no_such_gateway_are_actor_not_found(self):
        async with ActorSystem(name="a") as system, looped(system):
            assert await code_of(remote(system, "nobody").ask(Get())) is ReasonCode.ACTOR_NOT_FOUND
            assert await code_of(remote(system, "counter", system_name="b").ask(Get())) is ReasonCode.ACTOR_NOT_FOUND


class TestDeadlineCap:
    async def test_a_deadline_of_int64_max_ms_is_cut_to_the_default_cap(self):
        async with ActorSystem(name="a") as system, looped(system):
            left, _, _ = await raw_request(system, b"ask", "counter", wire_envelope("test.remote.peek", {}, ms=INT64_MAX))
            assert MAX_REMOTE_DEADLINE - 1.0 < left <= MAX_REMOTE_DEADLINE

    async def test_a_told_message_of_int64_max_ms_is_held_no_longer_than_the_cap(self):
        async with ActorSystem(name="a") as system, looped(system):
            envelope = wire_envelope("test.kernel.add", {"n": 1}, ms=INT64_MAX)
            assert await raw_request(system, b"tell", "counter", envelope) is None
            assert await system.lookup("counter").ask(Get()) == 1

    async def test_a_deadline_past_the_configured_cap_is_cut_and_one_within_it_kept(self):
        async with ActorSystem(name="a") as system, looped(system, max_deadline=2.0):
            counter = remote(system, "counter")
            left, _, _ = await counter.ask(Peek(), timeout=60.0)
            assert 1.9 < left <= 2.0
            left, _, _ = await counter.ask(Peek(), timeout=1.0)
            assert 0.9 < left <= 1.0

    async def test_the_cap_bounds_the_work_not_only_the_number(self):
        """A handler asked with a far deadline is cut off at the cap, with its category's code."""
        async with ActorSystem(name="a") as system, looped(system, max_deadline=0.2):
            started = anyio.current_time()
            assert await code_of(remote(system, "counter").ask(Sleep(30.0), timeout=60.0)) is ReasonCode.TIMEOUT_KV_GET
            assert anyio.current_time() - started < 1.0

    @pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, True, "300", None])
    def test_a_cap_that_is_not_a_finite_positive_number_is_config_invalid(self, value):
        with pytest.raises(ExoarmurError) as caught:
            Gateway(connection="wire", system="a", max_deadline=value)
        assert caught.value.code is ReasonCode.CONFIG_INVALID

    def test_the_default_cap_is_the_longest_timeout_category(self):
        from exoarmur.runtime.timeouts import DEFAULT_SECONDS

        assert MAX_REMOTE_DEADLINE == max(DEFAULT_SECONDS.values())
        assert Gateway(connection="wire", system="a", max_deadline=5).max_deadline == 5.0


class TestWhatAPeerCannotMakeItKeep:
    @pytest.mark.parametrize(
        "path, envelope",
        [
            ("p" * 100_000, wire_envelope("test.kernel.add", {"n": 1}, ms=1000)),
            ("nobody", wire_envelope("test.kernel.add", {"n": 1}, ms=1000)),
            ("counter", wire_envelope("test.kernel.add", {"n": 1}, ms=1000).replace(b'"tr":null', b'"tr":"' + b"t" * 100_000 + b'"')),
            ("counter", wire_envelope("test.remote.local", {}, ms=1000).replace(b'"t":null', b'"t":"' + b"x" * 100_000 + b'"')),
        ],
        ids=["long-path", "no-such-actor", "long-trace-id", "unexported-with-long-tenant"],
    )
    async def test_a_refusal_keeps_no_more_of_a_request_than_a_bounded_record(self, path, envelope):
        """Each refusal is one coded reply and one audit event whose strings are
        bounded, whatever the size of what the peer sent: a stream of large
        requests cannot grow a gateway's memory through its audit trail."""
        async with ActorSystem(name="a") as system, looped(system):
            with pytest.raises(ExoarmurError):
                await raw_request(system, b"ask", path, envelope)
            kept = sum(len(str(field)) for event in system.audit.events for field in event)
            assert len(system.audit.events) == 1 and kept < 2_000
