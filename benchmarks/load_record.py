"""What a load run saw, as it happens: every answer counted by code and
state, latencies, and a row per interval with the system's memory and
mailboxes beside them.

    Recorder   the client's side: submitted, accepted, rejected by code,
               completed by terminal state, submit -> terminal latency
               (from when each submission was due), in flight
    Sampler    the system's side, every interval: the process's RSS (by
               pid, when it runs on this machine), its mailboxes' depth
               (its /metrics, exoarmur_mailbox_depth per actor type), and
               the CPU of the process, the server and the load itself

Intervals are cut by `Recorder.cut`, each a row of the deltas since the
last, as `nats bench` and Temporal's load tools print them.
"""

from __future__ import annotations

import math
import urllib.request
from collections import Counter
from typing import Any

import anyio
import psutil
from prometheus_client.parser import text_string_to_metric_families

from exoarmur.actors.intents import TERMINAL
from exoarmur.benchmarks.measure import perf_ns

__all__ = ["Recorder", "Sampler", "per_actor", "percentiles", "scrape"]

MIB = 1024 * 1024
SCRAPE_SECONDS = 2.0


def percentiles(samples_ns: list[int]) -> dict[str, float | None]:
    """p50, p95, p99 and max in milliseconds (nearest rank); None without samples."""
    if not samples_ns:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples_ns)

    def rank(q: float) -> float:
        return ordered[max(1, math.ceil(q * len(ordered))) - 1] / 1e6

    return {"p50_ms": rank(0.50), "p95_ms": rank(0.95), "p99_ms": rank(0.99), "max_ms": ordered[-1] / 1e6}


class Recorder:
    """Counts as answers come; `cut()` closes an interval."""

    terminal = frozenset(state.value for state in TERMINAL)

    def __init__(self) -> None:
        self.started_ns = perf_ns()
        self.submitted_by: Counter[str] = Counter()  # source kind -> submissions
        self.rejected_by: Counter[str] = Counter()  # code -> submissions refused
        self.completed_by: Counter[str] = Counter()  # terminal state -> intents
        self.client_refused_by: Counter[str] = Counter()  # the load's own backlog, never the system's
        self.accepted_ids: dict[str, str] = {}  # intent id -> source
        self.unended_ids: dict[str, str] = {}  # intent id -> its last state seen
        self.sources_submitted: set[str] = set()
        self.samples_ns: list[int] = []
        self.resubmitted = 0
        self.duplicates = 0  # answers DUPLICATE_SUPPRESSED (resubmits, copies)
        self.created_twice = 0  # submissions two of whose copies were each answered "created"
        self.errored: Counter[str] = Counter()  # drives that raised (the load's own bugs), by exception
        self.ended_due_ns: list[int] = []  # when each completed intent was due (a chaos run's recovery)
        self.late_ns: list[int] = []  # how late each submission was sent, against when it was due
        self.in_flight = 0  # submissions being driven now (load_fleet.drive keeps it)
        self.rejection_details: dict[str, str] = {}  # code -> one detail, for the report
        self._interval_ns: list[int] = []
        self._last: dict[str, int] = self._totals()
        self._last_ns = self.started_ns
        self.rows: list[dict[str, Any]] = []

    # ---- answers ---------------------------------------------------------------------------

    def submitted(self, source: Any, *, late_ns: int = 0) -> None:
        self.submitted_by[source.kind] += 1
        self.late_ns.append(late_ns)
        self.sources_submitted.add(source.name)

    def accepted(self, source: Any, intent: str) -> None:
        self.accepted_ids[intent] = source.name

    def rejected(self, source: Any, code: str, answer: dict[str, Any]) -> None:
        self.rejected_by[code] += 1
        self.rejection_details.setdefault(code, str(answer.get("detail", ""))[:200])

    def ended(self, source: Any, intent: str, state: str, due_ns: int) -> None:
        latency = perf_ns() - due_ns
        self.completed_by[state] += 1
        self.ended_due_ns.append(due_ns)
        self.samples_ns.append(latency)
        self._interval_ns.append(latency)

    def unended(self, source: Any, intent: str, state: str) -> None:
        self.unended_ids[intent] = state

    def client_refused(self, source: Any, code: str) -> None:
        self.client_refused_by[code] += 1

    # ---- totals and intervals --------------------------------------------------------------

    @property
    def submitted_total(self) -> int:
        return sum(self.submitted_by.values())

    @property
    def completed_total(self) -> int:
        return sum(self.completed_by.values())

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected_by.values())

    def _totals(self) -> dict[str, int]:
        return {
            "submitted": self.submitted_total,
            "accepted": len(self.accepted_ids),
            "rejected": self.rejected_total,
            "completed": self.completed_total,
        }

    def elapsed(self) -> float:
        return (perf_ns() - self.started_ns) / 1e9

    def cut(self, system: dict[str, Any]) -> dict[str, Any]:
        """Close the interval since the last cut: its counts, throughput and
        latencies, and `system` (the sampler's figures); the row is kept."""
        now = perf_ns()
        totals = self._totals()
        seconds = max((now - self._last_ns) / 1e9, 1e-9)
        row: dict[str, Any] = {"t_s": round((now - self.started_ns) / 1e9, 3)}
        row.update({name: totals[name] - self._last[name] for name in totals})
        row["throughput_per_s"] = row["completed"] / seconds
        row["in_flight"] = self.in_flight
        row.update(percentiles(self._interval_ns))
        row.update(system)
        self.rows.append(row)
        self._last, self._last_ns, self._interval_ns = totals, now, []
        return row


class Sampler:
    """The system under load, seen from outside: RSS by pid (None if the
    process is elsewhere), mailbox depth from its /metrics (None without a
    metrics URL, or if a scrape fails; failures counted)."""

    def __init__(self, *, pid: int | None, metrics_url: str | None, server_pid: int | None = None) -> None:
        self.process = psutil.Process(pid) if pid is not None else None
        self.server = psutil.Process(server_pid) if server_pid is not None else None
        self.metrics_url = metrics_url
        self.scrape_failures = 0
        self.own = psutil.Process()
        self._cpu: dict[str, tuple[int, float]] = {}  # name -> (perf_ns, CPU seconds) at the last sample

    def follow(self, pid: int, metrics_url: str | None) -> None:
        """The process was started again: measure the new one."""
        self.process = psutil.Process(pid)
        self.metrics_url = metrics_url
        self._cpu.pop("exoarmur", None)

    def follow_server(self, pid: int | None) -> None:
        self.server = psutil.Process(pid) if pid is not None else None
        self._cpu.pop("nats", None)

    async def sample(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"rss_mb": None, "load_rss_mb": self.own.memory_info().rss / MIB}
        if self.process is not None:
            try:
                figures["rss_mb"] = self.process.memory_info().rss / MIB
            except psutil.Error:  # it died (a chaos run kills it): no figure this interval
                pass
        for name, process in (("exoarmur", self.process), ("nats", self.server), ("load", self.own)):
            figures[f"cpu_{name}_pct"] = self._cpu_percent(name, process)
        depths = await self._depths()
        figures["depth_total"] = None if depths is None else sum(depths.values())
        figures["depth_max_type"] = None if not depths else max(depths, key=depths.__getitem__)
        figures["depth_max"] = None if not depths else max(depths.values())
        return figures

    def _cpu_percent(self, name: str, process: psutil.Process | None) -> float | None:
        """`process`'s CPU since the last sample, in % of one core (None: not measured)."""
        if process is None:
            return None
        try:
            times = process.cpu_times()
        except psutil.Error:  # gone (killed, or restarted under another pid)
            self._cpu.pop(name, None)
            return None
        now, spent = perf_ns(), times.user + times.system
        last = self._cpu.get(name)
        self._cpu[name] = (now, spent)
        return None if last is None else 100.0 * (spent - last[1]) / max((now - last[0]) / 1e9, 1e-9)

    async def _depths(self) -> dict[str, float] | None:
        if self.metrics_url is None:
            return None
        try:
            text = await anyio.to_thread.run_sync(scrape, self.metrics_url)
        except OSError:
            self.scrape_failures += 1
            return None
        return per_actor(text, "exoarmur_mailbox_depth")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=SCRAPE_SECONDS) as response:  # noqa: S310 - loopback, our own process
        return response.read().decode()


def per_actor(text: str, family: str) -> dict[str, float]:
    """One of /metrics' gauges per actor type (its `actor` label)."""
    found: dict[str, float] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            for sample in metric.samples:
                found[sample.labels.get("actor", "?")] = sample.value
    return found
