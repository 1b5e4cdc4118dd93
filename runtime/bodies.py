"""Message bodies on the wire: a @message instance to a JSON-ready object and
back, strictly, by the attrs fields of its class (runtime/codec.py frames
the envelope around it).

Body field types: int (a signed 64-bit int, never a bool), float (an int is
accepted and becomes a float; never NaN or infinite), str, bool, None,
`X | None`, `list[X]`, `tuple[X, ...]`, `tuple[X, Y]`, `dict[str, X]`, nested
attrs classes (as objects, without a wire name), enums with str or int values
(by value), `Any` (any JSON value), and `Annotated[X, ...]` as X. Any other annotation is ENVELOPE_INVALID
naming the class and field. Types are exact: no str-to-int coercion, no bool
for int, a list field holds a list and a tuple field a tuple. Every field is
on the wire (none may be missing, none may be extra), and nesting is at most
MAX_DEPTH levels.

A body that does not fit is ENVELOPE_INVALID naming the class and the field.
The conversion plan of each class is built once and kept.
"""

from __future__ import annotations

import enum
import math
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.errors import InvalidInput
from exoarmur.runtime.messages import MESSAGES, MessageRegistry, wire_name

__all__ = ["MAX_DEPTH", "decode_body", "decode_message", "encode_message", "invalid", "kind_of", "short"]

# Containers and objects inside a body. orjson refuses to write more than 254
# levels and the envelope itself is one, so anything we encode stays writable.
MAX_DEPTH = 128

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1

# A converter is (value, depth) -> value; one per direction per field type.
_Convert = Callable[[Any, int], Any]


class _Mismatch(Exception):
    """A value does not fit its field type. `path` (innermost segment first)
    grows as it propagates out; the top level turns it into InvalidInput."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is dict:
        return "object"
    return type(value).__name__


def _expected(what: str, value: object) -> _Mismatch:
    return _Mismatch(f"expected {what}, got {kind_of(value)}")


def _too_deep() -> _Mismatch:
    return _Mismatch(f"nested deeper than {MAX_DEPTH} levels")


def _join(path: list[str]) -> str:
    out = ""
    for segment in reversed(path):
        out += segment if segment.startswith("[") or not out else "." + segment
    return out


def invalid(detail: str) -> InvalidInput:
    return InvalidInput(ReasonCode.ENVELOPE_INVALID, detail)


def _body_error(name: str, error: _Mismatch) -> InvalidInput:
    where = f"field '{_join(error.path)}' of {name}" if error.path else name
    return invalid(f"{where}: {error.reason}")


# ---- scalar converters (the same both ways) ----------------------------------


def _int(value: Any, depth: int) -> int:
    if type(value) is not int:
        raise _expected("int", value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise _Mismatch(f"int {short(value)} is out of the signed 64-bit range")
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
                raise _Mismatch(f"object key {short(key)} is not a str")
            try:
                out[key] = item(element, depth + 1)
            except _Mismatch as error:
                error.path.append(f"[{short(key)}]")
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
            raise _Mismatch(f"{short(value)} is not a {cls.__qualname__} value")
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
    return invalid(f"{detail} ({why})" if why else detail)


def _plan(cls: type, building: frozenset[type] = frozenset()) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    if not attrs.has(cls):
        raise invalid(f"{cls.__qualname__} is not an attrs class")
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # NameError and friends, from user annotations
        raise invalid(f"cannot resolve the annotations of {cls.__qualname__}: {exc!r}") from exc
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
        raise _Mismatch(f"unknown field {short(min(body.keys() - plan.names, key=repr))}")
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
        raise invalid(f"{cls.__qualname__} ({name}) is not in this registry")
    try:
        return name, _encode_fields(_PLANS.get(cls) or _plan(cls), message, 0)
    except _Mismatch as error:
        raise _body_error(name, error) from None


def decode_message(name: str, body: Any, *, registry: MessageRegistry = MESSAGES) -> Any:
    """The message of wire name `name` built from a decoded JSON `body`."""
    cls = registry.lookup(name) if type(name) is str else None
    if cls is None:
        raise invalid(f"unknown message {short(name)}")
    if type(body) is not dict:
        raise invalid(f"body of {name}: expected object, got {kind_of(body)}")
    return decode_body(cls, name, body)


def decode_body(cls: type, name: str, body: dict[str, Any]) -> Any:
    try:
        return _decode_fields(_PLANS.get(cls) or _plan(cls), body, 0)
    except _Mismatch as error:
        raise _body_error(name, error) from None


