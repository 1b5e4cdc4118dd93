"""The kernel's own structure: its modules import each other without a cycle
(counting every import: at module level, inside functions, and those only
for type checkers). Module sizes: tests/test_layers.py."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
PACKAGE = "exoarmur.runtime"


def imported_modules(path: Path) -> set[str]:
    """Every runtime module `path` names in an import statement, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + "."):
                module = name[len(PACKAGE) + 1 :].split(".")[0]
                if (RUNTIME / f"{module}.py").exists():
                    found.add(module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        path.stem: imported_modules(path) - {path.stem}
        for path in RUNTIME.glob("*.py")
        if path.stem != "__init__"
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of modules, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_kernels_modules_import_each_other_without_a_cycle():
    """No cycle, not even through imports made only for type checkers."""
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    """The check above could fail: a graph with a cycle is caught."""
    assert find_cycle({"cell": {"ref"}, "ref": {"context"}, "context": {"cell"}}) == ["cell", "ref", "context", "cell"]
    assert find_cycle({"cell": {"ref"}, "ref": set()}) is None


def test_the_import_scan_sees_imports_inside_functions_and_type_checking(tmp_path):
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from exoarmur.runtime.cell import ActorCell\n"
        "def f():\n    from exoarmur.runtime import ref\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imported_modules(path) == {"cell", "ref"}
