"""Several asks at once: answered in order, and the first coded error
raised as itself (never an ExceptionGroup) with the others cancelled."""

from __future__ import annotations

import anyio
import pytest

from exoarmur.runtime import Actor, ActorSystem, ExoarmurError, ReasonCode, ask_all, error_for, handles, message, together

pytestmark = pytest.mark.anyio


@message("test.together.say")
class Say:
    text: str


class Echo(Actor):
    concurrency = 8

    @handles(Say, concurrent=True)
    async def echo(self, m: Say) -> str:
        if m.text == "fail":
            raise error_for(ReasonCode.KV_CONFLICT, "no")
        if m.text == "hang":
            await anyio.sleep_forever()
        return m.text.upper()


async def test_answers_come_in_the_order_asked():
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo")
        assert await ask_all([(ref, Say("a")), (ref, Say("b")), (ref, Say("c"))]) == ["A", "B", "C"]
        assert await ask_all([]) == []


async def test_the_first_coded_error_is_raised_as_itself_and_the_rest_cancelled():
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, name="echo")
        with anyio.fail_after(5), pytest.raises(ExoarmurError) as caught:
            await ask_all([(ref, Say("hang")), (ref, Say("fail")), (ref, Say("ok"))])
        assert caught.value.code is ReasonCode.KV_CONFLICT


async def test_a_bug_is_not_turned_into_a_coded_error():
    async def bug() -> None:
        raise ZeroDivisionError

    async def fine() -> None:
        await anyio.sleep(0)

    with pytest.raises(BaseExceptionGroup) as caught:
        await together([fine, bug])
    assert caught.group_contains(ZeroDivisionError)
