"""The public surface of supervisors/ is pinned, and supervisors/ depends only on runtime/."""

from __future__ import annotations

import ast
import pathlib
import sys

from exoarmur import supervisors

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_supervisors_exports_exactly_its_public_names():
    """supervisors.__all__ is the documented surface, and every name resolves."""
    assert sorted(supervisors.__all__) == sorted(
        [
            "AUDIT_KINDS", "BRUTAL", "DEFAULT_INTENSITY", "NO_BACKOFF", "BREAKER_TRANSITIONS",
            "BackoffPolicy", "Breaker", "BreakerPolicy", "BreakerState", "BreakerStatistics",
            "Brutal", "ChildDown", "ChildSpec", "ChildState", "Restart", "RestartDue",
            "RestartHistory", "RestartIntensity", "RestartWindow", "Strategy", "Supervisor", "SupervisorSpec",
            "Transition", "add_restart", "check_transition", "jitter_rng", "should_restart",
            "shutdown_order", "to_restart",
        ]
    )  # fmt: skip
    for name in supervisors.__all__:
        assert getattr(supervisors, name) is not None


def test_supervisors_import_only_runtime_attrs_and_the_standard_library():
    """No module in supervisors/ imports actors/ or a third-party package other than attrs."""
    allowed = {"runtime", "supervisors", "attrs", "anyio", "__future__"} | set(sys.stdlib_module_names)
    for path in (ROOT / "supervisors").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert (name.split(".")[1] if name.startswith("exoarmur.") else name.split(".")[0]) in allowed, f"{path.name} imports {name}"
