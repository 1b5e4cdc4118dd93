"""Kill sweeps of `exoarmur run` with `ledger` intents: exactly one effect per
intent across SIGKILLs, fault points and duplicate submissions.

A sweep runs `exoarmur run` as a subprocess (embedded NATS in its state
directory), submits intents across tenants over the NATS subjects (nats-py
as the client, retrying each until it is acknowledged), SIGKILLs the process
at random moments and at each named fault point (EXOARMUR_FAULTS), restarts
it each time, and then checks, from durable state only:

- every acknowledged intent is in KV and terminal, and the open index is empty;
- the ledger holds exactly one apply per SUCCEEDED intent and none for any other;
- nothing was applied that was not submitted;
- `exoarmur replay --verify` passes: the audit trail rebuilds exactly what KV holds.

The CI runs a short form (tests/chaos/test_intents_kill.py); the long form is

    python -m exoarmur.benchmarks.kill_sweep --count 2000 --kills 10 --seed 1 [--copies 3] [--backend trio]
        [--variant base|nats|two|cluster|reverts]

with the CI's variants at any size: `nats` SIGKILLs the embedded
nats-server too; `two` runs two processes on one nats-server, one dying at
`after_apply` (the other takes over); `cluster` puts them on a 3-node
cluster (R3) and SIGKILLs a node; `reverts` reverts a share of the
intents, killed once at `mid_revert`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import attrs
import nats
import orjson

from exoarmur.actors.execution import read_ledger
from exoarmur.actors.intents.faults import POINTS
from exoarmur.actors.nats.process import ClusterOptions, ServerOptions, ServerProcess
from exoarmur.benchmarks.measure import expect
from exoarmur.benchmarks.sweep_runner import (
    STARTUP,
    TERMINAL,
    Runner,
    fail_closed,
    free_ports,
    replay_verified,
    retryable,
    shared_config,
)

__all__ = ["Sweep", "run_sweep", "sweep"]


@attrs.define
class Sweep:
    runner: Runner
    count: int = 200
    tenants: int = 4
    kills: int = 3
    copies: int = 1  # each submission sent this many times
    seed: int = 0
    nats_kills: int = 0  # SIGKILLs of the embedded nats-server, at random moments
    others: list[Runner] = attrs.Factory(list)  # more processes on the same NATS, never killed
    # The others start once this many submissions are acknowledged (0: at once);
    # by then the runner owns every tenant, so its intents are the ones to take over.
    others_after: int = 0
    faults: bool = True  # kill at each fault point too
    ledger: Path | None = None  # shared by every process (default: the runner's state dir)
    server_dir: Path | None = None  # a nats-server of its own for every process (else: embedded)
    nodes: int = 1  # with server_dir: a cluster of this many nodes (explicit routes)
    node_kills: int = 0  # SIGKILLs of one cluster node (never the last one standing), at random moments
    restart: bool = True  # False: the runner, once killed, stays dead (the others take over)
    first_faults: str = ""  # EXOARMUR_FAULTS of the runner's first start
    reverts: int = 0  # then revert this many SUCCEEDED intents, killed once at mid_revert
    kind: str = "ledger"  # the intents' execution type (a ledger: the effects are counted from its file)
    stop_with: str = "kill"  # how the runner is stopped at each kill moment (Runner.signalled)
    ttl: float = 0.0  # submitted with this ttl: each is reverted that long after it succeeds
    switch_at: int | None = None  # set the global kill switch before this submission
    switched: float = 0.0  # CLOCK_MONOTONIC when the set was answered
    after_switch: set[tuple[str, str]] = attrs.Factory(set)  # submitted after that
    owners: dict[tuple[str, str], str] = attrs.Factory(dict)
    reverted: set[tuple[str, str]] = attrs.Factory(set)
    servers: list[ServerProcess] = attrs.Factory(list)
    replay: dict = attrs.Factory(dict)
    nodes_killed: int = 0
    acked: dict[tuple[str, str], str] = attrs.Factory(dict)
    states: dict[tuple[str, str], str] = attrs.Factory(dict)
    # KILLED because the kill switches could not be read (NATS down at its gate): fail closed
    fail_closed: set[tuple[str, str]] = attrs.Factory(set)

    def ids(self) -> list[tuple[str, str]]:
        return [(f"t{n % self.tenants}", f"i-{n}") for n in range(self.count)]

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if self.server_dir is not None:
                self.servers = await self._servers(stack)
                for runner in [self.runner, *self.others]:
                    for server in self.servers:
                        runner.args = (*runner.args, "--nats-url", server.url)
                    runner.env["EXOARMUR_NATS_TOKEN"] = self.servers[0].token or ""
            await self._sweep()

    async def _servers(self, stack: contextlib.AsyncExitStack) -> list[ServerProcess]:
        """One nats-server, or a cluster of `nodes` with one token (sync always)."""
        expect(self.server_dir is not None, "a cluster sweep without server_dir")
        routes = free_ports(self.nodes) if self.nodes > 1 else []
        token = secrets.token_urlsafe(16)
        servers = []
        for i in range(self.nodes):
            cluster = ClusterOptions(name="sweep", port=routes[i], routes=tuple(routes)) if routes else None
            options = ServerOptions(data_dir=self.server_dir / f"n{i}", name=f"n{i}", cluster=cluster, token=token)
            server = ServerProcess(options)
            await server.start(deadline=anyio.current_time() + STARTUP)
            stack.push_async_callback(functools.partial(server.stop, timeout=10.0))
            servers.append(server)
        return servers

    async def _sweep(self) -> None:
        rng = random.Random(self.seed)
        self.runner.start(faults=self.first_faults)
        if not self.others_after:
            for other in self.others:
                other.start()
        work = self.ids()
        # Kill moments: random points in the submission, then each fault point once.
        kill_at = sorted(rng.sample(range(1, len(work)), min(self.kills, len(work) - 1)))
        nats_at = set(rng.sample(range(1, len(work)), min(self.nats_kills, len(work) - 1)))
        node_at = set(rng.sample(range(1, len(work)), min(self.node_kills, len(work) - 1)))
        faults = sorted(POINTS - {"mid_revert"}) if self.faults else []
        client = await self._client()
        try:
            for n, (tenant, intent_id) in enumerate(work):
                if self.others_after and n == self.others_after:
                    for other in self.others:
                        other.start()
                if n in nats_at:
                    self.runner.kill_nats()
                if n in node_at:
                    victim = rng.choice([s for s in self.servers if s.running])
                    victim.kill()
                    self.nodes_killed += 1
                if kill_at and n == kill_at[0]:
                    kill_at.pop(0)
                    await asyncio.sleep(rng.uniform(0, 0.05))  # land inside some intent's steps
                    self.runner.signalled(self.stop_with)
                    if self.restart:
                        self.runner.start(faults=f"{faults.pop()}@{rng.randint(1, 5)}" if faults else "")
                if self.restart and self.runner.died_by_itself():
                    self.runner.kills += 1
                    self.runner.start(faults=f"{faults.pop()}@{rng.randint(1, 5)}" if faults else "")
                if n == self.switch_at:
                    await self._switch(client)
                if self.switched:
                    self.after_switch.add((tenant, intent_id))
                for _ in range(self.copies):
                    await self._submit(client, tenant, intent_id)
            while faults:  # every fault point is hit at least once
                self.runner.kill()
                before = self.runner.kills
                self.runner.start(faults=f"{faults.pop()}@1")
                for extra in range(3):
                    await self._submit(client, "t0", f"x-{len(faults)}-{extra}")
                # Dead at the point: seen (and restarted) by a submit, or now.
                await self._until(lambda: self.runner.kills > before or self.runner.died_by_itself(), timeout=30)
                if self.runner.died_by_itself():
                    self.runner.kills += 1
                    self.runner.start()
            await self._settled(client)
            if self.ttl:
                await self._ttl_reverted(client)
            if self.reverts:
                await self._revert_some(client, rng)
            await self._index_emptied(client)
            self.replay = replay_verified(next(r for r in [self.runner, *self.others] if r.popen.poll() is None))
        finally:
            await client.close()
        for runner in [self.runner, *self.others]:
            if runner.popen is not None and runner.popen.poll() is None:
                expect(runner.stop() == 0, str(runner.log.read_text()[-2000:] if runner.log else ""))

    async def _client(self) -> nats.NATS:
        info = self.runner.connection()
        async def quiet(error: Exception) -> None:  # reconnects while the process is down are expected
            pass

        return await nats.connect(
            servers=info["urls"],
            token=info.get("token"),
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            error_cb=quiet,
        )

    async def _submit(self, client: nats.NATS, tenant: str, intent_id: str) -> None:
        """Until acknowledged (the process may be dead or starting)."""
        body = orjson.dumps({"id": intent_id, "type": self.kind, "timeout": 600, **({"ttl": self.ttl} if self.ttl else {})})
        deadline = time.monotonic() + STARTUP
        while True:
            if self.restart and self.runner.died_by_itself():
                self.runner.kills += 1
                self.runner.start()
            try:
                reply = orjson.loads((await client.request(f"exoarmur.intents.{tenant}.submit", body, timeout=2)).data)
            except (nats.errors.Error, asyncio.TimeoutError, OSError):
                reply = None
            if reply is not None and reply["ok"]:
                self.acked[tenant, intent_id] = reply["code"]
                return
            expect(reply is None or retryable(reply["code"]), str(reply))
            expect(time.monotonic() < deadline, f"{tenant}/{intent_id} never acknowledged")
            await asyncio.sleep(0.05)

    async def _switch(self, client: nats.NATS) -> None:
        """Set the global kill switch; `switched` is when the set was answered."""
        body = orjson.dumps({"who": "sweep", "reason": "mid-run"})
        reply = orjson.loads((await client.request("exoarmur.killswitch.set", body, timeout=15)).data)
        expect(reply["ok"] and reply["switch"]["active"], str(reply))
        self.switched = time.monotonic()

    async def _get(self, client: nats.NATS, tenant: str, intent_id: str) -> dict | None:
        try:
            reply = await client.request(f"exoarmur.intents.{tenant}.get", orjson.dumps({"id": intent_id}), timeout=2)
        except (nats.errors.Error, asyncio.TimeoutError):
            return None
        data = orjson.loads(reply.data)
        expect(data["ok"], str((tenant, intent_id, data)))  # acknowledged: never lost
        return data["intent"]

    async def _settled(self, client: nats.NATS, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.acked)
        while pending:
            for key in sorted(pending):
                intent = await self._get(client, *key)
                if intent is not None and intent["state"] in TERMINAL:
                    pending.discard(key)
            expect(time.monotonic() < deadline, f"not terminal: {sorted(pending)[:10]} ({len(pending)})")
            if pending:
                await asyncio.sleep(0.2)
        for key in self.acked:
            intent = await self._get(client, *key)
            expect(intent is not None, f"{key} acknowledged, then not found")
            self.states[key], self.owners[key] = intent["state"], intent["owner"]
            if fail_closed(intent):
                self.fail_closed.add(key)

    async def _revert_some(self, client: nats.NATS, rng: random.Random) -> None:
        """Revert some SUCCEEDED intents with the process armed to die at
        mid_revert; restart it, and wait until each is REVERTED."""
        chosen = rng.sample(sorted(k for k, state in self.states.items() if state == "SUCCEEDED"), self.reverts)
        self.runner.kill()
        self.runner.start(faults=f"mid_revert@{rng.randint(1, max(1, len(chosen) // 2))}")
        for tenant, intent_id in chosen:
            while True:
                if self.runner.died_by_itself():
                    self.runner.kills += 1
                    self.runner.start()
                try:
                    msg = await client.request(
                        f"exoarmur.intents.{tenant}.revert", orjson.dumps({"id": intent_id}), timeout=2
                    )
                except (nats.errors.Error, asyncio.TimeoutError):
                    await asyncio.sleep(0.05)
                    continue
                reply = orjson.loads(msg.data)
                # Sent again after a lost reply: already REVERTING (or further).
                expect(reply["ok"] or reply["code"] == "INTENT_STATE_INVALID", str(reply))
                break
        await self._until(lambda: self.runner.kills > 0 and not self.runner.died_by_itself(), timeout=30)
        await self._settled(client)
        self.reverted = {key for key, state in self.states.items() if state == "REVERTED"}
        expect(self.reverted == set(chosen), str((sorted(self.reverted), sorted(chosen))))

    async def _ttl_reverted(self, client: nats.NATS, timeout: float = 180.0) -> None:
        """Every intent REVERTED by its ttl, the runner restarted whenever it
        died at its fault point (mid_revert) meanwhile."""
        deadline = time.monotonic() + timeout
        pending = set(self.acked)
        while pending:
            if self.runner.died_by_itself():
                self.runner.kills += 1
                self.runner.start()
            for key in sorted(pending):
                intent = await self._get(client, *key)
                if intent is not None and intent["state"] == "REVERTED":
                    pending.discard(key)
            expect(time.monotonic() < deadline, f"not reverted: {sorted(pending)[:10]} ({len(pending)})")
            if pending:
                await asyncio.sleep(0.2)
        self.reverted = set(self.acked)
        await self._settled(client)  # the states as they end

    async def _index_emptied(self, client: nats.NATS, timeout: float = 30.0) -> None:
        """Every intent settled: the index of unsettled intents empties (a
        stale entry of a dead owner included, once its lease lapsed)."""
        js = client.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            info = await js.stream_info("KV_exoarmur_intents_open", subjects_filter=">")
            live = []
            for subject in info.state.subjects or {}:
                last = await js.get_last_msg("KV_exoarmur_intents_open", subject)
                if (last.headers or {}).get("KV-Operation") not in ("DEL", "PURGE"):
                    live.append(subject)
            if not live:
                return
            expect(time.monotonic() < deadline, f"index entries left: {live[:10]}")
            await asyncio.sleep(0.2)

    async def _until(self, predicate, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            expect(time.monotonic() < deadline, "timed out")
            await asyncio.sleep(0.05)

    def check(self, *, strict: bool = True) -> dict[str, Any]:
        """Exactly one effect per SUCCEEDED intent, none for any other, and
        replay equivalent: the figures, with what was wrong as `problems`
        (`strict`: raised at the first instead)."""
        lines = read_ledger(self.ledger or self.runner.state_dir / "ledger.jsonl")
        applies = Counter((line["tenant"], line["intent"]) for line in lines if line["op"] == "apply")
        reverts = Counter((line["tenant"], line["intent"]) for line in lines if line["op"] == "revert")
        succeeded = {key for key, state in self.states.items() if state == "SUCCEEDED"} | self.reverted
        twice = {key: n for key, n in applies.items() if n > 1}
        never_submitted = set(applies) - set(self.acked)
        missing, stray = succeeded - set(applies), set(applies) - succeeded
        figures = {
            "intents": len(self.acked),
            "terminal": sum(state in TERMINAL for state in self.states.values()),
            "succeeded": len(succeeded),  # reverted ones included: applied once, then reverted once
            "other": len(self.acked) - len(succeeded),
            "applies": sum(applies.values()),
            "applied_twice": len(twice),
            "applied_not_succeeded": len(stray),
            "succeeded_not_applied": len(missing),
            "kills": self.runner.kills,
            "duplicates": sum(1 for code in self.acked.values() if code == "DUPLICATE_SUPPRESSED"),
            "reverted": len(self.reverted),
            "fail_closed": len(self.fail_closed),
            "audit_records": self.replay.get("summary", {}).get("intent_records", 0),
            "replay_ok": int(self.replay.get("ok") is True and self.replay.get("exit") == 0),
            "replay_attempts": self.replay.get("attempts", 0),
            "servers_left": sum(len(r.servers_left) for r in [self.runner, *self.others]),
            "servers_looked_for": sum(r.servers_looked_for for r in [self.runner, *self.others]),
        }
        problems = [
            *([f"applied, never submitted: {sorted(never_submitted)[:5]}"] if never_submitted else []),
            *([f"applied more than once: {sorted(twice.items())[:5]}"] if twice else []),
            *([f"reverts {dict(reverts)} for {sorted(self.reverted)}"]
              if set(reverts) != self.reverted or any(n != 1 for n in reverts.values()) else []),  # fmt: skip
            *([f"SUCCEEDED without an apply: {sorted(missing)[:5]}"] if missing else []),
            *([f"applied, not SUCCEEDED: {sorted(stray)[:5]}"] if stray else []),
            *([f"replay --verify: exit {self.replay.get('exit')}, {self.replay.get('problems', [])[:5]}"]
              if not figures["replay_ok"] else []),  # fmt: skip
        ]
        if strict:
            expect(not problems, "; ".join(problems))
        return {**figures, "problems": problems}


def sweep(state_dir: Path, **options: object) -> dict[str, Any]:
    backend = str(options.pop("backend", "asyncio"))
    return run_sweep(Sweep(Runner(state_dir, backend=backend), **options))  # type: ignore[arg-type]


def run_sweep(run: Sweep, *, strict: bool = True) -> dict[str, Any]:
    try:
        asyncio.run(run.run())
    finally:
        for runner in [run.runner, *run.others]:
            if runner.popen is not None and runner.popen.poll() is None:
                runner.popen.kill()
                runner.popen.wait()
    return run.check(strict=strict)


VARIANTS = ("base", "nats", "two", "cluster", "reverts")


def variant(name: str, root: Path, args: argparse.Namespace) -> Sweep:
    """The long form of one of the CI's sweeps (tests/chaos/test_intents_kill.py)."""
    common = {"count": args.count, "tenants": args.tenants, "copies": args.copies, "seed": args.seed}
    if name == "base":
        return Sweep(Runner(root / "state", backend=args.backend), kills=args.kills, **common)
    if name == "nats":
        runner = Runner(root / "state", backend=args.backend)
        return Sweep(runner, kills=args.kills, nats_kills=max(3, args.kills // 3), faults=False, **common)
    if name == "reverts":
        runner = Runner(root / "state", backend=args.backend)
        return Sweep(runner, kills=args.kills, reverts=max(10, args.count // 20), **common)
    shared = {"ledger": root / "ledger.jsonl", "server_dir": root / "nats", "faults": False}
    if name == "two":
        config = ("--config", str(shared_config(root)))
        victim = Runner(root / "a", backend=args.backend, args=config)
        survivor = Runner(root / "b", backend=args.backend, args=config)
        first = f"after_apply@{max(5, args.count // 10)}"
        return Sweep(
            victim, others=[survivor], others_after=args.tenants, kills=0, restart=False, first_faults=first,
            **shared, **common,
        )  # fmt: skip
    config = ("--config", str(shared_config(root, replicas=3, lease_ttl=18.0)))
    runner = Runner(root / "a", backend=args.backend, args=config)
    return Sweep(runner, kills=args.kills, nodes=3, node_kills=1, **shared, **common)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exoarmur.benchmarks.kill_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--variant", choices=VARIANTS, default="base")
    parser.add_argument("--dir", type=Path, default=None, help="where to keep the state (default: a temporary one)")
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="exoarmur-sweep-"))
    started = time.monotonic()
    run = variant(args.variant, root, args)
    figures = run_sweep(run)
    # Reverted ones included (applied once); with NATS killed, an intent at its
    # gate then ends KILLED, never applied (fail closed).
    expect(figures["succeeded"] + figures["fail_closed"] == figures["intents"], str(figures))
    figures.update(variant=args.variant, nats_kills=run.nats_kills, nodes_killed=run.nodes_killed)
    if run.others:  # the runner died at its fault point; the others took its intents over
        figures["runner_exit"] = run.runner.popen.returncode if run.runner.popen else None
        figures["owners"] = len(set(run.owners.values()))
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(orjson.dumps(figures).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
