"""RemoteRef builds its envelope as a local ref does: the deadline from the
options or the policy, never later than the sending handler's, tenant and
trace inherited; and it refuses what a local ref refuses, audited, before
anything is sent."""

from __future__ import annotations

import math

import pytest

from exoarmur.runtime import Actor, ActorSystem, ReasonCode, handles, message
from tests.actors.remote.support import Peek, code_of, looped, remote
from tests.runtime.support import Add

pytestmark = pytest.mark.anyio


@message("test.remote.relay")
class Relay:
    """Ask the remote counter for Peek(), with `timeout`."""

    timeout: float


class Relayer(Actor):
    @handles(Relay)
    async def relay(self, m: Relay) -> list:
        return await remote(self.context.system, "counter").ask(Peek(), timeout=m.timeout)


class TestRefusals:
    @pytest.mark.parametrize(
        ("options", "code"),
        [
            ({"timeout": 0.0}, ReasonCode.DEADLINE_EXCEEDED),
            ({"timeout": -1.0}, ReasonCode.DEADLINE_EXCEEDED),
            ({"deadline": -math.inf}, ReasonCode.DEADLINE_EXCEEDED),
            ({"timeout": math.inf}, ReasonCode.ENVELOPE_INVALID),
            ({"deadline": math.inf}, ReasonCode.ENVELOPE_INVALID),
            ({"deadline": math.nan}, ReasonCode.ENVELOPE_INVALID),
            ({"timeout": math.nan}, ReasonCode.ENVELOPE_INVALID),
        ],
    )
    @pytest.mark.parametrize("mode", ["ask", "tell"])
    async def test_a_deadline_passed_or_not_finite_is_refused_audited_and_never_sent(self, mode, options, code):
        async with ActorSystem(name="a") as system, looped(system) as loop:
            send = getattr(remote(system, "counter"), mode)
            assert await code_of(send(Add(1), **options)) is code
            assert [(e.kind, e.path, e.message) for e in system.audit.events if e.code is code] == [
                ("rejected", "counter", "test.kernel.add")
            ]
            assert loop.replies == [] and loop.handled == []

    async def test_a_deadline_already_passed_by_the_clock_is_deadline_exceeded(self):
        async with ActorSystem(name="a") as system, looped(system) as loop:
            assert await code_of(remote(system, "counter").ask(Add(1), deadline=system.now())) is (
                ReasonCode.DEADLINE_EXCEEDED
            )
            assert loop.replies == []


class TestCarryOver:
    async def test_without_options_the_deadline_is_the_policys_default(self):
        async with ActorSystem(name="a") as system, looped(system):
            left, tenant, trace = await remote(system, "counter").ask(Peek())
            assert system.default_seconds(Peek) - 1.0 < left <= system.default_seconds(Peek)
            assert (tenant, trace) == (None, None)

    async def test_options_travel(self):
        async with ActorSystem(name="a") as system, looped(system):
            left, tenant, trace = await remote(system, "counter").ask(
                Peek(), deadline=system.now() + 3.0, tenant="acme", trace_id="t-1"
            )
            assert 2.9 < left <= 3.0 and (tenant, trace) == ("acme", "t-1")

    @pytest.mark.parametrize("asked", [0.5, 60.0])
    async def test_from_a_handler_the_deadline_is_never_later_than_its_own_and_tenant_and_trace_carry_over(
        self, asked
    ):
        async with ActorSystem(name="a") as system, looped(system):
            relayer = await system.spawn(Relayer, name="relayer")
            left, tenant, trace = await relayer.ask(Relay(asked), timeout=2.0, tenant="acme", trace_id="t-7")
            assert min(asked, 2.0) - 0.1 < left <= min(asked, 2.0)
            assert (tenant, trace) == ("acme", "t-7")
