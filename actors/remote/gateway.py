"""The receiving side: a system's gateway, which hands requests from NATS to
its actors.

    await system.spawn(Gateway, name="gateway", kwargs={"connection": "nats/connection", "system": "node-a"})

Its data plane is the connection's (`Serve`): a request goes from the wire
straight into the target's mailbox, and its answer straight back into the
connection's buffer, as Erlang's distribution delivers to a process with no
process in between; the gateway actor only holds the subscription. A tell is
acknowledged once the target's mailbox took it, so a full remote mailbox is
OVERLOAD_MAILBOX_FULL at the sender, never a silent drop.

What the wire may deliver is an allow-list: only message types the target's
class exports (`@handles(..., remote=True)`). Anything else, supervision and
control signals included, is refused with NOT_EXPORTED and audited, and the
target never sees it. A remote deadline is the sender's, re-anchored here, but
never further out than the gateway's `max_deadline`: a later one is cut to
now + `max_deadline`, so no peer can hold work here for longer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import outcome

from exoarmur.actors.nats import Serve, Unsubscribe
from exoarmur.actors.remote.wire import TELL, encode_error, encode_result, gateway_subject, unframe, valid_system_name
from exoarmur.runtime import (
    Actor,
    ActorContext,
    ActorRef,
    ExoarmurError,
    decode,
    valid_seconds,
)

__all__ = ["MAX_REMOTE_DEADLINE", "Gateway", "answer_remote"]

# The default cap on a remote deadline, in seconds: the longest default of the
# timeout policy (REPLAY_PROCESSING's), so no category's work is cut short.
MAX_REMOTE_DEADLINE = 300.0


class Gateway(Actor):
    """Serves its system's subject on the connection: each request goes
    straight from the wire to the local actor it names (`answer_remote`, run
    by the connection as it arrives: no mailbox of the gateway's in between),
    if that actor exports the message, at the deadline the sender gave (cut
    to `max_deadline` seconds from arrival), and the answer goes back as the
    reply. Backpressure is the target's own: its mailbox full is the sender's
    OVERLOAD_MAILBOX_FULL.

    `tenant`: set, every envelope must carry this tenant (else TENANT_MISMATCH).
    `max_deadline`: seconds, finite and > 0 (else CONFIG_INVALID, at construction)."""

    def __init__(
        self,
        *,
        connection: str,
        system: str,
        tenant: str | None = None,
        max_deadline: float = MAX_REMOTE_DEADLINE,
    ) -> None:
        self.connection_path = connection
        self.system_name = valid_system_name(system)
        self.tenant = tenant
        self.max_deadline = valid_seconds(max_deadline, what="Gateway max_deadline")
        self.connection: ActorRef | None = None
        self.sid: int | None = None

    async def started(self) -> None:
        self.connection = self.context.system.lookup(self.connection_path)
        responder = partial(answer_remote, gateway=self.context.path, tenant=self.tenant, max_deadline=self.max_deadline)
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
    max_deadline: float,
) -> None:
    """One request on a gateway's subject, as the connection that received
    it (`ActorContext.call_as_self`): decoded strictly and checked against
    the target's exports (anything wrong is answered with its code at once,
    audited once), then told or asked of its target, whose answer is encoded
    and sent back from the `ask_then` callback, by the remote deadline. No
    task waits here."""
    system = context.system
    now = system.now()
    try:
        mode, path, data = unframe(data)
        target = system.lookup(path)
        # Checked against the target's exports before any of the body is read:
        # nothing of an unexported class is built from the wire.
        env = decode(data, now=now, expect_tenant=tenant, accept=target.exported)
    except ExoarmurError as exc:
        system.audit_error(exc, kind="rejected", path=gateway, envelope=None)
        respond(encode_error(exc.code, exc.detail))
        return
    latest = now + max_deadline
    if env.deadline > latest:  # no peer holds work here for longer than the cap
        env = env._replace(deadline=latest)
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
        if mode == TELL:
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
