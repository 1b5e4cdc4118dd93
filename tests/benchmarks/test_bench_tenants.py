"""The tenants isolation benchmark runs: its quick form completes against a
real `exoarmur run` and nats-server, reports steady's latencies both ways
and flood's answers by code, admits flood no more than its rate limit
allows, and exits 0 exactly when its targets pass. Speed is not judged
here: the benchmark does that."""

from __future__ import annotations

import asyncio
import math

import pytest

from exoarmur.benchmarks import bench_tenants, tenants_flood
from exoarmur.benchmarks.measure import perf_ns
from tests.benchmarks.scripts import assert_verdict, run_script

SECONDS = 1.0  # each phase
RUN_SECONDS = 180


@pytest.mark.timeout(RUN_SECONDS + 30)
def test_the_quick_run_reports_both_ways_and_the_flood_is_held_to_its_limit(tmp_path):
    done, report = run_script(tmp_path, "tenants", "--seconds", str(SECONDS), timeout=RUN_SECONDS)
    assert set(report["backends"]) == {"asyncio"}
    result = report["backends"]["asyncio"]
    rows = {row["benchmark"]: row for row in result["rows"]}
    for figure in ("p50", "p99"):
        row = rows[f"steady {figure}, submit -> SUCCEEDED (µs)"]
        for value in (row["exoarmur"], row["baseline_value"]):
            assert math.isfinite(value) and value > 0, row
    assert rows["steady p99, submit -> SUCCEEDED (µs)"]["passed"] is not None
    assert {"steady not SUCCEEDED, with the flood (submits)", "steady not SUCCEEDED, alone (submits)"} <= set(rows)
    assert 0 < rows["exoarmur process CPU (% of a core)"]["exoarmur"] < 200
    params = bench_tenants.QUICK
    flooded, alone = result["results"]["flooded"], result["results"]["alone"]
    flooding = bench_tenants.QUICK.flood_lead + SECONDS  # the flood starts before steady's submits
    offered = int(params.flood_rate * flooding) * params.rounds
    answers = flooded["flood_answers"]
    assert sum(answers.values()) == offered
    assert answers.get("RATE_LIMITED", 0) > 0
    # The bucket: its burst (one second's worth) plus the rate over each flood, and no more.
    most = params.rounds * (params.rate + params.rate * flooding)
    assert params.rounds * params.rate * flooding * 0.8 <= answers["accepted"] <= most, answers
    assert alone["flood_answers"] == {}  # no flood in the phases alone
    steady = int(params.steady_rate * SECONDS) * params.rounds
    for part in (flooded, alone):
        assert part["steady_succeeded"] + sum(part["steady_failed"].values()) == steady
    assert "[tenants.flood]" in report["config"] and "[tenants.steady]" in report["config"]
    assert_verdict(done, report)


def test_the_open_loop_starts_on_schedule_whatever_the_answers_take():
    started: list[tuple[int, int]] = []

    async def one(index: int, due: int) -> None:
        started.append((index, due))
        await asyncio.sleep(1.0 if index == 0 else 0.0)  # a slow answer delays no later start

    async def run() -> tuple[int, int]:
        begun = perf_ns()
        await tenants_flood.open_loop(one, rate=50.0, seconds=0.2)
        return begun, perf_ns()

    begun, ended = asyncio.run(run())
    assert [index for index, _ in started] == list(range(10))
    dues = [due for _, due in started]
    assert [due - dues[0] for due in dues] == [round(i * 1e9 / 50.0) for i in range(10)]  # due on schedule
    assert begun <= dues[0] and dues[-1] < dues[0] + 1e9  # all due before the first answer came
    assert ended - begun >= 1e9  # and the loop waited for it


def test_the_options_are_bounded(capsys):
    for argv in (["--rate", "0"], ["--seconds", "0.5"], ["--rate", "1e9"]):
        with pytest.raises(SystemExit) as exit_:
            bench_tenants.parse_args(argv)
        assert exit_.value.code == 2
    assert "--rate must be" in capsys.readouterr().err
