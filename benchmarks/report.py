"""What every benchmark script shares: its options, the table, where the results
go, and the verdict.

Where results go: `./benchmark-results/` in the current directory (`--out DIR`
to choose): `<name>-<UTC>.json` for every run (`--json PATH` to name that file
instead), and `latest_<name>.json` for a full run. Nothing is written next to
the scripts: installed, that is site-packages.

The figures a checkout publishes are `docs/benchmark-results/latest_<name>.json`,
the last full runs: a run never touches them. To refresh one, run it in full and
copy `benchmark-results/latest_<name>.json` there.

The verdict: every row with a target passes, or the run exits 1 naming, on
stderr, each row that missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import textwrap
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs
import psutil

from exoarmur.benchmarks import PUBLISHED_DIR, RESULTS_DIR
from exoarmur.benchmarks.measure import BACKENDS, perf_ns

__all__ = [
    "KIB",
    "Row",
    "close_report",
    "machine_info",
    "markdown_table",
    "missed",
    "plain_table",
    "script_parser",
    "verdict",
    "write_report",
]

KIB = 1024
EXIT_MISSED = 1  # the run completed and some target was missed


@attrs.frozen
class Row:
    """One line of a table: exoarmur against one baseline. `ratio` is always
    exoarmur / baseline; whether that should be high or low is `higher_is_better`."""

    benchmark: str
    unit: str  # "/s", "us", "bytes" or "x" (a ratio)
    exoarmur: float
    baseline: str
    baseline_value: float | None
    higher_is_better: bool
    target: str = "-"
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.exoarmur / self.baseline_value

    def cells(self) -> list[str]:
        ratio = self.ratio
        if ratio is None:
            ratio_text = "-"
        elif self.higher_is_better:
            ratio_text = f"{ratio:.2f}x as fast"
        else:
            ratio_text = f"{ratio:.2f}x of base"
        verdict = "-" if self.passed is None else ("PASS" if self.passed else "FAIL")
        return [
            self.benchmark,
            format_value(self.exoarmur, self.unit),
            self.baseline,
            "-" if self.baseline_value is None else format_value(self.baseline_value, self.unit),
            ratio_text,
            self.target,
            verdict,
        ]

    def as_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "ratio": self.ratio, "ratio_text": self.cells()[4]}


HEADER = ["benchmark", "exoarmur", "baseline", "baseline value", "ratio", "target", "pass/fail"]


def format_value(value: float, unit: str) -> str:
    if unit == "us":
        return f"{value:,.1f}"
    if unit == "bytes":
        return f"{value:,.0f} B = {value / KIB:.2f} KiB"
    if unit == "x":  # a ratio measured as such (e.g. the median of paired rounds)
        return f"{value:.3f}x"
    return f"{value:,.0f}"


def plain_table(rows: list[Row]) -> str:
    lines = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]

    def render(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in (0, 2, 5) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(HEADER), rule, *(render(cells) for cells in lines[1:])])


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---", "--:", "---", "--:", "--:", "---", "---"]) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def machine_info(quick: bool) -> dict[str, Any]:
    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_total": psutil.virtual_memory().total,
        # Other processes' load skews wall-clock figures; ratios less so.
        "load_average_at_start": os.getloadavg(),
        "versions": {name: package(name) for name in ("anyio", "trio", "pykka", "psutil", "attrs")},
    }


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished subprocesses."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def script_parser(name: str, *, description: str, prog: str | None) -> argparse.ArgumentParser:
    """The parser of bench_<name>, with the options every script takes:
    --quick, --backend, --out and --json. `prog`: how the caller ran it."""
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m exoarmur.benchmarks.bench_{name}",
        description=description,
        formatter_class=HelpFormatter,
        epilog=f"exit status: 0 when every target passes, 1 when one is missed (each named on stderr)\n\n"
        f"The figures a checkout publishes, {PUBLISHED_DIR}/latest_{name}.json,\n"
        f"are the last full run's; a run never writes them. To refresh them, run in full\n"
        f"at the checkout's root, then:\n"
        f"    cp {RESULTS_DIR}/latest_{name}.json {PUBLISHED_DIR}/",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (well under a minute)")
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=Path(RESULTS_DIR),
        help=f"write the results in DIR (default: ./{RESULTS_DIR}/ in the current directory): "
        f"{name}-<UTC>.json, and latest_{name}.json for a full run",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help=f"write this run's JSON to PATH instead of DIR/{name}-<UTC>.json"
    )
    return parser


def system_backends(args: argparse.Namespace) -> tuple[str, ...]:
    """The backends a script that runs `exoarmur run` measures: --backend's,
    both for a full run, asyncio alone for a quick one (each is a process)."""
    if args.backend != "both":
        return (args.backend,)
    return ("asyncio",) if args.quick else BACKENDS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The epilog's lines as written; an option's help wrapped at spaces only,
    so a path such as ./benchmark-results/ is never cut at its hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def close_report(
    report: dict[str, Any],
    tables: list[tuple[str, list[Row]]],
    *,
    started: int,
    name: str,
    args: argparse.Namespace,
    title: str,
    notes: list[str],
) -> int:
    """Record the verdict, time and load in `report`; print each backend's table
    (plain text), the `notes`, then the tables again as markdown (for the docs);
    write the JSON (`write_report`). The exit status: 0, or EXIT_MISSED after
    naming on stderr every row whose target was missed."""
    failing = missed(tables)
    report["all_targets_pass"] = not failing
    report["elapsed_s"] = (perf_ns() - started) / 1e9
    report["cpu_s"] = cpu_seconds()
    report["machine"]["load_average_at_end"] = os.getloadavg()
    mode = "quick" if args.quick else "full"
    for backend, rows in tables:
        print(f"\nexoarmur {name} on {backend} ({mode} run): {title}\n")
        print(plain_table(rows))
    print()
    print("\n".join(notes))
    print()
    for backend, rows in tables:
        print(f"#### {backend} ({mode} run): {title}\n")
        print(markdown_table(rows))
        print()
    write_report(report, name=name, out=args.out, destination=args.json, latest=not args.quick)
    return verdict(name, failing)


def verdict(name: str, failing: list[str], *, what: str = "target(s) missed") -> int:
    """0, or EXIT_MISSED after naming on stderr each line of `failing`."""
    if not failing:
        return 0
    print(f"bench {name}: {len(failing)} {what}:", file=sys.stderr)
    for line in failing:
        print(f"  {line}", file=sys.stderr)
    return EXIT_MISSED


def missed(tables: list[tuple[str, list[Row]]]) -> list[str]:
    """One line per row whose target was missed: backend, figure, what it came
    to (its ratio to the baseline, or its own value), and the target."""
    lines = []
    for backend, rows in tables:
        for row in rows:
            if row.passed is False:
                cells = row.cells()
                got = cells[1] if row.ratio is None else f"{cells[4]} vs {row.baseline}"
                lines.append(f"{backend}: {row.benchmark}: {got}, target {row.target}")
    return lines


def write_report(report: dict[str, Any], *, name: str, out: Path, destination: Path | None, latest: bool) -> None:
    """Write the JSON report (`destination`, else `out`/<name>-<UTC>.json) and,
    with `latest`, `out`/latest_<name>.json too, then print the closing line:
    where it went, time, load, and the verdict."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    destination = destination if destination is not None else out / f"{name}-{stamp}.json"
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    written = [destination]
    if latest:
        written.append(out / f"latest_{name}.json")
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    load = report["machine"]["load_average_at_start"][0], report["machine"]["load_average_at_end"][0]
    print(
        f"wrote {' and '.join(map(str, written))}\n"
        f"{report['elapsed_s']:.0f} s wall, {report['cpu_s']:.0f} s CPU (this process and its "
        f"subprocesses), {os.cpu_count()} CPUs, 1-min load average {load[0]:.1f} at start, "
        f"{load[1]:.1f} at end; targets {'all pass' if report['all_targets_pass'] else 'NOT all pass'}"
    )
