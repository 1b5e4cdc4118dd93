"""The registry: types from the installed entry points and from dotted paths
in config, every mistake CONFIG_INVALID naming its place; and the supervisor
`execution_spec` builds, run for real."""

from __future__ import annotations

import importlib.metadata
from importlib.metadata import EntryPoint

import anyio
import pytest

from exoarmur.actors.execution.keys import KeyCalls
from exoarmur.actors.execution import GROUP, Ledger, Noop, execution_spec, load_types
from exoarmur.actors.intents import IntentRecord
from exoarmur.actors.intents.effects import Apply, Effect, Outcome, Reconcile, Reconciled, TypeInfo
from exoarmur.runtime import ActorSystem, BreakerOpen, InvalidInput, ReasonCode
from exoarmur.supervisors import BreakerPolicy, Describe, Restart, Strategy, Supervisor
from tests.supervisors.support import raises_config_invalid
from tests.actors.execution.support import NeedsHost, Scripted, intent

SUPPORT = "tests.actors.execution.support"


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


def assert_config_invalid(call, *fragments: str) -> None:
    with raises_config_invalid(*fragments):
        call()


class TestEntryPoints:
    def test_noop_and_ledger_are_installed_entry_points(self):
        """The project's own metadata registers both (an editable install older
        than the entry points would miss them: reinstall it)."""
        installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=GROUP)}
        assert installed["noop"].endswith("execution.noop:Noop")
        assert installed["ledger"].endswith("execution.ledger:Ledger")

    def test_without_config_every_installed_type_is_built_with_no_options(self, tmp_path):
        """The ledger goes to its default file in the state directory."""
        types = load_types(None, state_dir=tmp_path)
        assert {"noop", "ledger"} <= set(types)
        assert isinstance(types["noop"], Noop)
        assert isinstance(types["ledger"], Ledger) and types["ledger"].path == tmp_path / "ledger.jsonl"

    def test_a_table_without_class_configures_the_entry_point_type(self, tmp_path):
        types = load_types({"ledger": {"path": "effects.jsonl"}}, state_dir=tmp_path)
        assert types["ledger"].path == tmp_path / "effects.jsonl"

    def test_the_mapping_is_frozen_and_sorted_by_name(self, tmp_path):
        types = load_types(None, state_dir=tmp_path, entry_points=[entry_point("noop", f"{Noop.__module__}:Noop"), entry_point("ledger", f"{Ledger.__module__}:Ledger")])
        assert list(types) == ["ledger", "noop"]
        with pytest.raises(TypeError):
            types["other"] = Noop()  # type: ignore[index]

    def test_an_entry_point_that_fails_to_import_is_named(self, tmp_path):
        broken = entry_point("broken", "no_such_package_anywhere.module:Type")
        assert_config_invalid(
            lambda: load_types(None, state_dir=tmp_path, entry_points=[broken]),
            "entry point broken = 'no_such_package_anywhere.module:Type'",
            "ModuleNotFoundError",
        )

    def test_one_name_for_two_classes_is_refused(self, tmp_path):
        """Two installed packages claiming one name: which is meant cannot be guessed."""
        twice = [entry_point("scripted", f"{SUPPORT}:Scripted"), entry_point("scripted", f"{SUPPORT}:OneWay")]
        assert_config_invalid(lambda: load_types(None, state_dir=tmp_path, entry_points=twice), "installed twice")

    def test_the_same_entry_point_seen_twice_is_one(self, tmp_path):
        """A package visible on two paths (an editable install) lists it twice, identically."""
        twice = [entry_point("scripted", f"{SUPPORT}:Scripted")] * 2
        assert list(load_types(None, state_dir=tmp_path, entry_points=twice)) == ["scripted"]

    def test_an_entry_point_type_that_needs_options_it_was_not_given_stops_the_start(self, tmp_path):
        needs = [entry_point("needs_host", f"{SUPPORT}:NeedsHost")]
        assert_config_invalid(lambda: load_types(None, state_dir=tmp_path, entry_points=needs), "execution_types.needs_host.host: required")
        built = load_types({"needs_host": {"host": "fw"}}, state_dir=tmp_path, entry_points=needs)
        assert built["needs_host"].host == "fw"


class TestDottedPath:
    def test_a_class_named_in_config_is_loaded_with_its_options(self, tmp_path):
        types = load_types({"needs_host": {"class": f"{SUPPORT}:NeedsHost", "host": "fw", "port": 8443}}, state_dir=tmp_path, entry_points=[])
        assert isinstance(types["needs_host"], NeedsHost)
        assert (types["needs_host"].host, types["needs_host"].port) == ("fw", 8443)

    def test_config_overrides_an_entry_point_of_the_same_name(self, tmp_path):
        installed = [entry_point("scripted", "no_such_package_anywhere:Scripted")]
        types = load_types({"scripted": {"class": f"{SUPPORT}:Scripted"}}, state_dir=tmp_path, entry_points=installed)
        assert isinstance(types["scripted"], Scripted)

    @pytest.mark.parametrize(
        ("table", "fragments"),
        [
            ({"class": "no_such_package_anywhere:Type"}, ("execution_types.scripted.class", "cannot load")),
            ({"class": f"{SUPPORT}:NoSuchClass"}, ("execution_types.scripted.class", "AttributeError")),
            ({"class": f"{SUPPORT}.Scripted"}, ("execution_types.scripted.class", "must be a dotted path")),
            ({"class": 3}, ("execution_types.scripted.class", "must be a dotted path")),
            ({"class": f"{SUPPORT}:NotAType"}, ("execution_types.scripted", "is not a subclass of ExecutionType")),
            ({"class": f"{SUPPORT}:needs_a_host"}, ("execution_types.scripted", "is not a subclass of ExecutionType")),
            ({"class": f"{SUPPORT}:Misnamed"}, ("execution_types.scripted", "is named 'misnamed', not 'scripted'")),
            ({"class": f"{SUPPORT}:Scripted", "colour": "red"}, ("execution_types.scripted.colour: unknown option",)),
            ({"class": f"{SUPPORT}:Scripted", "timeout": -1}, ("execution_types.scripted.timeout: must be finite seconds > 0",)),
            ({"class": f"{SUPPORT}:Scripted", "timeout": "soon"}, ("execution_types.scripted.timeout",)),
        ],
    )
    def test_every_mistake_is_config_invalid_naming_its_place(self, tmp_path, table, fragments):
        assert_config_invalid(lambda: load_types({"scripted": table}, state_dir=tmp_path, entry_points=[]), *fragments)

    def test_a_table_for_a_type_nobody_installed_is_refused(self, tmp_path):
        assert_config_invalid(
            lambda: load_types({"firewall": {"host": "fw"}}, state_dir=tmp_path, entry_points=[]),
            "execution_types.firewall: no installed type of that name",
        )

    @pytest.mark.parametrize("name", ["Firewall", "fire-wall", "", "x" * 65])
    def test_a_bad_table_name_is_refused(self, tmp_path, name):
        assert_config_invalid(lambda: load_types({name: {}}, state_dir=tmp_path, entry_points=[]), f"execution_types.{name}")

    def test_a_table_that_is_not_a_table_is_refused(self, tmp_path):
        assert_config_invalid(lambda: load_types({"noop": "yes"}, state_dir=tmp_path), "execution_types.noop: must be a table")
        assert_config_invalid(lambda: load_types(["noop"], state_dir=tmp_path), "execution_types: must be a table")  # type: ignore[arg-type]

    def test_a_from_config_that_breaks_is_config_invalid(self, tmp_path):
        """A type's own from_config raising anything uncoded is CONFIG_INVALID naming the table."""
        assert_config_invalid(
            lambda: load_types({"scripted": {"class": f"{SUPPORT}:BrokenConfig"}}, state_dir=tmp_path, entry_points=[]),
            "execution_types.scripted: BrokenConfig.from_config failed: KeyError('oops')",
        )


class TestExecutionSpec:
    def test_one_permanent_child_per_type_with_its_policies_and_infos(self, tmp_path):
        types = load_types({"scripted": {"class": f"{SUPPORT}:Scripted", "timeout": 4.0}}, state_dir=tmp_path, entry_points=[entry_point("noop", f"{Noop.__module__}:Noop")])
        spec, infos = execution_spec(types, parent_path="root/execution")
        assert spec.strategy is Strategy.ONE_FOR_ONE
        assert spec.names == ("noop", "scripted")
        for child in spec.children:
            execution_type = types[child.name]
            assert child.restart is Restart.PERMANENT and child.retry is None
            assert (child.breaker, child.backoff) == (execution_type.breaker, execution_type.backoff)
            assert child.actor.concurrency == execution_type.concurrency
            assert child.kwargs["execution_type"] is execution_type
            assert isinstance(child.kwargs["calls"], KeyCalls)  # one table for every instance of the child
        assert infos == {
            name: TypeInfo(
                name=name,
                path=f"root/execution/{name}",
                timeout=timeout,
                revertible=revertible,
                needs_approval=types[name].needs_approval,
                approval_timeout=3600.0,
                breaker_pause=types[name].breaker.cooldown,
            )
            for name, timeout, revertible in (("noop", 10.0, False), ("scripted", 4.0, True))
        }

    def test_a_type_under_another_name_is_refused(self):
        assert_config_invalid(lambda: execution_spec({"other": Noop()}, parent_path="x"), "execution_types.other: holds the type named 'noop'")


class Fragile(Scripted):
    """Opens its breaker after two uncertain answers, for a long cooldown."""

    name = "fragile"
    breaker = BreakerPolicy(threshold=2, window=60.0, cooldown=600.0, max_cooldown=600.0)


async def breaker_opened(supervisor, name: str) -> None:
    """Until the supervisor describes `name`'s breaker as open (bounded)."""
    with anyio.fail_after(5):
        while True:
            node = await supervisor.ask(Describe())
            (child,) = [c for c in node.children if c.path.endswith(f"/{name}")]
            if child.breaker and child.breaker.startswith("open"):
                return
            await anyio.sleep(0.01)


@pytest.mark.anyio
class TestUnderASupervisor:
    async def test_the_tree_answers_and_a_failing_dependency_opens_the_breaker(self, tick):
        """Under a Supervisor from execution_spec: the types answer at their
        TypeInfo paths; two uncertain applies of `fragile` open its breaker,
        so the next ask fails fast with BREAKER_OPEN, and `noop` goes on."""
        fragile = Fragile()
        spec, infos = execution_spec({"fragile": fragile, "noop": Noop()}, parent_path="execution")
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="execution", kwargs={"spec": spec})
            noop = system.lookup(infos["noop"].path)
            ref = system.lookup(infos["fragile"].path)
            assert await noop.ask(Apply(intent("noop"), "acme/i-1")) == Effect(Outcome.APPLIED)
            assert await noop.ask(Reconcile(intent("noop"), "acme/i-1")) is Reconciled.APPLIED
            for n in range(2):
                effect = await ref.ask(Apply(intent("fragile", do="raise", intent_id=f"i-{n}"), f"acme/i-{n}"), timeout=100 * tick)
                assert effect.outcome is Outcome.UNCERTAIN
            # The crash reaches the supervisor as a message of its own: once it has counted both,
            await breaker_opened(system.lookup("execution"), "fragile")
            with pytest.raises(BreakerOpen):
                await ref.ask(Apply(intent("fragile", intent_id="i-9"), "acme/i-9"), timeout=100 * tick)
            assert await noop.ask(Apply(intent("noop", intent_id="i-2"), "acme/i-2")) == Effect(Outcome.APPLIED)
        assert [call[1] for call in fragile.calls] == ["i-0", "i-1"]

    async def test_a_declared_failure_does_not_count_towards_the_breaker(self, tick):
        """FAILED is the effector's answer, not a failing dependency: many of them keep the breaker closed."""
        spec, infos = execution_spec({"fragile": Fragile()}, parent_path="execution")
        async with ActorSystem() as system:
            await system.spawn(Supervisor, name="execution", kwargs={"spec": spec})
            ref = system.lookup(infos["fragile"].path)
            for n in range(5):
                effect = await ref.ask(Apply(intent("fragile", do="fail", intent_id=f"i-{n}"), f"acme/i-{n}"), timeout=100 * tick)
                assert effect.outcome is Outcome.FAILED
            assert await ref.ask(Apply(intent("fragile"), "acme/i-1"), timeout=100 * tick) == Effect(Outcome.APPLIED)


def test_any_table_may_set_the_types_timeout_and_concurrency(tmp_path):
    types = load_types({"ledger": {"timeout": 2.5, "concurrency": 3}}, state_dir=tmp_path)
    assert (types["ledger"].timeout, types["ledger"].concurrency) == (2.5, 3)
    assert (types["noop"].timeout, types["noop"].concurrency) == (10.0, 16)  # the class's, untouched
    with pytest.raises(InvalidInput) as caught:
        load_types({"noop": {"timeout": -1}}, state_dir=tmp_path)
    assert caught.value.code is ReasonCode.CONFIG_INVALID and "execution_types.noop.timeout" in caught.value.detail


def test_any_table_may_ask_for_approval_and_the_intents_learn_it(tmp_path):
    """`approval` and `approval_timeout` in a type's table reach TypeInfo:
    its `needs_approval` is the type's (by default, the setting)."""
    types = load_types({"ledger": {"approval": True, "approval_timeout": 90}}, state_dir=tmp_path)
    _, infos = execution_spec(types, parent_path="execution")
    record = IntentRecord(id="i", tenant="t", type="ledger", created=10.0, deadline=1000.0)
    assert infos["ledger"].asks_approval(record) == (True, "") and infos["ledger"].approval_deadline(record) == 100.0
    assert infos["noop"].asks_approval(record) == (False, "")
    for bad in ({"approval": "yes"}, {"approval_timeout": -5}):
        with pytest.raises(InvalidInput) as caught:
            load_types({"noop": bad}, state_dir=tmp_path)
        assert caught.value.code is ReasonCode.CONFIG_INVALID and "execution_types.noop.approval" in caught.value.detail


def test_an_intent_waits_one_cooldown_for_an_open_breaker_unless_its_type_says_not_to():
    class Waits(Noop):
        name = "waits"
        breaker = BreakerPolicy(threshold=2, window=60.0, cooldown=7.0)

    class Hurries(Waits):
        name = "hurries"
        wait_for_breaker = False

    class Unguarded(Noop):
        name = "unguarded"
        breaker = None

    _, infos = execution_spec({t.name: t for t in (Waits(), Hurries(), Unguarded())}, parent_path="execution")
    assert {name: info.breaker_pause for name, info in infos.items()} == {"waits": 7.0, "hurries": 0.0, "unguarded": 0.0}
