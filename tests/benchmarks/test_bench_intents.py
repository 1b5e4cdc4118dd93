"""The intents benchmark runs: its quick form completes against a real
`exoarmur run` and nats-server, reports a row per figure with finite,
positive values, counts what one intent cost exoarmur (the same writes as
its raw baseline makes, or the comparison is void), exits 0 exactly when its
targets pass, and leaves no process behind. Its memory mode reports bytes
per terminal intent. Speed is not judged here: the benchmark does that."""

from __future__ import annotations

import asyncio
import math
import subprocess
from pathlib import Path

import pytest

from exoarmur.benchmarks import bench_intents
from exoarmur.benchmarks.intents_load import closed_loop
from exoarmur.benchmarks.intents_memory import fitted_slope
from exoarmur.benchmarks.intents_raw import Shape
from tests.benchmarks import scripts
from tests.benchmarks.scripts import assert_verdict

RUN_SECONDS = 240  # a quick run takes 25-50 s here


def run_script(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    return scripts.run_script(tmp_path, "intents", *args, timeout=RUN_SECONDS)


@pytest.mark.timeout(RUN_SECONDS + 30)
def test_the_quick_run_reports_every_case_and_counts_the_writes_of_an_intent(tmp_path):
    done, report = run_script(tmp_path)
    assert report["quick"] is True
    assert set(report["backends"]) == {"asyncio"}  # quick: one backend, one sync mode
    rows = report["backends"]["asyncio"]["rows"]
    names = {row["benchmark"] for row in rows}
    for kind in ("noop", "ledger"):
        for inflight in (1, 64):
            for figure in ("(intents/s)", "p50 (µs)", "p99 (µs)"):
                assert f"{kind} x{inflight} {figure} [sync always]" in names
    for row in rows:
        for value in (row["exoarmur"], row["baseline_value"]):
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, row
    assert [row for row in rows if row["passed"] is not None], "no row carries a target"
    assert_verdict(done, report)
    cases = report["backends"]["asyncio"]["results"]["modes"]["sync always"]["cases"]
    for name, case in cases.items():
        per, shape = case["exoarmur"]["per_intent"], case["raw"]["shape"]
        # The baseline makes what exoarmur was counted making (its warmup):
        # record writes and audit events exactly; a resumer's scan may add an
        # index delete and a read now and then.
        assert per["records"] == shape["records"] >= 2, (name, per, shape)
        assert per["audit_events"] == shape["audit"] >= 1, (name, per, shape)
        # Events queued on a chain together are one record, on both sides:
        # one at a time, never more records than events.
        for side in (per, case["raw"]["per_intent"]):
            assert 0 < side["audit"] <= shape["audit"], (name, side)
        if name.endswith("x1"):
            assert per["audit"] == shape["audit"], (name, per)
        assert shape["open"] <= per["open"] < shape["open"] + 0.5, (name, per, shape)
        # Reads too, within one: the resumer's scan reads the record of an
        # entry whose actor is not started yet, and a warmup slowed by a busy
        # machine (the rest of the suite beside it) meets more of those.
        assert abs(per["reads"] - shape["reads"]) < 1, (name, per, shape)
        assert per["cpu_us:exoarmur"] > 0 and per["cpu_us:nats-server"] > 0, (name, per)
    assert "KV writes" in done.stdout and "audit events" in done.stdout
    assert "| benchmark |" in done.stdout  # the markdown table for the docs


@pytest.mark.timeout(RUN_SECONDS + 30)
def test_the_memory_mode_reports_bytes_per_terminal_intent(tmp_path):
    done, report = run_script(tmp_path, "--terminal-only", "--terminal", "300")
    [row] = report["backends"]["asyncio"]["rows"]
    assert row["benchmark"] == "RSS growth / terminal intent (300 noop)"
    assert row["unit"] == "bytes" and math.isfinite(row["exoarmur"])
    assert row["passed"] is None  # too few intents to judge a slope
    memory = report["backends"]["asyncio"]["results"]["memory"]
    assert memory["intents"] == 300 and len(memory["samples"]) == 11
    assert all(rss > 0 for _, rss in memory["samples"])
    assert_verdict(done, report)


def test_the_baseline_takes_the_shape_exoarmur_was_counted_making():
    counted = {"reads": 3.02, "records": 4.0, "open": 2.04, "audit": 1.3, "audit_events": 4.0, "switch_reads": 1.98,
               "cpu_us:exoarmur": 9.0}  # fmt: skip
    shape = Shape.measured(counted)
    assert shape == Shape(reads=3, records=4, open=2, audit=4, switch_reads=1.98)
    assert Shape.measured({**counted, "reads": 0.01, "switch_reads": 0.123}) == Shape(
        reads=0, records=4, open=2, audit=4, switch_reads=0.12
    )  # no read of its record once settled (a type that cannot revert), the switches' reads shared
    assert shape.states() == ["APPROVED", "EXECUTING", "SUCCEEDED"]
    assert Shape(records=3).states() == ["APPROVED", "SUCCEEDED"]  # one write fewer: the baseline follows
    with pytest.raises(AssertionError):
        Shape.measured({"reads": 0.0, "records": 1.0, "open": 0.0, "audit_events": 0.0, "switch_reads": 0.0})


def test_memory_only_needs_terminal_intents(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_intents.parse_args(["--quick", "--terminal-only"])
    assert exit_.value.code == 2
    assert "--terminal N" in capsys.readouterr().err


def test_the_closed_loop_keeps_exactly_inflight_intents_going_and_runs_each_once():
    seen: list[int] = []
    going = 0
    most = 0

    async def one(index: int) -> None:
        nonlocal going, most
        going += 1
        most = max(most, going)
        await asyncio.sleep(0.001 * (index % 3))
        seen.append(index)
        going -= 1

    lap = asyncio.run(closed_loop(one, count=50, inflight=8))
    assert sorted(seen) == list(range(50))
    assert most == 8
    assert lap.count == 50 and len(lap.latencies_ns) == 50 and all(ns > 0 for ns in lap.latencies_ns)
    assert lap.seconds > 0


def test_a_memory_run_cut_short_is_a_failure_whatever_its_slope_so_far():
    memory = {"intents": 20_000, "done": 4_000, "bytes_per_intent": 12.0, "samples": [(0, 1), (4_000, 2)],
              "fitted_bytes_per_intent": 12.0, "stopped": "nats.errors.TimeoutError: nats: timeout"}  # fmt: skip
    [row] = bench_intents.build_rows(bench_intents.FULL, {"modes": {}, "memory": memory})
    assert row.passed is False
    assert row.benchmark == "RSS growth / terminal intent (stopped at 4,000 of 20,000 noop)"
    [note] = bench_intents.cost_notes({"modes": {}, "memory": memory})
    assert "STOPPED: nats.errors.TimeoutError: nats: timeout" in note


def test_a_stopped_run_names_its_first_failure_not_the_group():
    group = ExceptionGroup("tasks", [ExceptionGroup("inner", [TimeoutError("no reply")]), ValueError("x")])
    assert bench_intents.first_error(group) == "builtins.TimeoutError: no reply (and 1 more)"


def test_the_fitted_slope_weighs_a_step_by_where_it_falls():
    assert fitted_slope([(0, 100), (10, 200), (20, 300)]) == 10.0
    early_step = [(0, 0), (10, 1_000), (20, 1_000), (30, 1_000), (40, 1_000)]
    assert fitted_slope(early_step) < (1_000 - 0) / 40  # the two-point slope counts the step in full
