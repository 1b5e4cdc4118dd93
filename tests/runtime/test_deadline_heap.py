"""Ask deadlines on asyncio (runtime/backend.py, AsyncioTimers): one heap per
loop and one `call_at` for its earliest entry, in place of a timer per ask."""

from __future__ import annotations

import asyncio

import outcome

from exoarmur.runtime.backend import AsyncioReply, AsyncioTimers, CallbackReply
from exoarmur.runtime.errors import DeadlineExceeded
from exoarmur.runtime.codes import ReasonCode


def expired(reply) -> DeadlineExceeded:
    return DeadlineExceeded(ReasonCode.DEADLINE_EXCEEDED, "test")


def test_deadlines_expire_in_their_order_whatever_order_they_came_in():
    """A later `add` with an earlier deadline moves the one wake-up forward."""

    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        timers = AsyncioTimers(loop)
        start = loop.time()
        ended: list[tuple[str, float]] = []
        for name, seconds in (("late", 0.3), ("early", 0.1), ("middle", 0.2)):
            reply = CallbackReply(timers, lambda result, name=name: ended.append((name, loop.time() - start)))
            reply.arm(start + seconds, expired)
        await asyncio.sleep(0.45)
        return ended

    ended = asyncio.run(main())
    assert [name for name, _ in ended] == ["early", "middle", "late"]
    for (_, at), seconds in zip(ended, (0.1, 0.2, 0.3)):
        assert seconds <= at < seconds + 0.1


def test_an_ask_resolved_in_time_gets_its_value_and_one_left_waiting_its_code():
    async def main() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        timers = AsyncioTimers(loop)
        answered, unanswered = AsyncioReply(loop, timers), AsyncioReply(loop, timers)
        loop.call_later(0.05, answered.resolve, outcome.Value("yes"))
        got = await answered.wait(loop.time() + 1.0, expired)
        try:
            await unanswered.wait(loop.time() + 0.05, expired)
        except DeadlineExceeded as exc:
            return got, exc.code
        return got, None

    assert asyncio.run(main()) == ("yes", ReasonCode.DEADLINE_EXCEEDED)


def test_entries_of_replies_answered_early_do_not_pile_up():
    async def main() -> int:
        loop = asyncio.get_running_loop()
        timers = AsyncioTimers(loop)
        for _ in range(10 * AsyncioTimers.COMPACT_AT):
            reply = CallbackReply(timers, lambda result: None)
            reply.arm(loop.time() + 60.0, expired)
            reply.resolve(outcome.Value(None))
        return len(timers._heap)

    assert asyncio.run(main()) <= 2 * AsyncioTimers.COMPACT_AT + 2


def test_a_callback_that_arms_an_earlier_deadline_while_expiring_still_gets_it():
    """Expiring runs callbacks, which may ask again (ask_then) with a deadline
    before the heap's next entry: the wake-up follows."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        timers = AsyncioTimers(loop)
        ended: list[str] = []
        far = CallbackReply(timers, lambda result: ended.append("far"))
        far.arm(loop.time() + 5.0, expired)

        def first_expired(result: outcome.Outcome) -> None:
            ended.append("first")
            again = CallbackReply(timers, lambda result: ended.append("again"))
            again.arm(loop.time() + 0.05, expired)

        CallbackReply(timers, first_expired).arm(loop.time() + 0.05, expired)
        await asyncio.sleep(0.3)
        far.resolve(outcome.Value(None))
        return ended

    assert asyncio.run(main()) == ["first", "again", "far"]
