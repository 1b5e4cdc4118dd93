"""`exoarmur replay --verify`: prove the intents' state from the audit trail.

    exoarmur replay [--verify] [--json] [--state-dir DIR | --config PATH | --nats-url URL ...]
                    [--timeout SECONDS]

Reads the whole audit stream, verifies every hash chain, rebuilds every
intent with a pure reducer and compares it with the intent records in KV
(actors/intents/replay.py). Reaches NATS as `exoarmur intent` does (the
state directory's connection file, or `--nats-url` with the environment's
credentials). Prints the verdict and a summary, then one line per problem
(a precise diff: which chain and position, which intent and revision, which
fields); with `--json`, the report as JSON on stdout alone.

Exit codes: 0 equivalent; 1 REPLAY_DIVERGED (the problems are listed) or a
failure on the way (its code on stderr); 2 bad usage or CONFIG_INVALID.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import orjson

from exoarmur.actors.app.client import CONNECTION, connected
from exoarmur.actors.app.intent_cli import add_target_options, failed, target_of
from exoarmur.actors.app.main import coded
from exoarmur.actors.app.tree import BUCKETS
from exoarmur.actors.intents.replay import ReplayReport, verify
from exoarmur.runtime import ReasonCode

__all__ = ["add_replay_command"]

EXIT_OK, EXIT_DIVERGED = 0, 1


def add_replay_command(commands: Any) -> None:
    parser = commands.add_parser(
        "replay",
        help="verify the audit trail and rebuild every intent from it, against KV",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        allow_abbrev=False,
    )
    parser.add_argument("--verify", action="store_true", help="compare with KV (what replay does; the default)")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout, nothing else")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="at most this long")
    add_target_options(parser)
    parser.set_defaults(command=_replay)


def _replay(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        report = anyio.run(_verified, args, target_of(args))
    except Exception as exc:  # every failure is one coded line and an exit code
        return failed(args, coded(exc))
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    else:
        sys.stdout.write("\n".join(report.lines()) + "\n")
    if report.ok:
        return EXIT_OK
    print(f"exoarmur: {ReasonCode.REPLAY_DIVERGED.value}: {len(report.problems)} problem(s)", file=sys.stderr)
    return EXIT_DIVERGED


async def _verified(args: argparse.Namespace, target: Any) -> ReplayReport:
    async with connected(target) as client:
        report = await verify(client.system, records_bucket=BUCKETS["records"], connection=CONNECTION, timeout=args.timeout)
        if not report.ok:  # one audit event for the failure the caller sees
            client.system.failure("replay", ReasonCode.REPLAY_DIVERGED, detail=f"{len(report.problems)} problem(s)")
        return report
