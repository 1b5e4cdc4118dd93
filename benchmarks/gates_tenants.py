"""Gate 6, tenant isolation: one tenant can neither touch nor starve another.

    starve   bench_tenants.py's run, with two `exoarmur run` processes on
             one nats-server: `flood` submits at 10 x its rate limit
             from a client process of its own while `steady` keeps to half
             of its own; steady's p99 (submit -> SUCCEEDED) with the flood
             against its p99 alone, in alternating phases of one run
    touch    two `exoarmur run` processes on one nats-server (a request
             reaches either): submissions to one tenant's subject whose body
             names another, and reads of one tenant's intents through
             another's subjects

Bound, set before the run (docs/rules.md, gate 6): steady's p99 with the
flood at most 2 x its p99 alone; steady never refused; the flood refused
with RATE_LIMITED (load codes only).
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import attrs
import orjson

from exoarmur.benchmarks.bench_tenants import FLOOD, FULL, QUICK, STEADY, Params, run_backend
from exoarmur.benchmarks.gates_report import Gate, describe
from exoarmur.benchmarks.intents_system import connected, running_exoarmur
from exoarmur.benchmarks.nats_baselines import running_server

__all__ = ["P99_BOUND", "gate_6"]

P99_BOUND = 2.0
LOAD_CODES = ("OVERLOAD_", "RATE_LIMITED")
PROBES = 20
PROCESSES = 2  # the tenants' work spread over this many processes (a request reaches any)


def gate_6(evidence: Path, root: Path, params: Params, *, backend: str) -> Gate:
    gate = Gate(6)
    gate.ran.append(f"{PROCESSES} `exoarmur run --backend {backend}` on one nats-server: tenant steady at "
                    f"{params.steady_rate:g}/s, tenant flood at {params.flood_rate:g}/s from another process, both "
                    f"limited to {params.rate:g}/s; {params.rounds} rounds of {params.phase_seconds:g} s phases, "
                    "steady alone and flooded")  # fmt: skip
    gate.ran.append(f"two `exoarmur run` on one nats-server: {PROBES} submissions to steady's subject naming tenant "
                    f"flood; {PROBES} reads of flood's intents through steady's get and list")  # fmt: skip
    try:
        out = anyio.run(functools.partial(run_backend, params, root / "g6-starve", backend, processes=PROCESSES),
                        backend="asyncio")  # fmt: skip
        touch = anyio.run(_touch, root / "g6-touch", backend, backend="asyncio")
    except (AssertionError, OSError, TimeoutError, RuntimeError) as exc:
        gate.error = describe(exc)
        return gate
    (evidence / "gate6-tenants.json").write_bytes(orjson.dumps({"starve": out, "touch": touch}, option=orjson.OPT_INDENT_2))
    gate.evidence.append("gate6-tenants.json")
    alone, flooded = out["alone"], out["flooded"]
    ratio = flooded["p99_us"] / alone["p99_us"] if alone["p99_us"] else float("inf")
    gate.figures = {"steady_p99_alone_ms": alone["p99_us"] / 1000, "steady_p99_flooded_ms": flooded["p99_us"] / 1000,
                    "ratio": round(ratio, 3), "flood_answers": flooded["flood_answers"], **touch}  # fmt: skip
    gate.check("steady's p99 with the flood", ratio <= P99_BOUND,
               f"{flooded['p99_us'] / 1000:,.1f} ms vs {alone['p99_us'] / 1000:,.1f} ms alone = {ratio:.2f}x",
               f"<= {P99_BOUND:g}x")  # fmt: skip
    failed = dict(Counter(alone["steady_failed"]) + Counter(flooded["steady_failed"]))
    succeeded = alone["steady_succeeded"] + flooded["steady_succeeded"]
    gate.check("steady never refused", not failed and succeeded > 0, f"{succeeded:,} SUCCEEDED, other answers {failed}",
               "every submission SUCCEEDED")  # fmt: skip
    answers = flooded["flood_answers"]
    other = {code: n for code, n in answers.items() if code != "accepted" and not code.startswith(LOAD_CODES)}
    gate.check("the flood is limited", answers.get("RATE_LIMITED", 0) > 0 and not other,
               f"answers {answers}", "RATE_LIMITED > 0, no other refusal")  # fmt: skip
    gate.check("a body naming another tenant is refused", touch["mismatch_refused"] == PROBES and touch["made"] == 0,
               f"{touch['mismatch_refused']} of {PROBES} TENANT_MISMATCH, {touch['made']} made",
               f"{PROBES} of {PROBES}, 0 made")  # fmt: skip
    gate.check("another tenant's intents cannot be read", touch["read_across"] == 0 and touch["flood_made"] == PROBES,
               f"{touch['read_across']} of {PROBES} found through steady (get or list)", "0")  # fmt: skip
    return gate


async def _touch(root: Path, backend: str) -> dict[str, Any]:
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    async with (
        running_server(root / "nats", sync_always=False) as server,
        running_exoarmur(root / "a", backend=backend, server=server),
        running_exoarmur(root / "b", backend=backend, server=server),
        connected(server, "gates-tenants-touch") as nc,
    ):

        async def ask(tenant: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
            msg = await nc.request(f"exoarmur.intents.{tenant}.{op}", orjson.dumps(body), timeout=15)
            return orjson.loads(msg.data)

        refused = made = flood_made = read_across = 0
        for n in range(PROBES):
            answer = await ask(STEADY, "submit", {"id": f"mix-{n}", "type": "noop", "tenant": FLOOD})
            refused += answer.get("code") == "TENANT_MISMATCH"
            for tenant in (STEADY, FLOOD):
                made += (await ask(tenant, "get", {"id": f"mix-{n}"})).get("ok") is True
            flood_made += (await ask(FLOOD, "submit", {"id": f"own-{n}", "type": "noop"})).get("ok") is True
            read_across += (await ask(STEADY, "get", {"id": f"own-{n}"})).get("ok") is True
        listed = await ask(STEADY, "list", {})
        read_across += sum(i.get("id", "").startswith("own-") for i in listed.get("intents", []))
        return {"mismatch_refused": refused, "made": made, "flood_made": flood_made, "read_across": read_across}


def params_for(*, quick: bool) -> Params:
    """bench_tenants' quick form, or its full one with two rounds of 15 s."""
    return QUICK if quick else attrs.evolve(FULL, phase_seconds=15.0, rounds=2)
