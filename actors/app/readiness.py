"""Is this process ready for work? The checks behind /readyz.

Ready when every check passes, each within READY_CHECK seconds, all at once:
- the process is not stopping;
- the NATS connection is connected;
- every KV bucket answers a leader read (of a key nobody writes);
- every audit chain's stream answers a leader read of its last record;
- no breaker of a child of the `roots` supervisors is open (the connection,
  the buckets, the controls: what every intent needs). One of a tenant or
  of an execution type does not make the process unready: it stops that
  tenant's or that type's intents only (/metrics shows it).

Each answer is `{"ready": bool, "checks": {name: "ok" | "<CODE>: <detail>"}}`.
A check that fails names its code, so /readyz says why, not only that.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import attrs

from exoarmur.actors.nats import Get, NatsStatistics, Statistics, StreamLast
from exoarmur.runtime import ExoarmurError, ReasonCode, System
from exoarmur.supervisors import describe_system

__all__ = ["READY_CHECK", "Readiness"]

READY_CHECK = 2.0  # seconds each check has
PROBE_KEY = "exoarmur-readiness-probe"  # read, never written
OK = "ok"


@attrs.frozen(kw_only=True)
class Readiness:
    connection: str  # the NatsConnection's path
    buckets: Mapping[str, str]  # bucket name -> its KvBucket's path
    streams: tuple[tuple[str, str], ...]  # (stream, subject) of each audit chain
    roots: tuple[str, ...] = ()  # top-level supervisors whose children's breakers count

    async def check(self, system: System) -> dict[str, object]:
        checks: dict[str, str] = {}
        if system.stopping:
            checks["process"] = f"{ReasonCode.SHUTTING_DOWN.value}: the process is stopping"
            return {"ready": False, "checks": checks}
        async with anyio.create_task_group() as group:
            group.start_soon(self._connection, system, checks)
            for bucket, path in self.buckets.items():
                group.start_soon(_answers, checks, f"bucket {bucket}", system, path, Get(PROBE_KEY))
            for stream, subject in self.streams:
                group.start_soon(_answers, checks, f"stream {subject}", system, self.connection, StreamLast(stream, subject))
            group.start_soon(_breakers, checks, system, self.roots)
        return {"ready": all(value == OK for value in checks.values()), "checks": dict(sorted(checks.items()))}

    async def _connection(self, system: System, checks: dict[str, str]) -> None:
        try:
            stats: NatsStatistics = await system.lookup(self.connection).ask(Statistics(), timeout=READY_CHECK)
        except ExoarmurError as exc:
            checks["nats"] = f"{exc.code.value}: {exc.detail}"
            return
        checks["nats"] = OK if stats.connected else f"{ReasonCode.NATS_DISCONNECTED.value}: not connected"


async def _answers(checks: dict[str, str], name: str, system: System, path: str, message: object) -> None:
    try:
        await system.lookup(path).ask(message, timeout=READY_CHECK)
    except ExoarmurError as exc:
        checks[name] = f"{exc.code.value}: {exc.detail}"
    else:
        checks[name] = OK


async def _breakers(checks: dict[str, str], system: System, roots: tuple[str, ...]) -> None:
    try:
        with anyio.fail_after(READY_CHECK):
            nodes = await describe_system(system, roots=roots)
    except ExoarmurError as exc:
        checks["breakers"] = f"{exc.code.value}: {exc.detail}"
        return
    except TimeoutError:
        checks["breakers"] = f"{ReasonCode.DEADLINE_EXCEEDED.value}: the tree was not described in {READY_CHECK:g} s"
        return
    open_ = [child.path for node in nodes for child in node.children if (child.breaker or "").startswith("open")]
    checks["breakers"] = OK if not open_ else f"{ReasonCode.BREAKER_OPEN.value}: {', '.join(open_)}"
