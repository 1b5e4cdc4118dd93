"""What a remote send looks like on NATS: the request's payload and its reply.

A request goes to `gateway_subject(system)` (a system's name is one NATS
subject token: letters, digits, `_` and `-`, so no gateway serves another's
subject through a wildcard). Its payload is one line naming the mode and the
target path (`ask tenant/acme\\n`; a path has no blank or newline and at most
MAX_PATH characters, as an actor's), then the envelope in the strict codec (runtime/codec.py: the
deadline travels as remaining ms and is re-anchored by the receiver). No
NATS headers: they cost more to write and to parse than the line.

Every request gets one reply, a JSON object with one of:

    {"v": value}              the handler's result, if it is JSON (None, bool,
                              int, float, str, lists and dicts of them)
    {"m": name, "b": body}    the handler's result, a registered @message instance
    {"e": code, "d": detail}  a ReasonCode, and what it is about (for a crash,
                              no more than that: the exception's text stays in
                              the receiver's audit, it is not a peer's to read)

A result that is neither JSON nor a registered message is ENVELOPE_INVALID.
All functions here are pure: they raise, the caller audits.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from exoarmur.runtime import ExoarmurError, InvalidInput, ReasonCode, decode_message, encode_message, error_for

__all__ = [
    "ASK",
    "CRASH_DETAIL",
    "MAX_PATH",
    "MODES",
    "TELL",
    "decode_reply",
    "encode_error",
    "encode_result",
    "frame",
    "gateway_subject",
    "unframe",
    "valid_system_name",
]

ASK = b"ask"
TELL = b"tell"
MODES = (ASK, TELL)
MAX_PATH = 512  # as an actor's path (ActorSystem.spawn)
_SYSTEM_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def valid_system_name(name: object) -> str:
    """`name` if it is one NATS subject token (no wildcard, dot or blank);
    CONFIG_INVALID otherwise."""
    if not isinstance(name, str) or not _SYSTEM_NAME.fullmatch(name):
        raise InvalidInput(
            ReasonCode.CONFIG_INVALID, f"system name {name!r:.80}: letters, digits, '_' and '-' only (1 to 128)"
        )
    return name


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
    if len(path) > MAX_PATH:
        raise error_for(ReasonCode.ENVELOPE_INVALID, f"target path longer than {MAX_PATH} characters")
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


# A crash's detail (an exception's text) is not sent to a peer.
_CRASHES = frozenset({ReasonCode.ACTOR_CRASHED, ReasonCode.ESCALATED})
CRASH_DETAIL = "the handler crashed (its detail is in the receiver's audit)"


def encode_error(code: ReasonCode, detail: str) -> bytes:
    return orjson.dumps({"e": str(code), "d": CRASH_DETAIL if code in _CRASHES else detail})


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
