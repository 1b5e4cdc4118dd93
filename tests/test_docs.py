"""The docs say what the code does: the reason-code tables list every code once
with its class, the timeout table has the policy's defaults, and every link,
file and test a page names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exoarmur.runtime import ExoarmurError, ReasonCode, error_for
from exoarmur.runtime.timeouts import DEFAULT_SECONDS, TimeoutCategory

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def table(page: Path, heading: str) -> list[list[str]]:
    """The cells of the first table under `heading` (header and rule left out)."""
    lines = page.read_text().splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"no table under {heading!r} in {page.name}"
    return rows[2:]


def code_span(cell: str) -> str:
    """The name in a cell written as `NAME`."""
    found = re.fullmatch(r"`([^`]+)`", cell)
    assert found, f"expected a `name` cell, got {cell!r}"
    return found.group(1)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.lstrip("#").strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


class TestReasonCodes:
    PAGE = DOCS / "reason-codes.md"

    def rows(self) -> list[tuple[str, str]]:
        return [(code_span(code), code_span(cls)) for code, cls, _ in table(self.PAGE, "## Every code")]

    def test_every_code_is_listed_once_in_the_enums_order(self):
        """One row per ReasonCode member, no other rows, in definition order."""
        assert [code for code, _ in self.rows()] == [member.value for member in ReasonCode]

    def test_each_rows_class_is_the_one_error_for_builds(self):
        """The class column is type(error_for(code)).__name__ for every row."""
        wrong = {code: (cls, type(error_for(code)).__name__) for code, cls in self.rows()}
        assert {code: pair for code, pair in wrong.items() if pair[0] != pair[1]} == {}

    def test_each_row_says_when_a_caller_sees_it(self):
        """No row leaves its last column empty."""
        assert all(when for *_, when in table(self.PAGE, "## Every code"))

    def test_the_families_are_exactly_the_classes_in_use_with_their_builtins(self):
        """The families table names each class error_for can build once, with
        the builtin exception it also subclasses ("-" for none)."""
        used = {type(error_for(code)) for code in ReasonCode}
        listed = {}
        for cls, builtin, _ in table(self.PAGE, "## Families"):
            name = code_span(cls)
            assert name not in listed, f"{name} listed twice"
            listed[name] = builtin
        assert set(listed) == {family.__name__ for family in used}
        for family in used:
            builtins = [base.__name__ for base in family.__bases__ if base is not ExoarmurError]
            assert listed[family.__name__] == (f"`{builtins[0]}`" if builtins else "-"), family.__name__


class TestTimeouts:
    PAGE = DOCS / "rules.md"

    def test_the_table_is_the_policys_defaults_with_their_codes(self):
        """Every category once, in order, with its default seconds and its code."""
        rows = table(self.PAGE, "## Timeouts")
        assert [code_span(category) for category, *_ in rows] == [c.name for c in TimeoutCategory]
        for category, seconds, code, _ in rows:
            member = TimeoutCategory[code_span(category)]
            assert float(seconds) == DEFAULT_SECONDS[member], member
            assert code_span(code) == member.code.value, member


class TestSummary:
    def test_the_readmes_figures_are_those_of_the_full_runs(self):
        """Each ratio or size in the README's summary appears in docs/benchmarks.md."""
        figures = re.findall(r"\d+\.\d+(?:x| KiB)", " ".join(" ".join(row) for row in table(REPO / "README.md", "## Speed")))
        assert figures
        benchmarks = (DOCS / "benchmarks.md").read_text()
        assert [figure for figure in figures if figure not in benchmarks] == []

    def test_the_readmes_kernel_map_names_every_kernel_module(self):
        """Every module of runtime/ is named in the README's tour of the kernel
        (its bullets and its file map), so the map cannot fall behind a split."""
        readme = (REPO / "README.md").read_text()
        tour = readme[readme.index("Where to look in the kernel") : readme.index("## A taste")]
        named = set(re.findall(r"`(?:runtime/)?([a-z_]+\.py)`", tour))
        modules = {path.name for path in (REPO / "runtime").glob("*.py")} - {"__init__.py"}
        assert sorted(modules - named) == []


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
class TestReferences:
    def test_every_relative_link_and_anchor_resolves(self, page):
        """[text](path#anchor): the file exists and has a heading with that anchor."""
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target} does not exist"
            if anchor and linked.suffix == ".md":
                anchors = {slug(line) for line in linked.read_text().splitlines() if line.startswith("#")}
                assert anchor in anchors, f"{page.name}: no heading for #{anchor} in {linked.name}"

    def test_every_python_file_and_test_named_exists(self, page):
        """`path.py` and `path.py::test_name` in backticks name real files and tests."""
        for path, name in re.findall(r"`((?:[\w.-]+/)+[\w.-]+\.py)(?:::(\w+))?`", page.read_text()):
            assert (REPO / path).is_file(), f"{page.name}: {path} does not exist"
            if name:
                assert re.search(rf"def {name}\(", (REPO / path).read_text()), f"{page.name}: no {path}::{name}"
