"""What a remote send looks like on NATS: the request's payload and its reply.

A request goes to `gateway_subject(system)`. Its payload is one line naming
the mode and the target path (`ask tenant/acme\\n`; a path has no blank or
newline), then the envelope in the strict codec (runtime/codec.py: the
deadline travels as remaining ms and is re-anchored by the receiver). No
NATS headers: they cost more to write and to parse than the line.

Every request gets one reply, a JSON object with one of:

    {"v": value}              the handler's result, if it is JSON (None, bool,
                              int, float, str, lists and dicts of them)
    {"m": name, "b": body}    the handler's result, a registered @message instance
    {"e": code, "d": detail}  a ReasonCode, and what it is about

A result that is neither JSON nor a registered message is ENVELOPE_INVALID.
All functions here are pure: they raise, the caller audits.
"""

from __future__ import annotations

from typing import Any

import orjson

from exoarmur.runtime import ExoarmurError, ReasonCode, decode_message, encode_message, error_for

__all__ = ["ASK", "MODES", "TELL", "decode_reply", "encode_error", "encode_result", "frame", "gateway_subject", "unframe"]

ASK = b"ask"
TELL = b"tell"
MODES = (ASK, TELL)


def gateway_subject(system_name: str) -> str:
    """The subject a system's gateway serves."""
    return f"exoarmur.gw.{system_name}"


# ---- requests ------------------------------------------------------------------------


def frame(mode: bytes, path: str, envelope: bytes) -> bytes:
    """A request's payload: the target line, then the envelope."""
    return b"%s %s\n%s" % (mode, path.encode(), envelope)


def unframe(data: bytes) -> tuple[bytes, str, bytes]:
    """(mode, path, envelope bytes) of a request's payload; ENVELOPE_INVALID
    for anything else."""
    line, newline, envelope = data.partition(b"\n")
    mode, blank, path = line.partition(b" ")
    if not newline or not blank or mode not in MODES:
        raise error_for(ReasonCode.ENVELOPE_INVALID, "no target line (ask|tell <path>)")
    try:
        return mode, path.decode("ascii"), envelope
    except UnicodeDecodeError:
        raise error_for(ReasonCode.ENVELOPE_INVALID, "target path is not ASCII") from None


# ---- replies -------------------------------------------------------------------------


def encode_result(value: Any) -> bytes:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        try:
            return orjson.dumps({"v": value})
        except TypeError:
            pass  # not JSON all the way down: ENVELOPE_INVALID below
    else:
        try:
            name, body = encode_message(value)
            return orjson.dumps({"m": name, "b": body})
        except ExoarmurError:
            pass  # not a registered message: ENVELOPE_INVALID below
    return encode_error(ReasonCode.ENVELOPE_INVALID, f"a {type(value).__qualname__} result cannot travel")


def encode_error(code: ReasonCode, detail: str) -> bytes:
    return orjson.dumps({"e": str(code), "d": detail})


def decode_reply(data: bytes) -> Any:
    """The result, or the coded error raised; a reply that is not one of ours
    is ENVELOPE_INVALID."""
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise error_for(ReasonCode.ENVELOPE_INVALID, "reply is not JSON") from None
    if not isinstance(reply, dict):
        raise error_for(ReasonCode.ENVELOPE_INVALID, "reply is not an object")
    if "v" in reply:
        return reply["v"]
    if "m" in reply:
        return decode_message(reply["m"], reply.get("b"))
    code = reply.get("e")
    if isinstance(code, str) and code in ReasonCode.__members__:
        raise error_for(ReasonCode(code), str(reply.get("d", "")))
    raise error_for(ReasonCode.ENVELOPE_INVALID, "reply has no result and no known code")
