"""Running a benchmark script as a user does, and judging its verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import psutil

from exoarmur.benchmarks.report import Row, missed


def run_script(tmp_path: Path, name: str, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], dict]:
    """bench_`name` --quick in a process of its own, in an empty directory,
    its temporary files under tmp_path/tmp; its report."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", f"exoarmur.benchmarks.bench_{name}", "--quick", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    results = tmp_path / "benchmark-results"
    assert results.is_dir(), done.stderr[-3000:]
    [report_path] = results.iterdir()  # a quick run writes no latest_<name>.json
    assert report_path.name.startswith(f"{name}-")
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if str(scratch) in " ".join(p.info["cmdline"] or ())]
    assert leftovers == [], "a server or exoarmur process outlived the run"
    return done, json.loads(report_path.read_text())


def assert_verdict(done: subprocess.CompletedProcess[str], report: dict) -> None:
    """Exit 1 exactly when a target was missed, each such row named on
    stderr as `missed` words it (this machine may be busy: misses happen)."""
    fields = [field.name for field in attrs.fields(Row)]
    tables = [
        (backend, [Row(**{name: row[name] for name in fields}) for row in result["rows"]])
        for backend, result in report["backends"].items()
    ]
    lines = missed(tables)
    assert report["all_targets_pass"] == (not lines)
    assert done.returncode == (1 if lines else 0), done.stderr[-3000:]
    for line in lines:
        assert f"  {line}\n" in done.stderr
