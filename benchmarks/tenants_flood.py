"""The flooding tenant of the tenants benchmark, as a client process of its
own: its requests and replies never wait in the measured tenant's event
loop, as another tenant's client never would.

    python -m exoarmur.benchmarks.tenants_flood URL TENANT RATE SECONDS TAG

The server's token comes in EXOARMUR_NATS_TOKEN (never on the command
line). It connects, prints `ready` on stdout, submits `noop` intents open
loop at RATE a second for SECONDS without `wait`, then prints its answers
by code as one JSON line (`accepted`: an intent created; `timed out`: no
answer within CALL_SECONDS) and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from typing import Any

import nats
import orjson

from exoarmur.actors.intents.requests import PREFIX
from exoarmur.benchmarks.measure import perf_ns
from exoarmur.benchmarks.nats_baselines import CALL_SECONDS, CONNECT_ATTEMPT_SECONDS, READY_SECONDS

__all__ = ["ACCEPTED", "TIMED_OUT", "open_loop"]

ACCEPTED = "accepted"  # answers that created an intent (not a code: "")
TIMED_OUT = "timed out"  # no answer within the request's timeout


async def open_loop(one: Any, *, rate: float, seconds: float) -> None:
    """`one(i, due_ns)` started at `due_ns` = the start + i/rate s (perf_ns),
    for `seconds`, each in a task of its own (a slow answer never delays
    the next start; a start the client itself is late for still counts
    from when it was due); returns when all are done."""
    count = int(rate * seconds)
    start = perf_ns()
    async with asyncio.TaskGroup() as group:
        for index in range(count):
            due = start + round(index * 1e9 / rate)
            await asyncio.sleep(max(0.0, (due - perf_ns()) / 1e9))
            group.create_task(one(index, due))


async def ask(nc: Any, tenant: str, body: bytes, timeout: float) -> dict[str, Any]:
    try:
        reply = await nc.request(f"{PREFIX}.{tenant}.submit", body, timeout=timeout)
    except nats.errors.TimeoutError:
        return {"ok": False, "code": TIMED_OUT}
    return orjson.loads(reply.data)


def code_of(answer: dict[str, Any]) -> str:
    return ACCEPTED if answer.get("ok") is True and answer.get("code") == "" else str(answer.get("code"))


async def flood(url: str, tenant: str, rate: float, seconds: float, tag: str) -> Counter[str]:
    token = os.environ.get("EXOARMUR_NATS_TOKEN") or None
    nc = await asyncio.wait_for(
        nats.connect(url, token=token, name=f"bench-tenants-{tenant}", connect_timeout=CONNECT_ATTEMPT_SECONDS),
        READY_SECONDS,
    )
    answers: Counter[str] = Counter()

    async def one(index: int, due: int) -> None:
        body = orjson.dumps({"id": f"{tag}-{index}", "type": "noop"})
        answers[code_of(await ask(nc, tenant, body, CALL_SECONDS))] += 1

    try:
        print("ready", flush=True)
        await open_loop(one, rate=rate, seconds=seconds)
    finally:
        await asyncio.wait_for(nc.close(), CALL_SECONDS)
    return answers


def main(argv: list[str]) -> int:
    url, tenant, rate, seconds, tag = argv
    answers = asyncio.run(flood(url, tenant, float(rate), float(seconds), tag))
    print(orjson.dumps(dict(answers)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
