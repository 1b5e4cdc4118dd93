"""The layers hold: each package imports only what is below it.

    exoarmur.runtime        the kernel: nothing above it
    exoarmur.supervisors    the kernel's public names (`exoarmur.runtime`)
    exoarmur.actors.nats    the two above
    exoarmur.actors.remote  the three above
    exoarmur.actors.intents the four above: the record, intent actors, leases, replay
    exoarmur.actors.execution  the five above: the execution types (they answer intents)
    exoarmur.actors.tenants the six above: tenant supervisors over intent actors
    exoarmur.actors.controls the seven above: the gates (kill switches, ...)
    exoarmur.actors.app     anything: the main process, at the top
    exoarmur.benchmarks     anything but the main process

An import counts wherever it is written (at module level, inside a function,
under TYPE_CHECKING), and so does a string (other than a docstring) that
names a module ("exoarmur.actors.app.tree:build_tree", "actors.tree"), the
way a lazy `importlib.import_module` or a config default would reach upward.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Repository folder -> the import name it installs as.
PACKAGES = {
    "runtime": "exoarmur.runtime",
    "supervisors": "exoarmur.supervisors",
    "actors/nats": "exoarmur.actors.nats",
    "actors/remote": "exoarmur.actors.remote",
    "actors/intents": "exoarmur.actors.intents",
    "actors/execution": "exoarmur.actors.execution",
    "actors/tenants": "exoarmur.actors.tenants",
    "actors/controls": "exoarmur.actors.controls",
    "actors/app": "exoarmur.actors.app",
    "benchmarks": "exoarmur.benchmarks",
}
LAYERS = (
    "exoarmur.runtime",
    "exoarmur.supervisors",
    "exoarmur.actors.nats",
    "exoarmur.actors.remote",
    "exoarmur.actors.intents",
    "exoarmur.actors.execution",
    "exoarmur.actors.tenants",
    "exoarmur.actors.controls",
)
# What each may name of exoarmur (its own package is always allowed).
ALLOWED = {
    "exoarmur.runtime": (),
    "exoarmur.supervisors": ("exoarmur.runtime",),
    "exoarmur.actors.nats": ("exoarmur.runtime", "exoarmur.supervisors"),
    "exoarmur.actors.remote": LAYERS[:3],
    "exoarmur.actors.intents": LAYERS[:4],
    "exoarmur.actors.execution": LAYERS[:5],
    "exoarmur.actors.tenants": LAYERS[:6],
    "exoarmur.actors.controls": LAYERS[:7],
    "exoarmur.actors.app": ("exoarmur",),
    "exoarmur.benchmarks": LAYERS,
}
# Packages whose insides stay theirs: from above, only their public names
# (and the modules listed as public beside them).
PUBLIC_ONLY = {
    "exoarmur.runtime": (
        "exoarmur.supervisors",
        "exoarmur.actors.nats",
        "exoarmur.actors.remote",
        "exoarmur.actors.intents",
        "exoarmur.actors.execution",
        "exoarmur.actors.tenants",
        "exoarmur.actors.controls",
        "exoarmur.actors.app",
        "exoarmur.benchmarks",
    ),
    "exoarmur.supervisors": (
        "exoarmur.actors.nats",
        "exoarmur.actors.remote",
        "exoarmur.actors.intents",
        "exoarmur.actors.execution",
        "exoarmur.actors.tenants",
        "exoarmur.actors.controls",
        "exoarmur.actors.app",
        "exoarmur.benchmarks",
    ),
}
PUBLIC_MODULES = ("exoarmur.runtime.margins", "exoarmur.runtime.logs")  # timing margins; log events
# A module named in a string, with or without the namespace.
_NAMED = re.compile(r"\b(?:exoarmur\.)?(?:runtime|supervisors|actors|benchmarks)(?:\.[a-z_]+)+\b")
_TOP_NAMES = ("runtime", "supervisors", "actors", "benchmarks")


def named_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every module `path` imports or names in a string."""
    found: list[tuple[int, str]] = []
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            for match in _NAMED.finditer(node.value):
                name = match.group(0)
                if name.split(".")[0] in _TOP_NAMES:
                    name = f"exoarmur.{name}"
                found.append((node.lineno, name.split(":")[0]))
    return [(line, name) for line, name in found if name == "exoarmur" or name.startswith(("exoarmur.", *(t + "." for t in _TOP_NAMES)))]


def owner(name: str) -> str | None:
    """The layer package `name` belongs to (the longest match)."""
    best = None
    for package in PACKAGES.values():
        if (name == package or name.startswith(package + ".")) and (best is None or len(package) > len(best)):
            best = package
    return best


def violations(folder: str) -> list[str]:
    package = PACKAGES[folder]
    allowed = ALLOWED[package]
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, name in named_modules(path):
            if name.startswith(tuple(t + "." for t in _TOP_NAMES)):
                found.append(f"{path.relative_to(ROOT)}:{line} names {name!r} (no such top-level package)")
                continue
            target = owner(name)
            if target == package:
                continue
            if not any(name == a or name.startswith(a + ".") for a in allowed):
                found.append(f"{path.relative_to(ROOT)}:{line} names {name}")
            elif target is not None and package in PUBLIC_ONLY.get(target, ()) and name not in (target, *PUBLIC_MODULES):
                found.append(f"{path.relative_to(ROOT)}:{line} reaches inside {target}: {name}")
    return found


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_each_layer_names_only_what_is_below_it(folder):
    assert violations(folder) == []


SOURCES = [
    path
    for folder in ("exoarmur", "runtime", "supervisors", "actors", "benchmarks", "examples")
    for path in sorted((ROOT / folder).rglob("*.py"))
]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_holds_one_idea_in_under_500_lines(path):
    assert len(path.read_text().splitlines()) < 500


def test_strings_and_lazy_imports_count(tmp_path):
    """The scan would catch the kernel naming a layer above it in a string,
    in a lazy import or under TYPE_CHECKING."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        'FACTORY = "actors.tree:build_tree"\n'
        "def f():\n    import exoarmur.supervisors.supervisor\n"
        "if False:\n    from exoarmur.actors.nats import connection\n"
        'BENCH = "exoarmur.benchmarks.bench_kernel"\n'
    )
    names = {name for _, name in named_modules(probe)}
    assert names == {
        "exoarmur.actors.tree",
        "exoarmur.supervisors.supervisor",
        "exoarmur.actors.nats",
        "exoarmur.benchmarks.bench_kernel",
    }
    assert all(owner(name) != "exoarmur.runtime" for name in names)
