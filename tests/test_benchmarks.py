"""The load scripts that ship with exoarmur still run: each benchmark's quick
form, both backends, in a process of its own. Speed is not judged here (the
benchmarks do that against their baselines); what is checked is that a run
completes, checks its own counts (a miscount ends it with an error), reports
a row per figure for each backend, and leaves latest_<name>.json, the last
full run's figures, as it was."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUN_SECONDS = 240  # a quick run takes 3-20 s here


@pytest.mark.timeout(RUN_SECONDS + 30)
@pytest.mark.parametrize("name", ["kernel", "supervision", "nats"])
def test_the_quick_run_completes_with_a_row_per_figure_for_each_backend(name, tmp_path):
    latest = RESULTS / f"latest_{name}.json"
    before = latest.read_bytes() if latest.exists() else None
    report_path = tmp_path / f"{name}.json"
    done = subprocess.run(
        [sys.executable, "-m", f"exoarmur.benchmarks.bench_{name}", "--quick", "--json", str(report_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["quick"] is True
    assert set(report["backends"]) == {"asyncio", "trio"}
    for backend, result in report["backends"].items():
        rows = result["rows"]
        assert rows, backend
        for row in rows:
            assert isinstance(row["exoarmur"], (int, float)) and math.isfinite(row["exoarmur"]), row
            assert row["exoarmur"] > 0, row
        targets = [row for row in rows if row["passed"] is not None]
        assert targets, f"{backend}: no row carries a target"
    assert report["all_targets_pass"] == all(
        row["passed"] for result in report["backends"].values() for row in result["rows"] if row["passed"] is not None
    )
    assert (latest.read_bytes() if latest.exists() else None) == before, "a quick run replaced the full run's figures"
    assert "| benchmark |" in done.stdout  # the markdown tables for the README
