"""The load scripts that ship with exoarmur still run: each benchmark's quick
form, both backends, in a process of its own started in an empty directory.
Speed is not judged here (the benchmarks do that against their baselines);
what is checked is that a run completes, checks its own counts (a miscount
ends it with an error), reports a row per figure for each backend, exits 0
exactly when its targets all pass (else 1, naming the rows that missed),
writes its JSON under ./benchmark-results/ there and nowhere else, and leaves
the published figures (docs/benchmark-results/latest_<name>.json) as they were."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import exoarmur.benchmarks

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "benchmark-results"
PACKAGE = Path(exoarmur.benchmarks.__file__).parent
RUN_SECONDS = 240  # a quick run takes 3-20 s here


@pytest.mark.timeout(RUN_SECONDS + 30)
@pytest.mark.parametrize("name", ["kernel", "supervision", "nats"])
def test_the_quick_run_completes_with_a_row_per_figure_for_each_backend(name, tmp_path):
    published = (PUBLISHED / f"latest_{name}.json").read_bytes()
    package = {path for path in PACKAGE.rglob("*") if "__pycache__" not in path.parts}
    done = subprocess.run(
        [sys.executable, "-m", f"exoarmur.benchmarks.bench_{name}", "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    results = tmp_path / "benchmark-results"
    assert results.is_dir(), done.stderr[-3000:]  # (1 is also a crash's status)
    [report_path] = results.iterdir()  # a quick run writes no latest_<name>.json
    assert report_path.name.startswith(f"{name}-")
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
    missed = [
        (backend, row["benchmark"])
        for backend, result in report["backends"].items()
        for row in result["rows"]
        if row["passed"] is False
    ]
    assert report["all_targets_pass"] == (not missed)
    assert done.returncode == (1 if missed else 0), done.stderr[-3000:]
    for backend, benchmark in missed:  # named on stderr (this machine may be busy)
        assert f"  {backend}: {benchmark}: " in done.stderr
    assert (PUBLISHED / f"latest_{name}.json").read_bytes() == published, "a run replaced the published figures"
    assert {path for path in PACKAGE.rglob("*") if "__pycache__" not in path.parts} == package
    assert "| benchmark |" in done.stdout  # the markdown tables for the docs
