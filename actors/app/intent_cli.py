"""`exoarmur intent ...`: submit, get, list and revert intents of a running process.

    exoarmur intent submit --tenant T --type TYPE [--id ID] [--param KEY=VALUE ...]
                           [--timeout SECONDS] [--wait SECONDS] [--ttl SECONDS] [--json]
    exoarmur intent get    --tenant T ID [--wait SECONDS] [--json]
    exoarmur intent list   --tenant T [--state STATE] [--limit N] [--json]
    exoarmur intent revert --tenant T ID [--json]
    exoarmur intent approve|deny --tenant T ID [--reason TEXT] [--json]

Each finds the process through its state directory's connection file
(`--state-dir`, or `[state] dir` of `--config`; default ./.exoarmur) or
through `--nats-url URL` (repeatable) with the credentials of the
environment (EXOARMUR_NATS_TOKEN, ...). A `--param` value written exactly as
a JSON number (`3`, `-1.5`, `2e3`), `true` or `false` is one; anything else
(`007`, `1_000`, `" 5"`) is the string as given.
`submit` without `--id` makes one (printed); submitting an id again returns
the existing intent (code DUPLICATE_SUPPRESSED, exit 0): it never executes
twice. `--ttl SECONDS` (types with revert) reverts the intent that long
after it succeeds, exactly once, across restarts. `--wait SECONDS` (submit,
get) waits until the intent is terminal:
the service holds each reply until then (up to 300 s a request), no polling.
`approve` and `deny` decide an intent that waits in AWAITING_APPROVAL (its
type asks for approval): once, recorded with user@host and the reason. The
same decision again changes nothing (DUPLICATE_SUPPRESSED, exit 0); the
other one, or a decision on an intent that does not wait for one, is
INTENT_STATE_INVALID (exit 1). Their output is the intent with its
`approval` (decision, who, reason, at).

Output: a table for people; with `--json`, JSON on stdout and nothing else
(the intent, `{"intents": [...], "truncated": ...}` for list, or
`{"ok": false, "code", "detail"}` on a failure). A failure also prints
`exoarmur: CODE: detail` on stderr. Exit codes: 0 success; 1 a failure
(unreachable, not found, the wait ran out); 2 bad usage or input (INTENT_INVALID,
EXECUTION_TYPE_UNKNOWN, CONFIG_INVALID, TENANT_MISMATCH); 3 the intent ended
FAILED, DENIED, EXPIRED or KILLED (with --wait).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson

from exoarmur.actors.app.client import Target, connected, operator
from exoarmur.actors.app.config import load_config
from exoarmur.actors.app.main import coded
from exoarmur.actors.intents import IntentState
from exoarmur.actors.intents.notes import MAX_REASON
from exoarmur.actors.intents.record import check_params, check_tenant
from exoarmur.actors.intents.requests import MAX_WAIT
from exoarmur.runtime import ExoarmurError, InvalidInput, ReasonCode, TenantMismatch, error_for
from exoarmur.runtime.margins import WAIT_REPLY

__all__ = ["add_intent_commands", "add_target_options", "failed", "target_of"]

EXIT_OK, EXIT_FAILURE, EXIT_INPUT, EXIT_INTENT_FAILED = 0, 1, 2, 3
ENDED_BADLY = frozenset({"FAILED", "DENIED", "EXPIRED", "KILLED"})
SETTLED = ENDED_BADLY | {"SUCCEEDED", "REVERTED"}
COLUMNS = ("id", "type", "state", "code", "attempts", "revision")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def add_intent_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "intent",
        help="submit, get, list, revert, approve or deny intents of a running process",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        allow_abbrev=False,
    )
    ops = parser.add_subparsers(title="operations", metavar="OPERATION", required=True)

    submit = _operation(ops, "submit", "submit an intent (idempotent by --id)")
    submit.add_argument("--type", required=True, help="its execution type (e.g. noop, ledger)")
    submit.add_argument("--id", default=None, help="its id (default: a new random one); A-Z a-z 0-9 _ -")
    submit.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter (repeatable)")
    submit.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="its deadline, from now")
    submit.add_argument("--wait", type=float, default=None, metavar="SECONDS", help="wait this long for it to end")
    submit.add_argument("--ttl", type=float, default=None, metavar="SECONDS", help="revert it this long after it succeeds")
    submit.set_defaults(command=functools.partial(_run, _submit))

    get = _operation(ops, "get", "show one intent")
    get.add_argument("id")
    get.add_argument("--wait", type=float, default=None, metavar="SECONDS", help="wait this long for it to end")
    get.set_defaults(command=functools.partial(_run, _get))

    listing = _operation(ops, "list", "list a tenant's intents")
    listing.add_argument("--state", choices=[s.value for s in IntentState], default=None)
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1-1000, default 100)")
    listing.set_defaults(command=functools.partial(_run, _list))

    revert = _operation(ops, "revert", "revert a SUCCEEDED intent (types with revert)")
    revert.add_argument("id")
    revert.set_defaults(command=functools.partial(_run, _revert))

    for name, summary in (("approve", "approve an intent that waits for an approval"), ("deny", "deny it: it ends DENIED")):
        decide = _operation(ops, name, summary)
        decide.add_argument("id")
        decide.add_argument("--reason", default="", help=f"why (at most {MAX_REASON} characters)")
        decide.set_defaults(command=functools.partial(_run, functools.partial(_decide, name)))


def _operation(ops: Any, name: str, summary: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = ops.add_parser(name, help=summary, description=summary, allow_abbrev=False)
    parser.add_argument("--tenant", required=True, help="the tenant (A-Z a-z 0-9 _ -)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, nothing else")
    add_target_options(parser)
    return parser


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """How a command finds the running process (or its NATS)."""
    parser.add_argument("--state-dir", default=None, metavar="DIR", help="the running process's state directory")
    parser.add_argument("--config", default=None, metavar="PATH", help="take the state directory from this config")
    parser.add_argument("--nats-url", action="append", default=None, metavar="URL", help="reach NATS here instead")


def target_of(args: argparse.Namespace) -> Target:
    if args.state_dir is not None:
        state_dir = Path(args.state_dir)
    else:
        state_dir = load_config(args.config, environ=os.environ).state_dir
    return Target(state_dir=state_dir, urls=tuple(args.nats_url or ()))


def _run(operation: Any, args: argparse.Namespace, rest: list[str]) -> int:
    try:
        check_tenant(args.tenant)  # a bad one would only find no responder
        target = target_of(args)
        return anyio.run(operation, args, target)
    except Exception as exc:  # every failure is one coded line and an exit code
        return failed(args, coded(exc))


async def _submit(args: argparse.Namespace, target: Target) -> int:
    params = check_params(_params(args.param))  # refused here, before anything is sent
    body: dict[str, Any] = {"id": args.id or f"i-{secrets.token_hex(8)}", "type": args.type, "params": dict(params)}
    for option, value in (("--timeout", args.timeout), ("--wait", args.wait), ("--ttl", args.ttl)):
        _check_seconds(option, value)
    if args.timeout is not None:
        body["timeout"] = args.timeout
    if args.ttl is not None:
        body["ttl"] = args.ttl
    async with connected(target) as client:
        reply = await client.call(args.tenant, "submit", body)
        intent = reply["intent"]
        if args.wait is not None:
            intent = await _waited(client, args.tenant, intent, args.wait)
    return _shown(args, intent, note=reply["code"], detail=str(reply.get("detail", "")))


async def _waited(client: Any, tenant: str, intent: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The intent once it ends: gets that the service holds until then
    (`wait`, MAX_WAIT at most each), no polling."""
    deadline = anyio.current_time() + seconds
    while intent["state"] not in SETTLED:
        left = deadline - anyio.current_time()
        if left <= 0:
            raise error_for(
                ReasonCode.DEADLINE_EXCEEDED, f"intent {intent['id']} is still {intent['state']} after {seconds:g} s"
            )
        wait = min(left, MAX_WAIT)
        reply = await client.call(tenant, "get", {"id": intent["id"], "wait": wait}, timeout=wait + WAIT_REPLY)
        intent = reply["intent"]
    return intent


async def _get(args: argparse.Namespace, target: Target) -> int:
    _check_seconds("--wait", args.wait)
    async with connected(target) as client:
        intent = (await client.call(args.tenant, "get", {"id": args.id}))["intent"]
        if args.wait is not None:
            intent = await _waited(client, args.tenant, intent, args.wait)
    return _shown(args, intent)


def _check_seconds(option: str, value: float | None) -> None:
    """Refused here, before anything is sent."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InvalidInput(ReasonCode.INTENT_INVALID, f"{option} must be a finite number of seconds > 0, got {value}")


async def _revert(args: argparse.Namespace, target: Target) -> int:
    async with connected(target) as client:
        reply = await client.call(args.tenant, "revert", {"id": args.id})
    return _shown(args, reply["intent"])


async def _decide(operation: str, args: argparse.Namespace, target: Target) -> int:
    if len(args.reason) > MAX_REASON:
        raise InvalidInput(ReasonCode.INTENT_INVALID, f"--reason takes at most {MAX_REASON} characters")
    body = {"id": args.id, "who": operator(), "reason": args.reason}
    async with connected(target) as client:
        reply = await client.call(args.tenant, operation, body)
    intent = {**reply["intent"], "approval": reply["approval"]}
    return _shown(args, intent, note=reply["code"], detail=str(reply.get("detail", "")), again="decided again")


async def _list(args: argparse.Namespace, target: Target) -> int:
    body: dict[str, Any] = {"limit": args.limit}
    if args.state is not None:
        body["state"] = args.state
    async with connected(target) as client:
        reply = await client.call(args.tenant, "list", body)
    intents, truncated = reply["intents"], reply["truncated"]
    if args.json:
        _out(orjson.dumps({"intents": intents, "truncated": truncated}).decode())
        return EXIT_OK
    rows = [[str(i[c]) for c in COLUMNS] for i in intents]
    widths = [max([len(c), *(len(r[n]) for r in rows)]) for n, c in enumerate(COLUMNS)]
    for row in [list(COLUMNS), *rows]:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if truncated:
        print(f"exoarmur: more than {args.limit} intents; showing the first {args.limit} (--limit)", file=sys.stderr)
    return EXIT_OK


def _params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidInput(ReasonCode.INTENT_INVALID, f"--param {item!r}: expected KEY=VALUE")
        params[key] = _value(text)
    return params


def _value(text: str) -> Any:
    """A JSON number, `true` or `false` written exactly so is one; anything
    else ("007", " 5", "1_000", "nan") is the string as given."""
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.fullmatch(text):
        value = json.loads(text)  # Python's: a big integer stays one (and is refused as a param)
        if not isinstance(value, float) or math.isfinite(value):
            return value
    return text


def _shown(
    args: argparse.Namespace, intent: dict[str, Any], *, note: str = "", detail: str = "", again: str = "submitted again"
) -> int:
    if args.json:
        _out(orjson.dumps(intent).decode())
    else:
        for key in ("id", "tenant", "type", "state", "code", "detail", "attempts", "revision", "params", "approval"):
            if key in intent:
                _out(f"{key:9} {intent[key]}")
    if note:
        said = detail or f"intent {intent['id']} exists"
        print(f"exoarmur: {note}: {said}; it was not {again}", file=sys.stderr)
    if intent["state"] in ENDED_BADLY and getattr(args, "wait", None) is not None:
        print(f"exoarmur: {intent['code']}: intent {intent['id']} ended {intent['state']}", file=sys.stderr)
        return EXIT_INTENT_FAILED
    return EXIT_OK


def failed(args: argparse.Namespace, exc: ExoarmurError) -> int:
    """The failure on stderr (and as JSON on stdout with --json); its exit code."""
    if isinstance(exc.__cause__, BrokenPipeError):  # `exoarmur ... | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush there
        return EXIT_FAILURE
    if getattr(args, "json", False):
        _out(orjson.dumps({"ok": False, "code": exc.code.value, "detail": exc.detail}).decode())
    print(f"exoarmur: {exc.code.value}: {exc.detail}", file=sys.stderr)
    return EXIT_INPUT if isinstance(exc, InvalidInput | TenantMismatch) else EXIT_FAILURE


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
