"""The example of docs/execution-types.md runs: its module, registered both
ways the page shows, applies, fails with its declared reason, reverts and
reconciles under a real supervisor."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from exoarmur.actors.execution import GROUP, IntentState, Reconciled, execution_spec, load_types
from exoarmur.actors.intents.effects import Apply, Effect, Outcome, Reconcile, Revert
from exoarmur.runtime import ActorSystem
from exoarmur.supervisors import Supervisor
from tests.actors.execution.support import intent, real_clocks  # noqa: F401  (the anyio_backend fixture)

pytestmark = pytest.mark.anyio

PAGE = Path(__file__).resolve().parents[3] / "docs" / "execution-types.md"


def blocks(language: str) -> list[str]:
    """The page's fenced code blocks in `language`, in order."""
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The page's module importable as my_effects, and a directory for its effects."""
    (python,) = blocks("python")
    (tmp_path / "my_effects.py").write_text(python)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_effects", raising=False)
    directory = tmp_path / "blocklist"
    directory.mkdir()
    return directory


def configs() -> tuple[dict, dict, dict]:
    """The page's TOML: the entry point, its options table, the dotted-path table."""
    entry_point, options, dotted = (tomllib.loads(block) for block in blocks("toml"))
    return entry_point, options, dotted


def test_the_page_shows_both_registrations_of_one_class():
    entry_point, options, dotted = configs()
    (name, value), = entry_point["project"]["entry-points"][GROUP].items()
    assert "class" not in options["execution_types"][name]
    assert dotted["execution_types"][name]["class"] == value


async def test_the_example_registered_by_dotted_path_runs(example):
    _, _, dotted = configs()
    tables = dotted["execution_types"]
    tables["blocklist"]["directory"] = str(example)
    await run(load_types(tables, state_dir=example.parent, entry_points=[]), example)


async def test_the_example_registered_by_entry_point_runs(example):
    entry_point, options, _ = configs()
    (name, value), = entry_point["project"]["entry-points"][GROUP].items()
    tables = options["execution_types"]
    tables[name]["directory"] = str(example)
    await run(load_types(tables, state_dir=example.parent, entry_points=[EntryPoint(name=name, value=value, group=GROUP)]), example)


async def run(types, directory: Path) -> None:
    spec, infos = execution_spec(types, parent_path="execution")
    blocked = intent("blocklist", address="192.0.2.7")
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="execution", kwargs={"spec": spec})
        ref = system.lookup(infos["blocklist"].path)
        assert await ref.ask(Reconcile(blocked, blocked.key)) is Reconciled.NOT_APPLIED
        assert await ref.ask(Apply(blocked, blocked.key)) == Effect(Outcome.APPLIED)
        assert (directory / "192.0.2.7").read_text() == blocked.key
        assert await ref.ask(Reconcile(blocked, blocked.key)) is Reconciled.APPLIED
        bad = intent("blocklist", intent_id="i-2", address="not-an-ip")
        assert await ref.ask(Apply(bad, bad.key)) == Effect(Outcome.FAILED, "BAD_ADDRESS", "not an address: 'not-an-ip'")
        reverting = intent("blocklist", address="192.0.2.7", state=IntentState.REVERTING)
        assert await ref.ask(Reconcile(reverting, reverting.key)) is Reconciled.NOT_APPLIED
        assert await ref.ask(Revert(reverting, reverting.key)) == Effect(Outcome.APPLIED)
        assert await ref.ask(Reconcile(reverting, reverting.key)) is Reconciled.APPLIED
    assert infos["blocklist"].revertible and infos["blocklist"].timeout == 5.0
