"""Actors in other processes: a gateway per system, and refs that cross NATS.

    await system.spawn(Gateway, name="gateway", kwargs={"connection": "nats/connection", "system": "node-a"})
    ref = RemoteRef(system, connection="nats/connection", system_name="node-a", path="tenant/acme")
    total = await ref.ask(Add(5))              # as ActorRef.ask, across processes

The wire: a NATS request to `exoarmur.gw.<system>` whose payload is one line
naming the mode and the target path (`ask tenant/acme\n`; a path has no
blank or newline), then the envelope in the strict codec (deadline as
remaining ms, re-anchored by the receiver). No NATS headers: they cost more
to write and to parse than the line. The gateway answers every request with one reply: the handler's result,
or a code. Its data plane is the connection's (`Serve`): a request goes from
the wire straight into the target's mailbox, and its answer straight back into
the connection's buffer, as Erlang's distribution delivers to a process with
no process in between; the gateway actor holds the subscription. A tell is acknowledged once the target's mailbox took it, so a full
remote mailbox is OVERLOAD_MAILBOX_FULL at the sender, never a silent drop.

Codes the sender can see: those of the target (its handler's answer, its
crash, its overload), ACTOR_NOT_FOUND (no such path, or no gateway for that
system at all: the process is gone), ENVELOPE_INVALID and TENANT_MISMATCH
(refused by the gateway's codec), and, when no reply comes in time, the
message's own timeout code, as a local ask would give.

A result travels if it is JSON (None, bool, int, float, str, lists and dicts of
them) or a registered @message instance; anything else is ENVELOPE_INVALID.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
import outcome

from exoarmur.actors.nats.connection import Request, Response, Serve, Unsubscribe
from exoarmur.runtime import Actor, ActorContext, ActorRef, ActorSystem, ReasonCode
from exoarmur.runtime.codec import decode, decode_message, encode, encode_message
from exoarmur.runtime.ref import carried_over
from exoarmur.runtime.envelope import Envelope
from exoarmur.runtime.errors import ExoarmurError, error_for
from exoarmur.runtime.messages import timeout_category

__all__ = ["Gateway", "RemoteRef", "answer_remote", "gateway_subject"]

MODES = (b"ask", b"tell")
_new = tuple.__new__  # Envelope without NamedTuple's argument parsing (as runtime/ref.py)


def gateway_subject(system_name: str) -> str:
    return f"exoarmur.gw.{system_name}"


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


# ---- replies on the wire ------------------------------------------------------------


def encode_result(value: Any) -> bytes:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        try:
            return orjson.dumps({"v": value})
        except TypeError:
            pass
    else:
        try:
            name, body = encode_message(value)
            return orjson.dumps({"m": name, "b": body})
        except ExoarmurError:
            pass
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


# ---- the receiving side --------------------------------------------------------------


class Gateway(Actor):
    """Serves its system's subject on the connection: each request goes
    straight from the wire to the local actor it names (`answer_remote`, run
    by the connection as it arrives: no mailbox of the gateway's in between),
    at the deadline the sender gave, and the answer goes back as the reply.
    Backpressure is the target's own: its mailbox full is the sender's
    OVERLOAD_MAILBOX_FULL."""

    def __init__(self, *, connection: str, system: str, tenant: str | None = None) -> None:
        self.connection_path = connection
        self.system_name = system
        self.tenant = tenant  # set: every envelope must carry this tenant
        self.connection: ActorRef | None = None
        self.sid: int | None = None

    async def started(self) -> None:
        self.connection = self.context.system.lookup(self.connection_path)
        responder = partial(answer_remote, gateway=self.context.path, tenant=self.tenant)
        self.sid = await self.connection.ask(Serve(gateway_subject(self.system_name), responder))

    async def stopping(self) -> None:
        if self.connection is not None and self.sid is not None:
            try:
                await self.connection.ask(Unsubscribe(self.sid))
            except ExoarmurError:
                # Gone, full or too slow (audited where it failed): a gone
                # connection took the subscription with it; a live one keeps
                # serving until its next Serve of this subject replaces it.
                pass


def answer_remote(
    context: ActorContext,
    data: bytes,
    headers: dict[str, str] | None,
    respond: Callable[[bytes], None],
    *,
    gateway: str,
    tenant: str | None,
) -> None:
    """One request on a gateway's subject, as the connection that received
    it (runtime's `call_as_self`): decoded strictly (anything wrong is
    answered with its code at once), then told or asked of its target, whose
    answer is encoded and sent back from the `ask_then` callback, by the
    remote deadline. No task waits here."""
    system = context.system
    try:
        mode, path, data = unframe(data)
        env = decode(data, now=system.now(), expect_tenant=tenant)
        target = system.lookup(path)
    except ExoarmurError as exc:
        system.audit_error(exc, kind="rejected", path=gateway, envelope=None)
        respond(encode_error(exc.code, exc.detail))
        return
    options = {
        "deadline": env.deadline,
        "tenant": env.tenant,
        "trace_id": env.trace_id,
        "idempotency_key": env.idempotency_key,
    }
    # The remote envelope is the root of this work: its deadline bounds it
    # (`context` is this call's own, as `on_behalf_of` would make one).
    context.envelope = env
    try:
        if mode == b"tell":
            target.tell_nowait(env.message, **options)
            respond(encode_result(None))
        else:
            target.ask_then(env.message, partial(_answer, respond), eager=True, **options)
    except ExoarmurError as exc:
        respond(encode_error(exc.code, exc.detail))


def _answer(respond: Callable[[bytes], None], result: outcome.Outcome) -> None:
    if isinstance(result, outcome.Value):
        data = encode_result(result.value)
    elif isinstance(result.error, ExoarmurError):
        data = encode_error(result.error.code, result.error.detail)
    else:
        raise result.error  # not ours to encode: a bug, the connection crashes
    respond(data)


# ---- the sending side ------------------------------------------------------------------


class RemoteRef:
    """An actor in another system, reached through this system's NATS connection.
    `tell` returns once the remote mailbox took the message; `ask` returns the
    handler's result. Both raise the coded error the remote side answered."""

    __slots__ = ("system", "connection_path", "system_name", "path")

    def __init__(self, system: ActorSystem, *, connection: str, system_name: str, path: str) -> None:
        self.system = system
        self.connection_path = connection
        self.system_name = system_name
        self.path = path

    def __repr__(self) -> str:
        return f"RemoteRef({self.system_name}:{self.path})"

    async def ask(self, message: Any, **options: Any) -> Any:
        return await self._send(message, b"ask", **options)

    async def tell(self, message: Any, **options: Any) -> None:
        await self._send(message, b"tell", **options)

    async def _send(
        self,
        message: Any,
        mode: bytes,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> Any:
        system = self.system
        now = system.now()
        if deadline is None:
            deadline = now + (system.default_seconds(type(message)) if timeout is None else timeout)
        deadline, tenant, trace_id, sender = carried_over(deadline, tenant, trace_id)
        env = _new(Envelope, (message, deadline, tenant, sender, None, trace_id, idempotency_key, 1, None))
        try:
            data = encode(env, now=now)
        except ExoarmurError as exc:
            system.audit_error(exc, kind="rejected", path=self.path, envelope=env)
            raise
        request = Request(gateway_subject(self.system_name), frame(mode, self.path, data))
        connection = system.lookup(self.connection_path)
        try:
            response: Response = await connection.ask(request, deadline=deadline)
        except ExoarmurError as exc:
            raise self._translated(exc, env) from None
        try:
            return decode_reply(response.data)
        except ExoarmurError as exc:
            system.audit_error(exc, kind="remote", path=self.path, envelope=env)
            raise

    def _translated(self, error: ExoarmurError, env: Envelope) -> ExoarmurError:
        """What the caller of a local ask would see for the same fault."""
        if error.code is ReasonCode.NATS_NO_RESPONDERS:
            code, detail = ReasonCode.ACTOR_NOT_FOUND, f"no gateway answers for system {self.system_name!r}"
        elif error.code is ReasonCode.TIMEOUT_NATS_REQUEST:
            code, detail = timeout_category(type(env.message)).code, f"no reply from {self}"
        else:
            return error
        return self.system.failure("remote", code, path=self.path, envelope=env, detail=detail)

