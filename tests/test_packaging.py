"""The distribution claims one import name, `exoarmur`: the wheel holds
nothing else at its top level, ships `py.typed` and its package data, and
installed outside the repository it imports and runs from its own copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves a build/ folder beside the sources.
    source = tmp_path_factory.mktemp("source") / "exoarmur"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("exoarmur-*.whl")
    return found


def test_exoarmur_is_the_only_top_level_name_in_the_wheel(wheel):
    """Nothing called runtime, actors, supervisors or benchmarks lands in site-packages."""
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"exoarmur"}
    for subpackage in ("runtime", "supervisors", "actors", "benchmarks"):
        assert f"exoarmur/{subpackage}/__init__.py" in names
    assert "exoarmur/py.typed" in names
    assert not [name for name in names if "/tests/" in name or name.startswith("tests/")]


def test_the_installed_wheel_imports_from_its_own_copy(wheel, tmp_path):
    """Installed into a fresh target and run from elsewhere, the everyday
    surface imports and the command answers --help."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = (
        "import exoarmur, exoarmur.runtime.cell as cell\n"
        "from exoarmur import Actor, ActorSystem, ActorRef, Supervisor, SupervisorSpec, ChildSpec, handles, message, ReasonCode\n"
        "print(cell.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); exec({script!r})"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(target))
    helped = subprocess.run(
        [sys.executable, "-m", "exoarmur", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: exoarmur" in helped.stdout


@pytest.mark.parametrize(
    "path, ignored",
    [
        (".exoarmur/lock", True),  # the main process's state
        (".exoarmur/nats/jetstream/x", True),
        ("benchmark-results/latest_kernel.json", True),  # a run's figures
        ("docs/benchmark-results/latest_kernel.json", False),  # the published ones
        ("gates-evidence/20261207T120000Z/gates.json", True),  # exoarmur gates' evidence
        ("runtime/cell.py", False),
    ],
)
def test_what_a_run_leaves_in_a_checkout_is_ignored_by_git(path, ignored):
    """`exoarmur run` and the benchmarks write into the directory they run in;
    in a checkout, git does not offer what they wrote for a commit."""
    done = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", path], cwd=ROOT, capture_output=True, timeout=30
    )
    if done.returncode == 128:
        pytest.skip(f"not a git checkout: {done.stderr.decode(errors='replace')}")
    assert (done.returncode == 0) is ignored
