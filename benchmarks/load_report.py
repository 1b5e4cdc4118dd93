"""How a load run shows itself: a progress bar while it runs, then a banner
with every parameter and the environment, a table per scenario, the rows
per interval, and a PNG plot of throughput, latency and memory over time.

The bar and every line meant for a person go to stderr when stdout carries
JSON (`--json -`); the plot is drawn headless (matplotlib's Agg backend).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import matplotlib
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from exoarmur.benchmarks.load_record import Recorder

__all__ = ["banner", "interval_table", "plot", "progress", "scenario_table"]

REFRESH_SECONDS = 0.5


@contextmanager
def progress(recorder: Recorder, *, title: str, seconds: float, stream: TextIO) -> Iterator[Any]:
    """A bar over the phase's `seconds`, with what was submitted, completed
    and rejected so far; `update()` on the yielded object moves it."""
    console = Console(file=stream)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("submitted {task.fields[submitted]:,}  completed {task.fields[done]:,}  "
                   "rejected {task.fields[rejected]:,}  in flight {task.fields[in_flight]:,}"),
    )  # fmt: skip
    with Progress(*columns, console=console, refresh_per_second=1 / REFRESH_SECONDS, transient=False) as bar:
        task = bar.add_task(title, total=seconds, submitted=0, done=0, rejected=0, in_flight=0)

        class Moving:
            def update(self) -> None:
                bar.update(
                    task,
                    completed=min(recorder.elapsed(), seconds),
                    submitted=recorder.submitted_total,
                    done=recorder.completed_total,
                    rejected=recorder.rejected_total,
                    in_flight=recorder.in_flight,
                )

        yield Moving()


def banner(parameters: dict[str, Any], environment: dict[str, Any]) -> str:
    width = max(len(name) for name in (*parameters, *environment))
    lines = ["exoarmur bench load", "=" * 19, "parameters:"]
    lines += [f"  {name.ljust(width)}  {value}" for name, value in parameters.items()]
    lines.append("environment:")
    lines += [f"  {name.ljust(width)}  {value}" for name, value in environment.items()]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def scenario_table(name: str, result: dict[str, Any]) -> str:
    """The scenario's figures, its targets and its checks, one per line."""
    f = result["figures"]
    lines = [f"scenario {name}: {result['description']}", ""]
    cells = [
        ("sources (nodes + peers)", f"{f['nodes']:,} + {f['peers']:,}, {f['tenants']} tenants"),
        ("offered rate", f"{f['offered_per_s']:,.1f} /s for {f['seconds']:.0f} s"),
        ("submitted", f"{f['submitted']:,} (nodes {f['submitted_by'].get('node', 0):,}, peers {f['submitted_by'].get('peer', 0):,})"),
        ("accepted", f"{f['accepted']:,}"),
        ("rejected", ", ".join(f"{code} {n:,}" for code, n in sorted(f["rejected_by"].items())) or "0"),
        ("completed", ", ".join(f"{state} {n:,}" for state, n in sorted(f["completed_by"].items())) or "0"),
        ("throughput (completed)", f"{f['throughput_per_s']:,.1f} /s"),
        ("submit -> terminal", "  ".join(f"{q} {_ms(f['latency'][q + '_ms'])}" for q in ("p50", "p95", "p99", "max"))),
        ("RSS of the process", f"{_mb(f['rss_mb_first'])} -> {_mb(f['rss_mb_last'])} (max {_mb(f['rss_mb_max'])})"),
        ("mailbox depth", f"max {f['depth_max']} ({f['depth_max_type'] or '-'})"),
        ("resubmitted / client backlog", f"{f['resubmitted']:,} / {sum(f['client_refused_by'].values()):,}"),
        ("duplicates answered", f"{f['duplicates']:,}"),
        ("CPU, % of a core", "  ".join(f"{name} {_pct(f.get(f'cpu_{name}_pct'))}" for name in ("exoarmur", "nats", "load"))),
    ]  # fmt: skip
    if f.get("peer_client_errors"):
        cells.append(("peers' client errors", ", ".join(f"{k} {n:,}" for k, n in sorted(f["peer_client_errors"].items()))))
    width = max(len(label) for label, _ in cells)
    lines += [f"  {label.ljust(width)}  {value}" for label, value in cells]
    lines.append("")
    for item in result["targets"] + result["checks"]:
        verdict = "PASS" if item["passed"] else "FAIL"
        measured = item["measured"] if "measured" in item else _figures(item)
        lines.append(f"  {verdict}  {item['name']}: {measured}")
        lines += [f"        {problem}" for problem in item.get("problems", [])]
    return "\n".join(lines)


def _figures(check: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in check["figures"].items() if not isinstance(v, dict))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} MB"


INTERVAL_COLUMNS = (
    ("t_s", "t (s)", "{:.1f}"),
    ("submitted", "submitted", "{:,}"),
    ("accepted", "accepted", "{:,}"),
    ("rejected", "rejected", "{:,}"),
    ("completed", "completed", "{:,}"),
    ("throughput_per_s", "/s", "{:,.0f}"),
    ("in_flight", "in flight", "{:,}"),
    ("p50_ms", "p50 ms", "{:,.0f}"),
    ("p99_ms", "p99 ms", "{:,.0f}"),
    ("rss_mb", "RSS MB", "{:,.1f}"),
    ("depth_total", "depth", "{:,.0f}"),
)


def interval_table(rows: list[dict[str, Any]]) -> str:
    header = [title for _, title, _ in INTERVAL_COLUMNS]
    body = [[("-" if row.get(key) is None else form.format(row[key])) for key, _, form in INTERVAL_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in [header, *body])


def plot(path: Path, scenarios: dict[str, list[dict[str, Any]]], *, title: str) -> Path:
    """Throughput, p50/p99 latency and RSS over time, a line per scenario."""
    matplotlib.use("Agg")  # headless: no display is assumed
    from matplotlib import pyplot

    figure, (through, latency, memory) = pyplot.subplots(3, 1, figsize=(10, 9), sharex=True)
    for index, (name, rows) in enumerate(scenarios.items()):
        t, color = [row["t_s"] for row in rows], f"C{index}"  # one colour per scenario; dashed: offered, p50
        through.plot(t, [row["throughput_per_s"] for row in rows], color=color, label=f"{name}: completed/s")
        submitted = [row["submitted"] / _seconds(rows, i) for i, row in enumerate(rows)]
        through.plot(t, submitted, "--", color=color, label=f"{name}: submitted/s")
        latency.plot(t, [row["p99_ms"] for row in rows], color=color, label=f"{name}: p99")
        latency.plot(t, [row["p50_ms"] for row in rows], "--", color=color, label=f"{name}: p50")
        memory.plot(t, [row["rss_mb"] for row in rows], color=color, label=f"{name}: exoarmur run")
    through.set_ylabel("intents / s")
    latency.set_ylabel("submit -> terminal (ms)")
    memory.set_ylabel("RSS (MB)")
    memory.set_xlabel("seconds into the scenario")
    for axes in (through, latency, memory):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def _seconds(rows: list[dict[str, Any]], i: int) -> float:
    return max(rows[i]["t_s"] - (rows[i - 1]["t_s"] if i else 0.0), 1e-9)
