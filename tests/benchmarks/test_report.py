"""What the benchmark scripts do with their figures: the verdict (a missed
target exits 1 and is named) and where results go (the current directory's
./benchmark-results/ or --out, never next to the scripts). The measuring is
replaced by canned figures; tests/test_benchmarks.py runs the real thing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exoarmur.benchmarks import bench_supervision

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(bench_supervision.__file__).parent
PUBLISHED = REPO / "docs" / "benchmark-results" / "latest_supervision.json"


def canned(paired_ratio: float) -> dict:
    """What bench_supervision.run_backend returns, with `paired_ratio` as the
    figure its one target judges."""
    side = {"sent": 100, "handled": 99, "crashed": 1, "restarts": 1, "seconds": 0.1, "per_s": 1000.0,
            "median_per_s": 1000.0}
    return {
        "restart": {"p50_us": 30.0, "p99_us": 60.0},
        "ask": {"p50_us": 10.0, "p99_us": 20.0},
        "calm": side,
        "crashing": side,
        "ratio_of_medians": paired_ratio,
        "ratio_of_sums": paired_ratio,
        "median_paired_ratio": paired_ratio,
    }


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """Run bench_supervision in tmp_path with canned figures: set the ratio, then call `main`."""
    monkeypatch.chdir(tmp_path)
    ratio = [0.95]

    async def run_backend(params):
        return canned(ratio[0])

    monkeypatch.setattr(bench_supervision, "run_backend", run_backend)
    return ratio


def package_files() -> set[Path]:
    return {path for path in PACKAGE.rglob("*") if "__pycache__" not in path.parts}


class TestVerdict:
    def test_a_missed_target_exits_1_naming_each_row_that_missed(self, figures, capsys):
        """Targets missed: exit 1, and stderr names every row that missed (both backends)."""
        figures[0] = 0.5
        assert bench_supervision.main(["--quick"]) == 1
        err = capsys.readouterr().err
        assert "bench supervision: 2 target(s) missed:" in err
        for backend in ("asyncio", "trio"):
            assert f"  {backend}: 1% / 0% throughput, median of 15 paired rounds: 0.500x, target >= 0.90x" in err

    def test_every_target_met_exits_0(self, figures, capsys):
        """All targets met: exit 0, nothing named."""
        figures[0] = 0.95
        assert bench_supervision.main(["--quick", "--backend", "asyncio"]) == 0
        assert "missed" not in capsys.readouterr().err


class TestWhereResultsGo:
    def test_a_full_run_writes_in_the_current_directory_only(self, figures, tmp_path):
        """A full run writes ./benchmark-results/supervision-<UTC>.json and
        latest_supervision.json; nothing next to the scripts, and the published
        figures are left as they are."""
        before, published = package_files(), PUBLISHED.read_bytes()
        assert bench_supervision.main(["--backend", "asyncio"]) == 0
        [stamped] = {path.name for path in (tmp_path / "benchmark-results").iterdir()} - {"latest_supervision.json"}
        assert stamped.startswith("supervision-") and stamped.endswith("Z.json")
        report = json.loads((tmp_path / "benchmark-results" / "latest_supervision.json").read_text())
        assert report["quick"] is False and report["all_targets_pass"] is True
        assert package_files() == before
        assert PUBLISHED.read_bytes() == published

    def test_out_and_json_choose_the_files(self, figures, tmp_path):
        """--out DIR replaces ./benchmark-results/; --json PATH names the run's
        file; a quick run writes no latest_ file."""
        assert bench_supervision.main(["--quick", "--backend", "asyncio", "--out", "elsewhere"]) == 0
        [written] = (tmp_path / "elsewhere").iterdir()
        assert written.name.startswith("supervision-")
        assert bench_supervision.main(["--backend", "asyncio", "--out", "o", "--json", "run.json"]) == 0
        assert json.loads((tmp_path / "run.json").read_text())["benchmark"] == "supervision"
        assert [path.name for path in (tmp_path / "o").iterdir()] == ["latest_supervision.json"]
        assert not (tmp_path / "benchmark-results").exists()

    def test_help_says_how_to_refresh_the_published_figures(self, capsys):
        """--help names the published file and the copy that refreshes it."""
        with pytest.raises(SystemExit) as exited:
            bench_supervision.main(["--help"])
        assert exited.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "cp benchmark-results/latest_supervision.json docs/benchmark-results/" in out
        assert "(default: ./benchmark-results/ in the current directory)" in out
