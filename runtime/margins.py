"""Every timing margin of exoarmur, in one table, each with its reason.

A margin is not a deadline: deadlines come from the envelope (runtime/timeouts.py
and the sender). A margin is the small, fixed time the system keeps for itself
around a deadline (to answer before the asker's timer fires, to let a stop
finish its hooks) or a bound on a step that has no envelope (closing a client,
reaping a process). Each value is a float (use it as seconds, or as the
fraction its reason names) that also carries `reason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["MARGINS", "Margin"]


class Margin(float):
    """Seconds (or a fraction, where the reason says so), with why they exist."""

    reason: str

    def __new__(cls, value: float, reason: str) -> Margin:
        margin = super().__new__(cls, value)
        margin.reason = reason
        return margin


# ---- the kernel ------------------------------------------------------------------
STOP_OVERRUN = Margin(
    1.0, "how long `stopping` hooks may overrun a stop's deadline (all actors together) before they are cancelled"
)
PARK = Margin(
    0.05, "how long an idle drain stays parked on asyncio (PARK to twice that) before its task ends: a wake costs less than a spawn"
)

# ---- the main process ----------------------------------------------------------------
PROCESS_STOP_OVERRUN = Margin(
    2.0, "how long `exoarmur run`'s graceful stop may overrun stop_timeout before the rest is cancelled (exit DEADLINE_EXCEEDED)"
)

# ---- NATS --------------------------------------------------------------------------
ANSWER = Margin(
    0.002, "what a NATS call leaves of its envelope's deadline for its answer to reach the asker before the asker's own timer"
)
BRIDGED_ANSWER = Margin(
    0.010, "ANSWER on trio-asyncio, whose loop fires timers 0.6 to 3.4 ms late (measured here)"
)
KV_HOP_SHARE = Margin(
    0.9, "the fraction of a KV bucket's remaining time given to the connection's call, so the bucket answers with the call's code first"
)
CLIENT_CLOSE = Margin(
    1.0,
    "closing a nats-py client, reaping its tasks, or dropping an old watch consumer after a reconnect, before giving up"
    " on it (a close can hang on a silent peer: the socket is then aborted)",
)
CALL_FLOOR = Margin(0.001, "the least time a NATS call is given when its envelope's deadline is all but spent (none would not start it)")
CONNECT_ATTEMPT = Margin(2.0, "one nats-py connect attempt at most, so a retry fits in the NATS_CONNECT deadline")
CONNECT_ATTEMPT_FLOOR = Margin(0.1, "the shortest connect attempt worth making when the deadline is nearly spent")
JS_BACKSTOP = Margin(
    120.0,
    "nats-py's own timeout on JetStream calls, a backstop: each call is cut at its envelope's deadline first",
)
FETCH_CONSUMER_IDLE = Margin(
    10.0,
    "how long the server keeps a stream fetch's consumer once nothing pulls from it (a fetch deletes its own; this ends those of fetches cut short)",
)
AUDIT_ATTEMPT = Margin(
    1.0, "one audit append attempt at most: a lost ack is retried (deduplicated by message id) while the deadline leaves time"
)
AUDIT_RETRY_PAUSE = Margin(0.01, "the pause between audit append attempts, so a down connection is not asked in a hot loop")
AUDIT_STORED_IDS = Margin(
    10.0,
    "how long an audit chain remembers the message ids it stored (at most STORED_IDS_LIMIT of them): an append "
    "repeated within it (a resumed intent's last revision) is stored once even where a batch hides its id from the stream",
)

# ---- intents ---------------------------------------------------------------------------
INTENT_RETRY_FIRST = Margin(0.1, "the first pause before an intent step that failed on its store or audit is tried again")
INTENT_RETRY_MAX = Margin(5.0, "the longest pause between such tries (doubling from the first, with jitter)")
EXECUTION_ANSWER = Margin(
    0.01, "what an execution type's call leaves of its envelope's deadline, so its answer reaches the asker before the asker's timer"
)
INDEX_ORPHAN_AGE = Margin(
    60.0,
    "an index entry whose intent record does not exist is dropped only this long after it was written: a submission's create may not have landed yet",
)
WAIT_POLL = Margin(
    1.0, "a request waiting for its intent's end reads the record this often when no actor of this process tells it the end"
)
WAIT_POLL_TOLD = Margin(
    10.0,
    "a request waiting for an intent whose actor runs in this process (and tells the end) is read this often all the same, "
    "in case its end was told before the request began to wait",
)
WAIT_REPLY = Margin(
    5.0, "a request that waits for its intent's end is given this much more than its wait, for the reply to come back"
)
LEASE_GRACE = Margin(
    2.0, "an owner's lease is taken over only after its revision stood still for its TTL and this much more (observer's clock)"
)
LEASE_SPARE = Margin(
    1.0, "an apply starts only if the owner's lease outlasts the type's call (its timeout and answer) by this much"
)
APPROVAL_POLL = Margin(
    5.0, "an intent waiting for its approval reads it again this often, even when no change was told to it"
)
REVERT_WAIT = Margin(
    10.0, "an intent waiting for its TTL revert sleeps at most this long at a time (one step's time is EXECUTION_INTENT's)"
)
OWNER_CHECK = Margin(
    5.0, "what a process knows of a tenant's owner is read again this often (a takeover is seen within it)"
)
QUOTA_RECOUNT = Margin(
    5.0, "a tenant owner sets its count of unsettled intents again from the index this often (an end never told is no leak)"
)
REFUSALS_WINDOW = Margin(
    5.0, "a tenant owner audits the submissions it refused (rate, quota) once per this window, counted by code"
)
SWITCHES_UNKNOWN_GRACE = Margin(
    10.0, "kill switches that cannot be read are read again for this long (a store failing over) before they count as set"
)
UNKNOWN_RETRY_FIRST = Margin(0.1, "the first pause before unreadable kill switches are read again")
UNKNOWN_RETRY_MAX = Margin(1.0, "the longest pause between those reads (doubling from the first)")
GATE_CHECK = Margin(
    15.0, "how long an intent waits for its gates' answer: unreadable switches are read again for SWITCHES_UNKNOWN_GRACE first"
)
GATE_READ_SHARE = Margin(
    0.5, "the share of a gate check's remaining time its reads get, so a read that hangs ends as a refusal (fail closed), not a timeout"
)
KILL_CHECK_FRESH = Margin(
    1.0,
    "an apply starts only this soon after the reads of the kill-switch check that cleared it were sent; "
    "`killswitch set` answers this long after its write is durable, so no apply starts after the answer",
)

SWITCHES_SHARED = Margin(
    0.25,
    "a clear reading of a tenant's kill switches answers the gate checks that come within this of its reads being sent "
    "(under KILL_CHECK_FRESH: an apply it clears still starts within that of the reads); an active one answers only its own",
)

STARTUP_RETRY_FIRST = Margin(0.05, "the first pause before a start that found NATS not ready asks again")
STARTUP_RETRY_MAX = Margin(1.0, "the longest pause between those tries (the start hook's own deadline ends them)")

# ---- the embedded nats-server ---------------------------------------------------------
SERVER_POLL = Margin(0.02, "the pause between looks for the starting server's ports file and health")
HEALTH_PROBE = Margin(1.0, "one GET /healthz of the embedded server (a hung server fails the probe)")
SERVER_SHUTDOWN = Margin(10.0, "how long the embedded server gets for a clean stop (SIGTERM: JetStream flushed) before SIGKILL")
PROCESS_REAP = Margin(5.0, "waiting for a SIGKILLed server process to be gone (SIGKILL cannot be ignored: this is the reap)")


MARGINS: Mapping[str, Margin] = MappingProxyType(
    {name: value for name, value in sorted(globals().items()) if isinstance(value, Margin)}
)
