"""A gate's result and how it is shown: what was run, the figures measured,
each threshold with the figure it was judged on, PASS or FAIL derived from
them, and the evidence files. A gate passes only when it has at least one
threshold, every threshold passed, and its run did not fail: a gate with no
measurement is FAIL.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["NAMES", "Gate", "Threshold", "describe", "markdown", "table"]

NAMES = {
    1: "durable persistence",
    2: "restart survival",
    3: "replay equivalence",
    4: "minimal deployment",
    5: "kill switches",
    6: "tenant isolation",
    7: "failure survival and crash consistency",
    8: "bounded load and backpressure",
}


def describe(exc: BaseException, *, limit: int = 1000) -> str:
    """An error in one line; an exception group as the errors it holds."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner, limit=limit) for inner in exc.exceptions)[:limit]
    return f"{type(exc).__name__}: {str(exc)[:limit]}"


@attrs.frozen
class Threshold:
    name: str
    passed: bool
    measured: str
    threshold: str


@attrs.define
class Gate:
    number: int
    ran: list[str] = attrs.Factory(list)  # what was run, a line each
    figures: dict[str, Any] = attrs.Factory(dict)
    thresholds: list[Threshold] = attrs.Factory(list)
    evidence: list[str] = attrs.Factory(list)  # files in the evidence directory
    error: str | None = None  # the run that was to measure it failed: why
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return NAMES[self.number]

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.thresholds) and all(t.passed for t in self.thresholds)

    def check(self, name: str, passed: bool, measured: str, threshold: str) -> None:
        self.thresholds.append(Threshold(name, bool(passed), measured, threshold))

    def as_json(self) -> dict[str, Any]:
        return {
            "gate": self.number,
            "name": self.name,
            "result": "PASS" if self.passed else "FAIL",
            "ran": self.ran,
            "figures": self.figures,
            "thresholds": [attrs.asdict(t) for t in self.thresholds],
            "evidence": self.evidence,
            "error": self.error,
            "seconds": round(self.seconds, 1),
        }


def table(gates: list[Gate]) -> str:
    """One row a gate, then each threshold under it."""
    lines = [f"{'gate':<5} {'name':<40} {'result':<6} {'thresholds':>10} {'seconds':>8}"]
    for gate in gates:
        passed = sum(t.passed for t in gate.thresholds)
        lines.append(f"{gate.number:<5} {gate.name:<40} {'PASS' if gate.passed else 'FAIL':<6} "
                     f"{passed:>4} of {len(gate.thresholds):<3} {gate.seconds:>8.1f}")  # fmt: skip
    for gate in gates:
        lines.append("")
        lines.append(f"gate {gate.number}, {gate.name}: {'PASS' if gate.passed else 'FAIL'}")
        lines += [f"  ran: {line}" for line in gate.ran]
        if gate.error:
            lines.append(f"  FAIL  the run failed: {gate.error}")
        if not gate.thresholds:
            lines.append("  FAIL  nothing was measured")
        for t in gate.thresholds:
            lines.append(f"  {'PASS' if t.passed else 'FAIL'}  {t.name}: {t.measured} (threshold: {t.threshold})")
    return "\n".join(lines)


def markdown(gates: list[Gate], *, header: dict[str, Any]) -> str:
    """The evidence directory's gates.md."""
    out = ["# exoarmur gates", ""]
    out += [f"- {name}: {value}" for name, value in header.items()]
    out += ["", "| gate | name | result | thresholds passed | seconds |", "|--:|---|---|--:|--:|"]
    for gate in gates:
        passed = sum(t.passed for t in gate.thresholds)
        out.append(f"| {gate.number} | {gate.name} | {'PASS' if gate.passed else 'FAIL'} | "
                   f"{passed} of {len(gate.thresholds)} | {gate.seconds:.1f} |")  # fmt: skip
    for gate in gates:
        out += ["", f"## Gate {gate.number}: {gate.name}: {'PASS' if gate.passed else 'FAIL'}", "", "What ran:", ""]
        out += [f"- {line}" for line in gate.ran] or ["- nothing"]
        if gate.error:
            out += ["", f"The run failed: `{gate.error}`"]
        out += ["", "| threshold | measured | bound | result |", "|---|---|---|---|"]
        out += [f"| {t.name} | {t.measured} | {t.threshold} | {'PASS' if t.passed else 'FAIL'} |" for t in gate.thresholds]
        if not gate.thresholds:
            out.append("| nothing was measured | - | - | FAIL |")
        if gate.evidence:
            out += ["", "Evidence: " + ", ".join(f"`{name}`" for name in gate.evidence)]
    return "\n".join(out) + "\n"
