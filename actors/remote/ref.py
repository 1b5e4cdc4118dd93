"""The sending side: a ref to an actor in another system, across NATS.

    ref = RemoteRef(system, connection="nats/connection", system_name="node-a", path="tenant/acme")
    total = await ref.ask(Add(5))              # as ActorRef.ask, across processes

The envelope is built as a local send's is (`outgoing_envelope`: the deadline
from `deadline=`, `timeout=` or the policy's default, never later than the
sending handler's; tenant and trace inherited), refused here as a local ref
refuses it (a deadline already passed is DEADLINE_EXCEEDED, an infinite or NaN
one ENVELOPE_INVALID), and sent as a request to the target system's gateway.

Codes the sender can see: those of the target (its handler's answer, its
crash, its overload), ACTOR_NOT_FOUND (no such path, or no gateway for that
system at all: the process is gone), NOT_EXPORTED (the target does not export
the message for remote use), ENVELOPE_INVALID and TENANT_MISMATCH (refused by
the gateway's codec), and, when no reply comes in time, the message's own
timeout code, as a local ask would give.
"""

from __future__ import annotations

from typing import Any

from exoarmur.actors.nats import Request, Response
from exoarmur.actors.remote.wire import ASK, TELL, decode_reply, frame, gateway_subject, valid_system_name
from exoarmur.runtime import (
    ActorSystem,
    Envelope,
    ExoarmurError,
    ReasonCode,
    deadline_refusal,
    encode,
    outgoing_envelope,
    timeout_category,
)

__all__ = ["RemoteRef"]


class RemoteRef:
    """An actor in another system, reached through this system's NATS connection.
    `tell` returns once the remote mailbox took the message; `ask` returns the
    handler's result. Both raise the coded error the remote side answered."""

    __slots__ = ("system", "connection_path", "system_name", "path")

    def __init__(self, system: ActorSystem, *, connection: str, system_name: str, path: str) -> None:
        self.system = system
        self.connection_path = connection
        self.system_name = valid_system_name(system_name)
        self.path = path

    def __repr__(self) -> str:
        return f"RemoteRef({self.system_name}:{self.path})"

    async def ask(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> Any:
        """The remote handler's result, or the coded error. `deadline` is
        absolute on this system's clock; it travels as the time left."""
        return await self._send(ASK, message, timeout, deadline, tenant, idempotency_key, trace_id)

    async def tell(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Returns once the remote mailbox took `message`; its refusal is
        raised here with its code."""
        await self._send(TELL, message, timeout, deadline, tenant, idempotency_key, trace_id)

    async def _send(
        self,
        mode: bytes,
        message: Any,
        timeout: float | None,
        deadline: float | None,
        tenant: str | None,
        idempotency_key: str | None,
        trace_id: str | None,
    ) -> Any:
        system = self.system
        env = outgoing_envelope(system, None, message, timeout, deadline, tenant, idempotency_key, trace_id, None)
        now = system.now()
        refusal = deadline_refusal(env.deadline, now)
        if refusal is not None:
            raise system.failure("rejected", refusal, path=self.path, envelope=env, detail=f"deadline {env.deadline!r}")
        try:
            data = encode(env, now=now)
        except ExoarmurError as exc:
            system.audit_error(exc, kind="rejected", path=self.path, envelope=env)
            raise
        request = Request(gateway_subject(self.system_name), frame(mode, self.path, data))
        connection = system.lookup(self.connection_path)
        try:
            response: Response = await connection.ask(request, deadline=env.deadline)
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
