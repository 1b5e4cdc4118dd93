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

Body field types: int (a signed 64-bit int, never a bool), float (an int is
accepted and becomes a float; never NaN or infinite), str, bool, None,
`X | None`, `list[X]`, `tuple[X, ...]`, `tuple[X, Y]`, `dict[str, X]`, nested
attrs classes (as objects, without a wire name), enums with str or int values
(by value), `Any` (any JSON value), and `Annotated[X, ...]` as X. Any other annotation is ENVELOPE_INVALID
naming the class and field. Types are exact: no str-to-int coercion, no bool
for int, a list field holds a list and a tuple field a tuple. Every field is
on the wire (none may be missing, none may be extra), and nesting is at most
MAX_DEPTH levels.

Decoding checks, in order: size and JSON (ENVELOPE_INVALID), the header
(ENVELOPE_INVALID), the tenant (TENANT_MISMATCH), the remaining time
(DEADLINE_EXCEEDED), the body (ENVELOPE_INVALID). Nothing else escapes: any
input gives an Envelope or one of those coded errors. Encoding raises the same
codes for an envelope that decoding would refuse, so what `encode` returns
`decode` accepts (given time left and the same registry and `max_bytes`).

The codec is pure: it raises, the caller audits.
"""

from __future__ import annotations

import enum
import math
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs
import orjson

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.envelope import Envelope, make_envelope
from exoarmur.runtime.errors import DeadlineExceeded, InvalidInput, TenantMismatch
from exoarmur.runtime.messages import MESSAGES, MessageRegistry, wire_name

WIRE_VERSION = 1
MAX_BYTES = 1_048_576
# Containers and objects inside a body. orjson refuses to write more than 254
# levels and the envelope itself is one, so anything we encode stays writable.
MAX_DEPTH = 128

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

# A converter is (value, depth) -> value; one per direction per field type.
_Convert = Callable[[Any, int], Any]


class _Mismatch(Exception):
    """A value does not fit its field type. `path` (innermost segment first)
    grows as it propagates out; the top level turns it into InvalidInput."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is dict:
        return "object"
    return type(value).__name__


def _expected(what: str, value: object) -> _Mismatch:
    return _Mismatch(f"expected {what}, got {_kind(value)}")


def _too_deep() -> _Mismatch:
    return _Mismatch(f"nested deeper than {MAX_DEPTH} levels")


def _join(path: list[str]) -> str:
    out = ""
    for segment in reversed(path):
        out += segment if segment.startswith("[") or not out else "." + segment
    return out


def _invalid(detail: str) -> InvalidInput:
    return InvalidInput(ReasonCode.ENVELOPE_INVALID, detail)


def _body_error(name: str, error: _Mismatch) -> InvalidInput:
    where = f"field '{_join(error.path)}' of {name}" if error.path else name
    return _invalid(f"{where}: {error.reason}")


# ---- scalar converters (the same both ways) ----------------------------------


def _int(value: Any, depth: int) -> int:
    if type(value) is not int:
        raise _expected("int", value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise _Mismatch(f"int {_short(value)} is out of the signed 64-bit range")
    return value


def _float(value: Any, depth: int) -> float:
    if type(value) is float:
        if not math.isfinite(value):
            raise _Mismatch(f"float {value!r} is not finite")
        return value
    if type(value) is int:
        return float(_int(value, depth))
    raise _expected("float", value)


def _str(value: Any, depth: int) -> str:
    if type(value) is not str:
        raise _expected("str", value)
    return value


def _bool(value: Any, depth: int) -> bool:
    if type(value) is not bool:
        raise _expected("bool", value)
    return value


def _none(value: Any, depth: int) -> None:
    if value is not None:
        raise _expected("null", value)


# ---- container converters ------------------------------------------------


def _sequence(item: _Convert, *, want: type, make: type) -> _Convert:
    """list[X] or tuple[X, ...]: a `want` in, a `make` out."""
    name = want.__name__

    def convert(value: Any, depth: int) -> Any:
        if type(value) is not want:
            raise _expected(name, value)
        if depth >= MAX_DEPTH:
            raise _too_deep()
        out = []
        index = 0
        try:
            for index, element in enumerate(value):
                out.append(item(element, depth + 1))
        except _Mismatch as error:
            error.path.append(f"[{index}]")
            raise
        return out if make is list else make(out)

    return convert


def _fixed_tuple(items: tuple[_Convert, ...], *, want: type, make: type) -> _Convert:
    """tuple[X, Y]: exactly len(items) elements."""

    def convert(value: Any, depth: int) -> Any:
        if type(value) is not want:
            raise _expected(want.__name__, value)
        if len(value) != len(items):
            raise _Mismatch(f"expected {len(items)} elements, got {len(value)}")
        if depth >= MAX_DEPTH:
            raise _too_deep()
        out = []
        index = 0
        try:
            for index, (item, element) in enumerate(zip(items, value)):
                out.append(item(element, depth + 1))
        except _Mismatch as error:
            error.path.append(f"[{index}]")
            raise
        return make(out)

    return convert


def _mapping(item: _Convert) -> _Convert:
    """dict[str, X]."""

    def convert(value: Any, depth: int) -> dict[str, Any]:
        if type(value) is not dict:
            raise _expected("object", value)
        if depth >= MAX_DEPTH:
            raise _too_deep()
        out = {}
        for key, element in value.items():
            if type(key) is not str:
                raise _Mismatch(f"object key {_short(key)} is not a str")
            try:
                out[key] = item(element, depth + 1)
            except _Mismatch as error:
                error.path.append(f"[{_short(key)}]")
                raise
        return out

    return convert


def _json(value: Any, depth: int) -> Any:
    """`Any`: a JSON value made of dict (str keys), list, str, int, float, bool, None."""
    kind = type(value)
    if value is None or kind is str or kind is bool:
        return value
    if kind is int:
        return _int(value, depth)
    if kind is float:
        return _float(value, depth)
    if kind is list:
        return _json_list(value, depth)
    if kind is dict:
        return _json_object(value, depth)
    raise _Mismatch(f"{kind.__name__} is not a JSON value")


_json_list = _sequence(_json, want=list, make=list)
_json_object = _mapping(_json)


def _optional(item: _Convert) -> _Convert:
    def convert(value: Any, depth: int) -> Any:
        return None if value is None else item(value, depth)

    return convert


def _enum(cls: type[enum.Enum], owner: type, field: str) -> tuple[_Convert, _Convert]:
    """By value; the value must be a str or an int, and travels as a plain one."""
    to_wire: dict[enum.Enum, str | int] = {}
    from_wire: dict[tuple[type, str | int], enum.Enum] = {}
    for member in cls.__members__.values():
        value = member.value
        if isinstance(value, str):
            plain: str | int = str.__str__(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            plain = int(value)
        else:
            raise _unsupported(owner, field, cls, "enum values must be str or int")
        to_wire[member] = plain
        from_wire[(type(plain), plain)] = member

    def encode(value: Any, depth: int) -> str | int:
        if type(value) is not cls:
            raise _expected(cls.__qualname__, value)
        return to_wire[value]

    def decode(value: Any, depth: int) -> enum.Enum:
        kind = type(value)
        member = from_wire.get((kind, value)) if kind is str or kind is int else None
        if member is None:
            raise _Mismatch(f"{_short(value)} is not a {cls.__qualname__} value")
        return member

    return encode, decode


# ---- attrs classes ------------------------------------------------------


@attrs.frozen
class _Field:
    name: str  # the attribute, and the key on the wire
    alias: str  # the __init__ argument
    encode: _Convert
    decode: _Convert


@attrs.frozen
class _Plan:
    cls: type
    fields: tuple[_Field, ...]
    names: frozenset[str]


# The only module-level state: one plan per class, built on first use.
_PLANS: dict[type, _Plan] = {}


def _unsupported(owner: type, field: str, annotation: object, why: str = "") -> InvalidInput:
    detail = f"field '{field}' of {owner.__qualname__}: unsupported type {annotation!r}"
    return _invalid(f"{detail} ({why})" if why else detail)


def _plan(cls: type, building: frozenset[type] = frozenset()) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    if not attrs.has(cls):
        raise _invalid(f"{cls.__qualname__} is not an attrs class")
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # NameError and friends, from user annotations
        raise _invalid(f"cannot resolve the annotations of {cls.__qualname__}: {exc!r}") from exc
    building = building | {cls}
    fields = []
    for a in attrs.fields(cls):
        if not a.init:
            continue
        encode, decode = _converters(a.type, cls, a.name, building)
        fields.append(_Field(a.name, a.alias or a.name, encode, decode))
    plan = _Plan(cls, tuple(fields), frozenset(f.name for f in fields))
    _PLANS[cls] = plan
    return plan


def _object(cls: type, building: frozenset[type]) -> tuple[_Convert, _Convert]:
    """A nested attrs class: a JSON object with exactly its fields."""
    # A class that refers to itself (directly or not) gets its plan at call
    # time; any other is planned now, so a bad annotation fails on first use.
    eager = None if cls in building else _plan(cls, building)
    name = cls.__qualname__

    def encode(value: Any, depth: int) -> dict[str, Any]:
        if type(value) is not cls:
            raise _expected(name, value)
        if depth >= MAX_DEPTH:
            raise _too_deep()
        return _encode_fields(eager or _plan(cls), value, depth)

    def decode(value: Any, depth: int) -> Any:
        if type(value) is not dict:
            raise _expected("object", value)
        if depth >= MAX_DEPTH:
            raise _too_deep()
        return _decode_fields(eager or _plan(cls), value, depth)

    return encode, decode


def _encode_fields(plan: _Plan, value: Any, depth: int) -> dict[str, Any]:
    out = {}
    for field in plan.fields:
        try:
            out[field.name] = field.encode(getattr(value, field.name), depth + 1)
        except _Mismatch as error:
            error.path.append(field.name)
            raise
    return out


def _decode_fields(plan: _Plan, body: dict[str, Any], depth: int) -> Any:
    if body.keys() != plan.names:
        missing = plan.names - body.keys()
        if missing:
            raise _Mismatch(f"missing field {min(missing)!r}")
        raise _Mismatch(f"unknown field {_short(min(body.keys() - plan.names, key=repr))}")
    kwargs = {}
    for field in plan.fields:
        try:
            kwargs[field.alias] = field.decode(body[field.name], depth + 1)
        except _Mismatch as error:
            error.path.append(field.name)
            raise
    try:
        return plan.cls(**kwargs)
    except Exception as exc:  # validators and __attrs_post_init__ of user classes
        raise _Mismatch(f"{plan.cls.__qualname__} refused it: {exc!r}") from exc


def _converters(
    annotation: object, owner: type, field: str, building: frozenset[type]
) -> tuple[_Convert, _Convert]:
    """(encode, decode) for one field type; raises for an unsupported one."""
    if annotation is Any:
        return _json, _json
    if annotation is int or annotation is str or annotation is bool:
        convert = {int: _int, str: _str, bool: _bool}[annotation]
        return convert, convert
    if annotation is float:
        return _float, _float
    if annotation is None:  # an attr.ib() without a type
        raise _unsupported(owner, field, annotation, "no annotation")
    if annotation is types.NoneType:
        return _none, _none
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _converters(args[0], owner, field, building)
    if origin is typing.Union or origin is types.UnionType:
        arms = [arg for arg in args if arg is not types.NoneType]
        if len(arms) != 1 or len(args) != 2:
            raise _unsupported(owner, field, annotation, "only X | None unions")
        encode, decode = _converters(arms[0], owner, field, building)
        return _optional(encode), _optional(decode)
    if origin is list and len(args) == 1:
        encode, decode = _converters(args[0], owner, field, building)
        return _sequence(encode, want=list, make=list), _sequence(decode, want=list, make=list)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        encode, decode = _converters(args[0], owner, field, building)
        return _sequence(encode, want=tuple, make=list), _sequence(decode, want=list, make=tuple)
    if origin is tuple and args and Ellipsis not in args:
        pairs = [_converters(arg, owner, field, building) for arg in args]
        return (
            _fixed_tuple(tuple(p[0] for p in pairs), want=tuple, make=list),
            _fixed_tuple(tuple(p[1] for p in pairs), want=list, make=tuple),
        )
    if origin is dict and len(args) == 2 and args[0] is str:
        encode, decode = _converters(args[1], owner, field, building)
        return _mapping(encode), _mapping(decode)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum(annotation, owner, field)
    if isinstance(annotation, type) and attrs.has(annotation):
        return _object(annotation, building)
    raise _unsupported(owner, field, annotation)


# ---- messages -------------------------------------------------------------


def encode_message(
    message: Any, *, registry: MessageRegistry = MESSAGES
) -> tuple[str, dict[str, Any]]:
    """(wire name, JSON-ready body) of a @message instance registered in `registry`."""
    cls = type(message)
    name = wire_name(cls)
    if registry.lookup(name) is not cls:
        raise _invalid(f"{cls.__qualname__} ({name}) is not in this registry")
    try:
        return name, _encode_fields(_PLANS.get(cls) or _plan(cls), message, 0)
    except _Mismatch as error:
        raise _body_error(name, error) from None


def decode_message(name: str, body: Any, *, registry: MessageRegistry = MESSAGES) -> Any:
    """The message of wire name `name` built from a decoded JSON `body`."""
    cls = registry.lookup(name) if type(name) is str else None
    if cls is None:
        raise _invalid(f"unknown message {_short(name)}")
    if type(body) is not dict:
        raise _invalid(f"body of {name}: expected object, got {_kind(body)}")
    return _decode_body(cls, name, body)


def _decode_body(cls: type, name: str, body: dict[str, Any]) -> Any:
    try:
        return _decode_fields(_PLANS.get(cls) or _plan(cls), body, 0)
    except _Mismatch as error:
        raise _body_error(name, error) from None


# ---- envelopes -------------------------------------------------------------


def _header_error(key: str, what: str, value: object) -> InvalidInput:
    expected = {"a": "an int >= 1", "ms": "an int of milliseconds"}.get(key, "str or null")
    return _invalid(f"header {key!r} ({what}): expected {expected}, got {_short(value)}")


def _is_attempt(value: object) -> bool:
    return type(value) is int and 1 <= value <= _INT_MAX


def _check_strings(values: tuple[object, ...]) -> None:
    for (key, what), value in zip(_STRING_HEADERS, values):
        if value is not None and type(value) is not str:
            raise _header_error(key, what, value)


def encode(
    envelope: Envelope,
    *,
    now: float,
    registry: MessageRegistry = MESSAGES,
    max_bytes: int = MAX_BYTES,
) -> bytes:
    """The wire bytes of `envelope`, its deadline sent as the ms left after `now`."""
    deadline = envelope.deadline
    if type(deadline) is not float or not math.isfinite(deadline):
        try:
            deadline = _float(deadline, 0)
        except _Mismatch as error:
            raise _invalid(f"deadline: {error.reason}") from None
    milliseconds = (deadline - now) * 1000.0
    if milliseconds < 1.0:  # rounds down to 0 ms or less
        detail = f"{milliseconds:.3f} ms left before sending"
        raise DeadlineExceeded(ReasonCode.DEADLINE_EXCEEDED, detail)
    if not milliseconds <= _INT_MAX:  # also NaN, from a non-finite `now`
        raise _invalid(f"deadline {deadline!r} is out of range at now={now!r}")
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
        raise _invalid(f"{name}: cannot write JSON: {exc}") from exc
    if len(data) > max_bytes:
        raise _invalid(f"{name}: {len(data)} bytes is over the limit of {max_bytes}")
    return data


def decode(
    data: bytes | bytearray | memoryview,
    *,
    now: float,
    registry: MessageRegistry = MESSAGES,
    max_bytes: int = MAX_BYTES,
    expect_tenant: str | None = None,
) -> Envelope:
    """The envelope in `data`, its deadline re-anchored at `now`; or a coded error."""
    if isinstance(data, memoryview):
        if data.nbytes > max_bytes:
            raise _invalid(f"{data.nbytes} bytes is over the limit of {max_bytes}")
        data = data.tobytes()
    elif not isinstance(data, bytes | bytearray):
        raise _invalid(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise _invalid(f"{len(data)} bytes is over the limit of {max_bytes}")
    try:
        wire = orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # not UTF-8, not JSON, too deep
        raise _invalid(f"not JSON: {exc}") from exc
    if type(wire) is not dict:
        raise _invalid(f"envelope: expected object, got {_kind(wire)}")
    if wire.keys() != _HEADERS:
        missing = _HEADERS - wire.keys()
        if missing:
            raise _invalid(f"missing header {min(missing)!r}")
        raise _invalid(f"unknown header {_short(min(wire.keys() - _HEADERS))}")
    version = wire["v"]
    if type(version) is not int or version != WIRE_VERSION:
        raise _invalid(f"header 'v': unsupported version {_short(version)}")
    name = wire["m"]
    if type(name) is not str:
        raise _invalid(f"header 'm' (message name): expected str, got {_short(name)}")
    remaining = wire["ms"]
    if type(remaining) is not int or not _INT_MIN <= remaining <= _INT_MAX:
        raise _header_error("ms", "remaining time", remaining)
    strings = (wire["t"], wire["s"], wire["c"], wire["tr"], wire["k"])
    _check_strings(strings)
    attempt = wire["a"]
    if not _is_attempt(attempt):
        raise _header_error("a", "attempt", attempt)
    if type(wire["b"]) is not dict:
        raise _invalid(f"header 'b' (body): expected object, got {_kind(wire['b'])}")
    cls = registry.lookup(name)
    if cls is None:
        raise _invalid(f"unknown message {_short(name)}")
    tenant = strings[0]
    if expect_tenant is not None and tenant != expect_tenant:
        detail = f"{name}: tenant {_short(tenant)}, expected {expect_tenant!r}"
        raise TenantMismatch(ReasonCode.TENANT_MISMATCH, detail)
    if remaining <= 0:
        detail = f"{name}: {remaining} ms left on arrival"
        raise DeadlineExceeded(ReasonCode.DEADLINE_EXCEEDED, detail)
    message = _decode_body(cls, name, wire["b"])
    return make_envelope(message, now + remaining / 1000, *strings, attempt, None)
