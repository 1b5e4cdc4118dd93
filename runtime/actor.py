"""The Actor base class: handlers by message type, lifecycle hooks.

    class Counter(Actor):
        mailbox_capacity = 100

        def __init__(self, *, start: int = 0) -> None:
            self.total = start

        @handles(Add)
        def add(self, message: Add) -> int:  # plain def: cannot suspend
            self.total += message.amount
            return self.total

        @handles(Fetch)
        async def fetch(self, message: Fetch) -> int:  # async def: runs in a
            await self.store.get(...)                   # cancel scope at the deadline
            ...

An actor handles one envelope at a time. A plain `def` handler cannot suspend,
so the deadline is checked once when the envelope is taken; an `async def`
handler runs inside a cancel scope that fires at the envelope's deadline. The
envelope being handled is `self.context.envelope`.

A handler that raises a coded error (an `ExoarmurError`, e.g. `Conflict`) has
answered with it: the asker gets it and the actor lives on. Any other
exception, or `ActorCrashed`, is a crash: the asker gets ACTOR_CRASHED and the
actor's parent decides what happens next.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from exoarmur.runtime.mailbox import Overflow, validate_capacity
from exoarmur.runtime.messages import wire_name

if TYPE_CHECKING:
    from exoarmur.runtime.context import ActorContext

F = TypeVar("F", bound=Callable[..., Any])

# (handler function, is it a coroutine function)
Handler = tuple[Callable[..., Any], bool]


def handles(
    *message_types: type,
    concurrent: bool = False,
    batch: bool = False,
    per_item: bool = False,
    remote: bool = False,
    urgent: bool = False,
) -> Callable[[F], F]:
    """Mark a method as the handler of the given @message classes.

    `remote=True`: the message types are exported for remote use: a gateway
    (actors/remote/) delivers them from the wire. Anything not exported is
    refused there with a code; supervision and control signals never are.

    `concurrent=True` (an `async def` only): the handler runs in a task of its
    own while the actor takes its next envelope, up to the class's
    `concurrency` at once (see runtime/inflight.py). Use it for handlers that
    mostly wait on I/O; they must not rely on running one at a time.

    `batch=True` (an `async def` only): the handler gets a list of messages,
    the run of consecutive envelopes of its types at the head of the mailbox
    (at most `throughput`), in one call (see runtime/batch.py). Its result,
    coded error or crash is every one's; with `per_item=True` it returns a
    list with one result per message instead, where an ExoarmurError is that
    message's coded answer. Alone it runs under the run's earliest deadline,
    holding the mailbox: for cheap, ordered work such as handing publishes to
    a client's buffer. With `concurrent=True` the run is one concurrent
    handler under the run's latest deadline (each asker still waits no longer
    than its own): many I/O calls started in one go.

    `urgent=True`: envelopes of these types are queued ahead of the ordinary
    ones (in their own order), and a full mailbox still takes them, up to
    as many again as its capacity, and never sheds it for ordinary mail
    (runtime/admission.py). For what ends work already taken (an intent's
    end, a quota released), so that a flood of new work queued in front
    cannot delay it or make it refused: it is bounded by that work, not by
    the flood. (With every slot of a concurrent actor taken, it still waits
    for one to free.) Like Akka's ControlMessage and
    OTP 28's priority messages, its order with other messages is given up."""
    for cls in message_types:
        wire_name(cls)  # raises for a class that is not a @message

    def mark(fn: F) -> F:
        if (concurrent or batch) and not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn.__qualname__}: only an async def handler can be concurrent or batched")
        if per_item and not batch:
            raise TypeError(f"{fn.__qualname__}: per_item is for batch handlers")
        fn.__handles__ = message_types  # type: ignore[attr-defined]
        fn.__concurrent__ = concurrent  # type: ignore[attr-defined]
        fn.__batch__ = batch  # type: ignore[attr-defined]
        fn.__per_item__ = per_item  # type: ignore[attr-defined]
        fn.__remote__ = remote  # type: ignore[attr-defined]
        fn.__urgent__ = urgent  # type: ignore[attr-defined]
        return fn

    return mark


class Actor:
    """The base of every actor: handlers by message type (`@handles`), one
    envelope at a time, lifecycle hooks (`started`, `stopping`), and the
    mailbox's capacity and overflow policy per class.

    Subclass it, declare handlers, and spawn it with `ActorSystem.spawn` (or
    as a supervisor's child). Its `__init__` takes the spawn's `kwargs` as
    keyword arguments and runs again for every fresh instance after a crash;
    `self.context` (runtime/context.py) is set before `started` runs.
    """

    # Defaults; each can be overridden per class, and capacity/overflow per
    # path in config.
    mailbox_capacity: ClassVar[int] = 1000
    overflow: ClassVar[Overflow] = Overflow.WAIT
    # Envelopes handled per turn before the drain yields to other tasks.
    throughput: ClassVar[int] = 512
    # Concurrent handlers (`@handles(..., concurrent=True)`) in flight at most.
    concurrency: ClassVar[int] = 64

    # Filled in by __init_subclass__.
    _dispatch: ClassVar[dict[type, Handler]] = {}
    _concurrent: ClassVar[frozenset[type]] = frozenset()
    _batched: ClassVar[frozenset[type]] = frozenset()
    _per_item: ClassVar[frozenset[type]] = frozenset()
    _exported: ClassVar[frozenset[type]] = frozenset()  # accepted from the wire
    _urgent: ClassVar[frozenset[type]] = frozenset()  # queued ahead of the rest
    _has_started: ClassVar[bool] = False
    _has_stopping: ClassVar[bool] = False

    # Set by the runtime before `started` runs.
    context: ActorContext

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        validate_capacity(cls.mailbox_capacity)
        Overflow(cls.overflow)
        if not isinstance(cls.throughput, int) or cls.throughput <= 0:
            raise ValueError(f"{cls.__qualname__}.throughput must be a positive int")
        if not isinstance(cls.concurrency, int) or cls.concurrency <= 0:
            raise ValueError(f"{cls.__qualname__}.concurrency must be a positive int")
        dispatch: dict[type, Handler] = {}
        concurrent: set[type] = set()
        batched: set[type] = set()
        per_item: set[type] = set()
        exported: set[type] = set()
        urgent: set[type] = set()
        for base in reversed(cls.__mro__[1:]):
            dispatch.update(getattr(base, "_dispatch", {}))
            concurrent.update(getattr(base, "_concurrent", ()))
            batched.update(getattr(base, "_batched", ()))
            per_item.update(getattr(base, "_per_item", ()))
            exported.update(getattr(base, "_exported", ()))
            urgent.update(getattr(base, "_urgent", ()))
        own: dict[type, str] = {}
        for name, fn in vars(cls).items():
            for message_type in getattr(fn, "__handles__", ()):
                if message_type in own:
                    raise TypeError(
                        f"{cls.__qualname__}: {message_type.__qualname__} is handled by both "
                        f"{own[message_type]} and {name}"
                    )
                own[message_type] = name
                dispatch[message_type] = (fn, inspect.iscoroutinefunction(fn))
                for kind, found in (
                    ("__concurrent__", concurrent),
                    ("__batch__", batched),
                    ("__per_item__", per_item),
                    ("__remote__", exported),
                    ("__urgent__", urgent),
                ):
                    if getattr(fn, kind, False):
                        found.add(message_type)
                    else:
                        found.discard(message_type)  # an override that is not
        cls._dispatch = dispatch
        cls._concurrent = frozenset(concurrent)
        cls._batched = frozenset(batched)
        cls._per_item = frozenset(per_item)
        cls._exported = frozenset(exported)
        cls._urgent = frozenset(urgent)
        cls._has_started = cls.started is not Actor.started
        cls._has_stopping = cls.stopping is not Actor.stopping

    async def started(self) -> None:
        """Runs before the first envelope (and again in a restarted instance)."""

    async def stopping(self) -> None:
        """Runs once the mailbox is drained or dead-lettered at stop (and when a
        parent winds the instance down to restart it with its siblings).
        Runtime signals sent to the instance while it runs (a supervisor's
        children exiting as it shuts them down) are handled right after it."""
