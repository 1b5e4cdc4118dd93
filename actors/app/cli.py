"""The `exoarmur` command (also `python -m exoarmur`).

    exoarmur run [--config PATH] [--state-dir DIR] [--backend asyncio|trio] [--nats-url URL ...]
                 [--log-format json|text|auto]
    exoarmur config [--config PATH] [--format toml|json]
    exoarmur intent submit|get|list|revert --tenant T ...   (actors/app/intent_cli.py)
    exoarmur killswitch set|clear|status [--tenant T] ...    (actors/app/killswitch_cli.py)
    exoarmur replay [--verify] [--json]                      (actors/app/replay_cli.py)
    exoarmur status [--json] [--process OWNER] ...           (actors/app/status_cli.py)
    exoarmur version [--json]
    exoarmur bench NAME [ARGS...]        # kernel, supervision, nats: ARGS (--help
                                         # included) go to benchmarks/bench_NAME.py
    exoarmur gates [--quick] [--json] [--evidence DIR]   (benchmarks/gates.py)

`run` and `config` apply the environment's overrides (EXOARMUR_NATS_TOKEN, ...)
to the file's settings alike, so `config` shows what `run` would use (secrets
as "***").

Exit codes: 0 success; 1 a failure at run time; 2 bad usage or CONFIG_INVALID
(and a benchmark that cannot be imported, e.g. without the `bench` extra); for
`bench`, what the benchmark returns (1: a target missed); for `gates`, 1 when
a gate is FAIL.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import attrs

from exoarmur.actors.app.intent_cli import add_intent_commands
from exoarmur.actors.app.killswitch_cli import add_killswitch_command
from exoarmur.actors.app.replay_cli import add_replay_command
from exoarmur.actors.app.status_cli import add_status_commands
from exoarmur.actors.app.config import Config, config_to_json, config_to_toml, load_config, with_environment
from exoarmur.actors.app.logs import FORMATS, LogConfig, logging_to_stderr
from exoarmur.actors.app.main import EXIT_CONFIG, report, run, say
from exoarmur.actors.app.nats_config import parse_nats
from exoarmur.actors.app.tree import execution_of
from exoarmur.benchmarks import EXTRA, EXTRA_PACKAGES, INSTALL_EXTRA, RESULTS_DIR, SCRIPTS
from exoarmur.runtime import ExoarmurError

THREAD_SWITCH_SECONDS = 0.0005  # the GIL's switch interval in `exoarmur run` (see _run)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and not getattr(args, "passes_rest", False):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exc:  # argparse exits for --help and for usage errors
        return _exit_code(exc.code)
    command: Callable[[argparse.Namespace, list[str]], int] = args.command
    return command(args, rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exoarmur",
        description="Actor runtime with supervision trees, end-to-end deadlines and coded failures.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    run_parser = commands.add_parser(
        "run",
        help="run the actor tree until SIGINT or SIGTERM",
        description="Run the configured actor tree until SIGINT or SIGTERM, then stop "
        "gracefully. Exit 0 after a signal; 2 for CONFIG_INVALID; 1 for any other failure.",
        allow_abbrev=False,
    )
    _config_option(run_parser)
    run_parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop (default: asyncio)"
    )
    run_parser.add_argument(
        "--nats-url",
        metavar="URL",
        action="append",
        default=None,
        help="join this NATS server instead of starting the embedded one (repeat it for a cluster; "
        "replaces [nats] urls)",
    )
    run_parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=None,
        help="this process's state directory: its lock, owner id, connection file, embedded NATS data "
        "(replaces [state] dir; default ./.exoarmur)",
    )
    run_parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=None,
        help="logs on stderr: json, text, or auto (text on a terminal, else JSON lines; replaces [log] format)",
    )
    run_parser.set_defaults(command=_run)

    config_parser = commands.add_parser(
        "config",
        help="print the effective configuration",
        description="Print the effective configuration, defaults included.",
        allow_abbrev=False,
    )
    _config_option(config_parser)
    config_parser.add_argument(
        "--format", choices=("toml", "json"), default="toml", help="output format (default: toml)"
    )
    config_parser.set_defaults(command=_config)

    add_intent_commands(commands)
    add_killswitch_command(commands)
    add_status_commands(commands)
    add_replay_command(commands)

    bench_parser = commands.add_parser(
        "bench",
        help="run a benchmark",
        description=f"Run a benchmark script (it needs the {EXTRA} extra: {INSTALL_EXTRA}). Results go to "
        f"./{RESULTS_DIR}/ in the current directory, or --out DIR; `exoarmur bench NAME --help` lists "
        "the script's options.",
        allow_abbrev=False,
    )
    benches = bench_parser.add_subparsers(title="benchmarks", metavar="BENCHMARK", required=True)
    for name, (_, summary) in SCRIPTS.items():
        # No help option of its own: --help goes to the script, whose parser
        # lists its options (_bench adds where the results go).
        bench = benches.add_parser(name, help=summary.replace("%", "%%"), add_help=False, allow_abbrev=False)
        bench.set_defaults(command=functools.partial(_bench, name=name), passes_rest=True)

    gates = commands.add_parser(
        "gates",
        help="a reality run that computes gates 1-8 (PASS or FAIL each, with its evidence)",
        add_help=False,  # --help goes to the script, as for bench
        allow_abbrev=False,
    )
    gates.set_defaults(command=_gates, passes_rest=True)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="TOML config file (default: the built-in actors/app/default_config.toml)",
    )


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def effective_config(path: str | None) -> Config:
    """The file's config (None: the built-in one) with the environment's
    overrides applied: what `run` runs with and `config` shows."""
    return with_environment(load_config(path, environ=os.environ), os.environ)


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        config = effective_config(args.config)
        if args.nats_url:
            checked = parse_nats({"urls": args.nats_url}, source="--nats-url", base_dir=None)
            config = attrs.evolve(config, nats=config.nats.with_urls(checked.urls))
        if args.state_dir:
            config = attrs.evolve(config, state_dir=Path(args.state_dir))
        if args.log_format:
            config = attrs.evolve(config, log=attrs.evolve(config.log, format=args.log_format))
        config.nats.check_files(source=config.source)
    except ExoarmurError as exc:
        # No config to say how to log: --log-format, else EXOARMUR_LOG__FORMAT, else auto.
        chosen = args.log_format or os.environ.get("EXOARMUR_LOG__FORMAT", "auto")
        with logging_to_stderr(LogConfig(format=chosen if chosen in FORMATS else "auto")):
            return report(exc, log=True)
    # A worker thread (the ledger's write and fsync) takes the GIL back after
    # each system call; a busy event loop hands it over only when asked, after
    # the switch interval. At Python's 5 ms a batch's write took seconds under
    # load; at 0.5 ms, milliseconds. It costs nothing while no thread waits.
    sys.setswitchinterval(THREAD_SWITCH_SECONDS)
    return anyio.run(functools.partial(run, config), backend=args.backend)


def _config(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        config = effective_config(args.config)
        execution_of(config)  # the execution types load and fit the lease, as `run` checks
    except ExoarmurError as exc:
        return report(exc)
    text = config_to_json(config) + "\n" if args.format == "json" else config_to_toml(config)
    sys.stdout.write(text)
    return 0


def _bench(args: argparse.Namespace, rest: list[str], *, name: str) -> int:
    module_name = SCRIPTS[name][0]
    if "-h" in rest or "--help" in rest:
        print(
            f"exoarmur bench {name} runs {module_name} with the options below. Results go to "
            f"./{RESULTS_DIR}/ in the current directory ({os.getcwd()}), or to --out DIR.\n"
        )
    return _script(module_name, rest, label=f"bench {name}")


def _gates(args: argparse.Namespace, rest: list[str]) -> int:
    return _script("exoarmur.benchmarks.gates", rest, label="gates")


def _script(module_name: str, rest: list[str], *, label: str) -> int:
    """Run a script's main(argv, prog=...) as `exoarmur LABEL`: its exit code."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing in EXTRA_PACKAGES:
            say(f"{label} needs the {EXTRA} extra ({missing} is missing): {INSTALL_EXTRA}")
        else:
            say(f"{label}: cannot import {module_name}: {exc}")
        return EXIT_CONFIG
    script_main = getattr(module, "main", None)
    if not callable(script_main):
        say(f"{label}: {module_name} has no main(argv)")
        return EXIT_CONFIG
    if rest[:1] == ["--"]:
        rest = rest[1:]
    try:
        return _exit_code(script_main(rest, prog=f"exoarmur {label}"))
    except SystemExit as exc:  # the script's own argparse
        return _exit_code(exc.code)
