"""The system's audit sink in `exoarmur run`: every event kept locally (the
configured file or memory, and the logs) and appended to the audit stream,
on this process's own chain (`kernel-<owner>`).

The stream's actor starts after NATS and before the rest of the tree. What
is emitted before it is up (a NATS that is slow to answer, a bucket that
takes its time) waits in a buffer of at most BUFFER events, handed over in
order once the actor is attached. Refusals for load (Overloaded's codes:
a full mailbox, a tenant's rate or quota) are kept locally and counted
(/metrics), not appended one by one: a flood would cost an append per
refused message (the admission chain has the tenants' refusals, per
window). One more than the buffer holds is
refused with OVERLOAD_AUDIT_BUFFER: kept locally, counted, logged; never
dropped without a word. Once attached, a hand-over the actor cannot take
(its mailbox full, its breaker open) is counted the same way, by its code
(actors/nats/audit_stream.py: JetStreamAuditSink).
"""

from __future__ import annotations

import logging
from collections import Counter, deque

from exoarmur.actors.nats import JetStreamAuditSink
from exoarmur.runtime import ActorRef, AuditEvent, AuditSink, Overloaded, ReasonCode
from exoarmur.runtime.logs import logged

__all__ = ["BUFFER", "StreamAuditSink", "kernel_chain"]

BUFFER = 10_000
LOG = logging.getLogger("exoarmur.audit")


def kernel_chain(owner: str) -> str:
    """This process's chain of the runtime's own audit events."""
    return f"kernel-{owner}"


class StreamAuditSink:
    def __init__(self, local: AuditSink, *, capacity: int = BUFFER) -> None:
        self.local = local
        self.capacity = capacity
        self.waiting: deque[AuditEvent] = deque()
        self.stream: JetStreamAuditSink | None = None
        self.refused: Counter[ReasonCode] = Counter()  # by code: not handed to the stream

    def attach(self, ref: ActorRef) -> None:
        """The stream's actor is up: hand it what waited, in order, then each event as it comes."""
        self.stream = JetStreamAuditSink(ref)
        while self.waiting:
            self.stream.emit(self.waiting.popleft())

    def emit(self, event: AuditEvent) -> None:
        self.local.emit(event)
        if event.code in Overloaded.codes:
            return  # load: counted and kept locally, never an append each
        if self.stream is not None:
            self.stream.emit(event)
        elif len(self.waiting) < self.capacity:
            self.waiting.append(event)
        else:
            code = ReasonCode.OVERLOAD_AUDIT_BUFFER
            self.refused[code] += 1
            count = self.refused[code]
            if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th...: seen, not a flood
                logged(LOG, logging.ERROR, "audit.buffer_full",
                       f"{count} audit event(s) not appended: the stream is not up and {self.capacity} wait already",
                       code=code.value, refused=count)  # fmt: skip

    def refusals(self) -> Counter[ReasonCode]:
        """Every event not handed to the stream, by code."""
        return self.refused + (self.stream.drops if self.stream is not None else Counter())

    def close(self) -> None:
        self.local.close()
