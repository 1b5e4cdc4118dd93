"""`exoarmur killswitch ...`: the kill switches of a running system.

    exoarmur killswitch set    [--tenant T] [--reason TEXT] [--json]
    exoarmur killswitch clear  [--tenant T] [--reason TEXT] [--json]
    exoarmur killswitch status [--tenant T] [--json]

Without `--tenant`, the global switch (status: the global switch and every
tenant's ever written). While a switch is active, every intent it covers
that has not started applying ends KILLED with KILL_SWITCH_ACTIVE. `set`
returns once no apply can start anywhere any more (about a second after the
switch is stored). Who sets or clears is recorded as user@host, with the
reason, in KV and in the audit trail. The process is found as `exoarmur
intent` finds it (`--state-dir`, `--config`, `--nats-url`).

Output: a table for people; with `--json`, JSON on stdout and nothing else
(the switch, `{"active", "switches"}` for status, or `{"ok": false, "code",
"detail"}` on a failure). Exit codes: 0 success (status: no switch active);
1 a failure (unreachable, ...); 2 bad usage or input (CONTROL_INVALID); 4
status found a switch active.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

import anyio
import orjson

from exoarmur.actors.app.client import Target, connected, operator
from exoarmur.actors.app.intent_cli import add_target_options, failed, target_of
from exoarmur.actors.app.main import coded
from exoarmur.actors.controls import SUBJECT
from exoarmur.actors.intents.notes import MAX_REASON
from exoarmur.actors.intents.record import check_tenant
from exoarmur.runtime import InvalidInput, ReasonCode

__all__ = ["EXIT_ACTIVE", "add_killswitch_command"]

EXIT_OK, EXIT_ACTIVE = 0, 4
COLUMNS = ("scope", "active", "who", "reason", "revision")
REQUEST_SECONDS = 15.0  # a set is answered about a second after its write


def add_killswitch_command(commands: Any) -> None:
    parser = commands.add_parser(
        "killswitch",
        help="set, clear or show the kill switches",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        allow_abbrev=False,
    )
    ops = parser.add_subparsers(title="operations", metavar="OPERATION", required=True)
    for name, summary in (
        ("set", "stop every apply (of one tenant with --tenant) until cleared"),
        ("clear", "let applies start again"),
        ("status", "show the switches (exit 4 if one is active)"),
    ):
        op: argparse.ArgumentParser = ops.add_parser(name, help=summary, description=summary, allow_abbrev=False)
        op.add_argument("--tenant", default=None, help="the tenant's switch (default: the global one)")
        if name != "status":
            op.add_argument("--reason", default="", help=f"why (at most {MAX_REASON} characters)")
        op.add_argument("--json", action="store_true", help="JSON on stdout, nothing else")
        add_target_options(op)
        op.set_defaults(command=functools.partial(_run, name))


def _run(operation: str, args: argparse.Namespace, rest: list[str]) -> int:
    try:
        body: dict[str, Any] = {}
        if args.tenant is not None:
            body["tenant"] = _tenant(args.tenant)
        if operation != "status":
            if len(args.reason) > MAX_REASON:
                raise InvalidInput(ReasonCode.CONTROL_INVALID, f"--reason takes at most {MAX_REASON} characters")
            body.update(who=operator(), reason=args.reason)
        return anyio.run(_ask, operation, body, args, target_of(args))
    except Exception as exc:  # every failure is one coded line and an exit code
        return failed(args, coded(exc))


async def _ask(operation: str, body: dict[str, Any], args: argparse.Namespace, target: Target) -> int:
    async with connected(target) as client:
        reply = await client.request(f"{SUBJECT}.{operation}", body, timeout=REQUEST_SECONDS)
    if operation != "status":
        _show(args, reply["switch"], [reply["switch"]])
        return EXIT_OK
    _show(args, {"active": reply["active"], "switches": reply["switches"]}, reply["switches"])
    return EXIT_ACTIVE if reply["active"] else EXIT_OK


def _show(args: argparse.Namespace, shown: dict[str, Any], switches: list[dict[str, Any]]) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(shown).decode() + "\n")
        return
    rows = [
        [s["tenant"] or "global", "ACTIVE" if s["active"] else "clear", s["who"] or "-", s["reason"] or "-", str(s["revision"])]
        for s in switches
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    for row in [list(COLUMNS), *rows]:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def _tenant(value: str) -> str:
    try:
        return check_tenant(value)
    except InvalidInput as exc:
        raise InvalidInput(ReasonCode.CONTROL_INVALID, exc.detail) from None
