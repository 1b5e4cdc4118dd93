"""Message classes: attrs frozen classes with a stable wire name.

    @message("counter.add", timeout=TimeoutCategory.API_REQUEST)
    class Add:
        amount: int

The wire name, not the class name, is what travels and what the codec looks up,
so a class can be renamed or moved without breaking peers. Registering a name
twice is an error at definition time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs

from exoarmur.runtime.codes import ReasonCode
from exoarmur.runtime.errors import InvalidInput
from exoarmur.runtime.timeouts import TimeoutCategory

T = TypeVar("T", bound=type)

_WIRE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


class MessageRegistry:
    """Wire name -> message class. One per codec; `MESSAGES` is the default."""

    def __init__(self) -> None:
        self._by_name: dict[str, type] = {}

    def register(self, cls: type, name: str) -> None:
        if not _WIRE_NAME.fullmatch(name) or len(name) > 200:
            raise InvalidInput(ReasonCode.ENVELOPE_INVALID, f"bad wire name {name!r}")
        taken = self._by_name.get(name)
        if taken is not None and taken is not cls:
            raise InvalidInput(
                ReasonCode.ENVELOPE_INVALID,
                f"wire name {name!r} is taken by {taken.__module__}.{taken.__qualname__}",
            )
        self._by_name[name] = cls

    def lookup(self, name: str) -> type | None:
        return self._by_name.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)


MESSAGES = MessageRegistry()

# attrs gives every frozen class the same __setattr__; a message must have it.
_FROZEN_SETATTR = attrs.frozen(type("_Frozen", (), {})).__setattr__


def message(
    name: str,
    *,
    timeout: TimeoutCategory = TimeoutCategory.DEFAULT,
    registry: MessageRegistry = MESSAGES,
) -> Callable[[T], T]:
    """Make `cls` an attrs frozen, slotted message class registered under `name`.
    `timeout` is the message's TimeoutCategory (anything else is refused here,
    ENVELOPE_INVALID, not at the first send)."""
    if type(timeout) is not TimeoutCategory:
        raise InvalidInput(
            ReasonCode.ENVELOPE_INVALID,
            f"message {name!r}: timeout must be a TimeoutCategory (e.g. TimeoutCategory.KV_GET), got {timeout!r}",
        )

    def decorate(cls: T) -> T:
        if not attrs.has(cls):
            cls = attrs.frozen(cls)
        elif cls.__setattr__ is not _FROZEN_SETATTR:
            raise InvalidInput(
                ReasonCode.ENVELOPE_INVALID, f"message {cls.__qualname__} must be frozen"
            )
        cls.__wire_name__ = name  # type: ignore[attr-defined]
        cls.__timeout__ = timeout  # type: ignore[attr-defined]
        registry.register(cls, name)
        return cls

    return decorate


def wire_name(cls: type) -> str:
    """The wire name of a message class (raises for a class that is not a message)."""
    # Looked up on the class itself: a subclass of a message is not a message
    # until it is decorated with a wire name of its own.
    name = vars(cls).get("__wire_name__") if isinstance(cls, type) else None
    if name is None:
        raise InvalidInput(
            ReasonCode.ENVELOPE_INVALID, f"{getattr(cls, '__qualname__', cls)!r} is not a @message class"
        )
    return name


def timeout_category(cls: type) -> TimeoutCategory:
    return getattr(cls, "__timeout__", TimeoutCategory.DEFAULT)

