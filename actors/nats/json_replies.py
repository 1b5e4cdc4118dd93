"""JSON requests that arrive as a Delivery: one way for every service of
the system (intents, kill switches, approvals) to read and answer them.

    json_body(data, limit=..., code=...)     -> the request's JSON object
    await reply_json(context, connection, m, answer)

`answer(subject, data, reply)` returns the reply's JSON object, or None when
the reply is held (someone answers it later by publishing to `reply`). A
coded error becomes `{"ok": false, "code", "detail"}`; any other exception
is a bug met by one request: FATAL, reported (audited, counted by the
supervisor), and the service goes on serving. Cancellation is never caught.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from exoarmur.actors.nats.messages import Delivery, Publish
from exoarmur.runtime import ActorContext, ActorRef, ExoarmurError, InvalidInput, ReasonCode

__all__ = ["json_body", "reply_json"]

Answer = Callable[[str, bytes, str], Awaitable[dict[str, Any] | None]]


def json_body(data: bytes, *, limit: int, code: ReasonCode) -> dict[str, Any]:
    """The body as a JSON object (empty: {}); anything else is refused with `code`."""
    if len(data) > limit:
        raise InvalidInput(code, f"a request takes at most {limit} bytes")
    try:
        body = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(code, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput(code, "the body must be a JSON object")
    return body


async def reply_json(context: ActorContext, connection: ActorRef, m: Delivery, answer: Answer) -> None:
    try:
        reply = await answer(m.subject, m.data, m.reply)
    except ExoarmurError as exc:
        reply = {"ok": False, "code": exc.code.value, "detail": exc.detail}
    except Exception as exc:  # a bug met by one request: coded and audited, the rest still served
        detail = f"{type(exc).__name__} answering {m.subject[:200]}"
        context.report_failure(ReasonCode.FATAL, f"{detail}: {exc!r}")
        reply = {"ok": False, "code": ReasonCode.FATAL.value, "detail": detail}
    if reply is not None and m.reply:
        await connection.ask(Publish(m.reply, orjson.dumps(reply)))
