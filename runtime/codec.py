"""The wire codec: an envelope to JSON bytes (orjson) and back, strictly.

    data = encode(env, now=system.now())
    env = decode(data, now=system.now(), expect_tenant="acme")

Wire format, version 1: one JSON object with exactly these keys.

    "v"   1                         the format version
    "m"   str                       the message's wire name (`@message("...")`)
    "b"   object                    the message body, one key per attrs field
    "ms"  int > 0                   remaining time to the deadline, whole ms
    "t"   str | null                tenant
    "s"   str | null                sender
    "c"   str | null                correlation id
    "tr"  str | null                trace id
    "k"   str | null                idempotency key
    "a"   int >= 1                  attempt

`reply_to` is process-local and never goes on the wire. The deadline travels as
remaining milliseconds, rounded down (a deadline only ever gets earlier), and is
re-anchored on the receiver's clock: deadline = now + ms / 1000. Both functions
take `now` explicitly, so they are pure.

The message body is written and read by runtime/bodies.py (its field types
are listed there).

Decoding checks, in order: size and JSON (ENVELOPE_INVALID), the header
(ENVELOPE_INVALID; its strings at most MAX_HEADER_CHARS), the message type against what the receiver takes from the
wire, when it says (`accept`: NOT_EXPORTED, before any of the body is read),
the tenant (TENANT_MISMATCH), the remaining time (DEADLINE_EXCEEDED), the body
(ENVELOPE_INVALID). Nothing else escapes: any input gives an Envelope or one
of those coded errors. Encoding raises the same
codes for an envelope that decoding would refuse, so what `encode` returns
`decode` accepts (given time left and the same registry and `max_bytes`).

The codec is pure: it raises, the caller audits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import orjson

from exoarmur.runtime.bodies import decode_body, decode_message, encode_message, invalid, kind_of, short
from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import DeadlineExceeded, Denied, InvalidInput, TenantMismatch
from exoarmur.runtime.messages import MESSAGES, MessageRegistry

__all__ = ["MAX_BYTES", "MAX_HEADER_CHARS", "WIRE_VERSION", "decode", "decode_message", "encode", "encode_message"]

WIRE_VERSION = 1
MAX_BYTES = 1_048_576
# A tenant, sender, correlation or trace id, or idempotency key is an id, not
# data: bounded, so what a peer sends cannot grow what is kept of it (audit
# events carry these fields).
MAX_HEADER_CHARS = 256
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_HEADERS = frozenset({"v", "m", "b", "ms", "t", "s", "c", "tr", "k", "a"})
# Optional-string headers: wire key -> what it is, for error details.
_STRING_HEADERS = (
    ("t", "tenant"),
    ("s", "sender"),
    ("c", "correlation id"),
    ("tr", "trace id"),
    ("k", "idempotency key"),
)

# ---- envelopes -------------------------------------------------------------


def _header_error(key: str, what: str, value: object) -> InvalidInput:
    expected = {"a": "an int >= 1", "ms": "an int of milliseconds"}.get(key, "str or null")
    return invalid(f"header {key!r} ({what}): expected {expected}, got {short(value)}")


def _is_attempt(value: object) -> bool:
    return type(value) is int and 1 <= value <= _INT_MAX


def _check_strings(values: tuple[object, ...]) -> None:
    for (key, what), value in zip(_STRING_HEADERS, values):
        if value is not None and type(value) is not str:
            raise _header_error(key, what, value)
        if value is not None and len(value) > MAX_HEADER_CHARS:
            raise invalid(f"header {key!r} ({what}): longer than {MAX_HEADER_CHARS} characters")


def encode(
    envelope: Envelope,
    *,
    now: float,
    registry: MessageRegistry = MESSAGES,
    max_bytes: int = MAX_BYTES,
) -> bytes:
    """The wire bytes of `envelope`, its deadline sent as the ms left after `now`."""
    deadline = envelope.deadline
    if type(deadline) is int and _INT_MIN <= deadline <= _INT_MAX:
        deadline = float(deadline)
    if type(deadline) is not float:
        raise invalid(f"deadline: expected float, got {kind_of(deadline)}")
    if not math.isfinite(deadline):
        raise invalid(f"deadline: float {deadline!r} is not finite")
    milliseconds = (deadline - now) * 1000.0
    if milliseconds < 1.0:  # rounds down to 0 ms or less
        detail = f"{milliseconds:.3f} ms left before sending"
        raise DeadlineExceeded(ReasonCode.DEADLINE_EXCEEDED, detail)
    if not milliseconds <= _INT_MAX:  # also NaN, from a non-finite `now`
        raise invalid(f"deadline {deadline!r} is out of range at now={now!r}")
    remaining = math.floor(milliseconds)
    strings = (
        envelope.tenant,
        envelope.sender,
        envelope.correlation_id,
        envelope.trace_id,
        envelope.idempotency_key,
    )
    _check_strings(strings)
    if not _is_attempt(envelope.attempt):
        raise _header_error("a", "attempt", envelope.attempt)
    name, body = encode_message(envelope.message, registry=registry)
    tenant, sender, correlation_id, trace_id, idempotency_key = strings
    wire = {
        "v": WIRE_VERSION,
        "m": name,
        "b": body,
        "ms": remaining,
        "t": tenant,
        "s": sender,
        "c": correlation_id,
        "tr": trace_id,
        "k": idempotency_key,
        "a": envelope.attempt,
    }
    try:
        data = orjson.dumps(wire)
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a str
        raise invalid(f"{name}: cannot write JSON: {exc}") from exc
    if len(data) > max_bytes:
        raise invalid(f"{name}: {len(data)} bytes is over the limit of {max_bytes}")
    return data


def decode(
    data: bytes | bytearray | memoryview,
    *,
    now: float,
    registry: MessageRegistry = MESSAGES,
    max_bytes: int = MAX_BYTES,
    expect_tenant: str | None = None,
    accept: Callable[[type], bool] | None = None,
) -> Envelope:
    """The envelope in `data`, its deadline re-anchored at `now`; or a coded
    error. `accept(message_type)` False: NOT_EXPORTED, the body unread."""
    if isinstance(data, memoryview):
        if data.nbytes > max_bytes:
            raise invalid(f"{data.nbytes} bytes is over the limit of {max_bytes}")
        data = data.tobytes()
    elif not isinstance(data, bytes | bytearray):
        raise invalid(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise invalid(f"{len(data)} bytes is over the limit of {max_bytes}")
    try:
        wire = orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # not UTF-8, not JSON, too deep
        raise invalid(f"not JSON: {exc}") from exc
    if type(wire) is not dict:
        raise invalid(f"envelope: expected object, got {kind_of(wire)}")
    if wire.keys() != _HEADERS:
        missing = _HEADERS - wire.keys()
        if missing:
            raise invalid(f"missing header {min(missing)!r}")
        raise invalid(f"unknown header {short(min(wire.keys() - _HEADERS))}")
    version = wire["v"]
    if type(version) is not int or version != WIRE_VERSION:
        raise invalid(f"header 'v': unsupported version {short(version)}")
    name = wire["m"]
    if type(name) is not str:
        raise invalid(f"header 'm' (message name): expected str, got {short(name)}")
    remaining = wire["ms"]
    if type(remaining) is not int or not _INT_MIN <= remaining <= _INT_MAX:
        raise _header_error("ms", "remaining time", remaining)
    strings = (wire["t"], wire["s"], wire["c"], wire["tr"], wire["k"])
    _check_strings(strings)
    attempt = wire["a"]
    if not _is_attempt(attempt):
        raise _header_error("a", "attempt", attempt)
    if type(wire["b"]) is not dict:
        raise invalid(f"header 'b' (body): expected object, got {kind_of(wire['b'])}")
    cls = registry.lookup(name)
    if cls is None:
        raise invalid(f"unknown message {short(name)}")
    if accept is not None and not accept(cls):
        raise Denied(ReasonCode.NOT_EXPORTED, f"{name}: not taken from the wire by this receiver")
    tenant = strings[0]
    if expect_tenant is not None and tenant != expect_tenant:
        detail = f"{name}: tenant {short(tenant)}, expected {expect_tenant!r}"
        raise TenantMismatch(ReasonCode.TENANT_MISMATCH, detail)
    if remaining <= 0:
        detail = f"{name}: {remaining} ms left on arrival"
        raise DeadlineExceeded(ReasonCode.DEADLINE_EXCEEDED, detail)
    message = decode_body(cls, name, wire["b"])
    tenant, sender, correlation_id, trace_id, idempotency_key = strings
    return Envelope(
        message=message,
        deadline=now + remaining / 1000,
        tenant=tenant,
        sender=sender,
        correlation_id=correlation_id,
        trace_id=trace_id,
        idempotency_key=idempotency_key,
        attempt=attempt,
    )
