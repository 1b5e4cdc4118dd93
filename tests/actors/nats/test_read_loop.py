"""ReplySlot and Inline: what nats-py's read loop hands over runs at once,
with the parts of asyncio.Future's contract that their users rely on.
nats-py side code: asyncio only."""

from __future__ import annotations

import asyncio
import contextvars
import types

import pytest

from exoarmur.actors.nats.read_loop import Inline, ReplySlot, _reply_arrived

pytestmark = pytest.mark.anyio

WHO = contextvars.ContextVar("who", default="nobody")


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_callbacks_run_at_once_when_the_reply_is_set_each_in_the_context_it_was_added_in():
    slot = ReplySlot()
    seen = []
    WHO.set("first")
    slot.add_done_callback(lambda s: seen.append(("first", WHO.get(), s.result())))
    WHO.set("second")
    slot.add_done_callback(lambda s: seen.append(("second", WHO.get(), s.result())))
    WHO.set("setter")
    slot.set_result("msg")
    assert seen == [("first", "first", "msg"), ("second", "second", "msg")]
    assert slot.done() and not slot.cancelled() and slot.exception() is None
    slot.set_result("again")  # ignored: the first reply counts
    assert slot.result() == "msg" and len(seen) == 2
    assert slot.cancel() is False


def test_cancel_runs_the_callbacks_once_and_a_late_reply_is_ignored():
    slot = ReplySlot()
    seen = []
    slot.add_done_callback(lambda s: seen.append(s.cancelled()))
    assert slot.cancel() is True
    assert seen == [True]
    with pytest.raises(asyncio.CancelledError):
        slot.result()
    with pytest.raises(asyncio.CancelledError):
        slot.exception()
    slot.set_result("late")
    assert slot.cancel() is False and seen == [True]


def test_a_pending_slot_has_no_result_and_a_removed_callback_never_runs():
    slot = ReplySlot()
    seen = []

    def callback(s: ReplySlot) -> None:
        seen.append("removed one")

    slot.add_done_callback(callback)
    slot.add_done_callback(lambda s: seen.append("kept"))
    with pytest.raises(asyncio.InvalidStateError):
        slot.result()
    assert slot.remove_done_callback(callback) == 1
    assert slot.remove_done_callback(callback) == 0
    slot.set_result("msg")
    assert seen == ["kept"]


def test_a_callback_added_once_done_runs_at_once():
    slot = ReplySlot()
    slot.set_result("msg")
    seen = []
    slot.add_done_callback(lambda s: seen.append(s.result()))
    assert seen == ["msg"]


async def test_a_raising_callback_is_reported_to_the_loop_and_the_others_still_run():
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda loop, context: reported.append(context["exception"]))
    try:
        slot = ReplySlot()
        seen = []

        def bad(s: ReplySlot) -> None:
            raise ValueError("a bug")

        slot.add_done_callback(bad)
        slot.add_done_callback(lambda s: seen.append("after"))
        slot.set_result("msg")  # the read loop calls this: it must not raise
        assert seen == ["after"]
        assert [type(e) for e in reported] == [ValueError]

        def deliver(msg) -> None:
            raise KeyError(msg)

        sink = Inline(deliver)
        assert sink.cancelled() is False
        sink.set_result("m")
        assert [type(e) for e in reported] == [ValueError, KeyError]
    finally:
        loop.set_exception_handler(None)


def test_a_reply_reaches_what_waits_for_its_token_and_nothing_else():
    prefix = b"_INBOX.abc."
    slot, answered = ReplySlot(), ReplySlot()
    answered.set_result("earlier")
    nc = types.SimpleNamespace(_resp_map={"tok1": slot, "tok2": answered})

    def reply(token: str, data: str) -> None:
        _reply_arrived(nc, len(prefix), types.SimpleNamespace(subject=prefix.decode() + token, data=data))

    reply("unknown", "x")  # no one waits for it: dropped, as nats-py does
    reply("tok2", "late")  # already answered: the first reply stands
    reply("tok1", "mine")
    assert slot.result().data == "mine" and answered.result() == "earlier"
