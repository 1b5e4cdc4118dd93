"""The `exoarmur` command (also `python -m exoarmur`).

    exoarmur run [--config PATH] [--backend asyncio|trio] [--nats-url URL ...]
    exoarmur config [--config PATH] [--format toml|json]
    exoarmur bench kernel [ARGS...]      # ARGS go to benchmarks/bench_kernel.py
    exoarmur bench supervision [ARGS...] # ARGS go to benchmarks/bench_supervision.py

Exit codes: 0 success; 1 a failure at run time; 2 bad usage or CONFIG_INVALID
(and a missing benchmark); what `bench kernel` returns, for it.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable
from types import MappingProxyType

import anyio
import attrs

from exoarmur.actors.app.config import config_to_json, config_to_toml, load_config
from exoarmur.runtime.errors import ExoarmurError
from exoarmur.actors.app.main import EXIT_CONFIG, report, run, say
from exoarmur.actors.app.nats_config import parse_nats

BENCH_MODULES = MappingProxyType(
    {
        "kernel": "exoarmur.benchmarks.bench_kernel",
        "supervision": "exoarmur.benchmarks.bench_supervision",
        "nats": "exoarmur.benchmarks.bench_nats",
    }
)


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

    bench_parser = commands.add_parser(
        "bench", help="run a benchmark", description="Run a benchmark script.", allow_abbrev=False
    )
    benches = bench_parser.add_subparsers(title="benchmarks", metavar="BENCHMARK", required=True)
    helps = {
        "kernel": "tell/ask throughput and latency of the kernel",
        "supervision": "restart latency, and throughput of 1,000 supervised children at 0%% and 1%% crashes",
        "nats": "publish, request, KV and audit through the NATS actors, next to raw nats-py",
    }
    for name, module in BENCH_MODULES.items():
        bench = benches.add_parser(
            name,
            help=helps[name],
            description=f"Run {module.replace('.', '/')}.py. Every other argument is passed to it; "
            f"`exoarmur bench {name} -- --help` shows its own options.",
            allow_abbrev=False,
        )
        bench.set_defaults(command=functools.partial(_bench, name=name), passes_rest=True)
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


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        config = load_config(args.config)
        if args.nats_url:
            checked = parse_nats({"urls": args.nats_url}, source="--nats-url", base_dir=None)
            config = attrs.evolve(config, nats=config.nats.with_urls(checked.urls))
    except ExoarmurError as exc:
        return report(exc)
    return anyio.run(functools.partial(run, config), backend=args.backend)


def _config(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        config = load_config(args.config)
    except ExoarmurError as exc:
        return report(exc)
    text = config_to_json(config) + "\n" if args.format == "json" else config_to_toml(config)
    sys.stdout.write(text)
    return 0


def _bench(args: argparse.Namespace, rest: list[str], *, name: str) -> int:
    module_name = BENCH_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            path = module_name.replace(".", "/") + ".py"
            say(f"bench {name}: {path} not found (run from the repository root, or install it)")
        else:
            say(f"bench {name}: cannot import {module_name}: {exc}")
        return EXIT_CONFIG
    bench_main = getattr(module, "main", None)
    if not callable(bench_main):
        say(f"bench {name}: {module_name} has no main(argv)")
        return EXIT_CONFIG
    if rest[:1] == ["--"]:
        rest = rest[1:]
    try:
        return _exit_code(bench_main(rest))
    except SystemExit as exc:  # the benchmark's own argparse
        return _exit_code(exc.code)
