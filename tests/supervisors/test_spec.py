"""Child specs, restart types and strategies: OTP's semantics as pure functions and
records checked when built."""

from __future__ import annotations

import attrs
import pytest

from exoarmur.runtime import Actor
from exoarmur.supervisors.backoff import NO_BACKOFF, BackoffPolicy
from exoarmur.supervisors.breaker import BreakerPolicy
from exoarmur.supervisors.intensity import RestartIntensity
from exoarmur.supervisors.spec import (
    BRUTAL,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorSpec,
    should_restart,
    shutdown_order,
    to_restart,
)
from tests.supervisors.support import NON_FINITE, NOT_NUMBERS, raises_config_invalid


class Worker(Actor):
    def __init__(self, *, size: int = 1, label: str = "") -> None:
        self.size = size
        self.label = label


class NeedsUrl(Actor):
    def __init__(self, *, url: str) -> None:
        self.url = url


class Plain(Actor):
    pass


CHILDREN = ["a", "b", "c", "d"]


class TestRestart:
    def test_values_are_otps_names(self):
        """permanent, transient, temporary, by value."""
        assert [r.value for r in Restart] == ["permanent", "transient", "temporary"]

    def test_is_built_from_its_value(self):
        """A config string gives the member."""
        assert Restart("transient") is Restart.TRANSIENT


class TestShouldRestart:
    @pytest.mark.parametrize(
        ("restart", "abnormal", "expected"),
        [
            (Restart.PERMANENT, False, True),
            (Restart.PERMANENT, True, True),
            (Restart.TRANSIENT, False, False),
            (Restart.TRANSIENT, True, True),
            (Restart.TEMPORARY, False, False),
            (Restart.TEMPORARY, True, False),
        ],
    )
    def test_follows_otp(self, restart, abnormal, expected):
        """permanent: always; transient: only after an abnormal exit; temporary: never."""
        assert should_restart(restart, abnormal=abnormal) is expected

    def test_accepts_the_value_string(self):
        """A restart type read from config as a string works the same."""
        assert should_restart("transient", abnormal=True) is True  # type: ignore[arg-type]

    def test_abnormal_is_keyword_only(self):
        """The exit kind is named at the call site."""
        with pytest.raises(TypeError):
            should_restart(Restart.PERMANENT, True)  # type: ignore[misc]


class TestStrategy:
    def test_values_are_otps_names(self):
        """one_for_one, one_for_all, rest_for_one, by value."""
        assert [s.value for s in Strategy] == ["one_for_one", "one_for_all", "rest_for_one"]


class TestToRestart:
    @pytest.mark.parametrize("failed", CHILDREN)
    def test_one_for_one_restarts_only_the_failed_child(self, failed):
        """one_for_one: exactly [failed]."""
        assert to_restart(Strategy.ONE_FOR_ONE, children=CHILDREN, failed=failed) == [failed]

    @pytest.mark.parametrize("failed", CHILDREN)
    def test_one_for_all_restarts_every_child_in_start_order(self, failed):
        """one_for_all: all children, in start order, whichever failed."""
        assert to_restart(Strategy.ONE_FOR_ALL, children=CHILDREN, failed=failed) == CHILDREN

    @pytest.mark.parametrize(
        ("failed", "expected"),
        [("a", ["a", "b", "c", "d"]), ("b", ["b", "c", "d"]), ("c", ["c", "d"]), ("d", ["d"])],
    )
    def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(
        self, failed, expected
    ):
        """rest_for_one: the failed child and every later one, in start order."""
        assert to_restart(Strategy.REST_FOR_ONE, children=CHILDREN, failed=failed) == expected

    @pytest.mark.parametrize("strategy", list(Strategy))
    def test_a_single_child_restarts_alone(self, strategy):
        """With one child every strategy restarts just it."""
        assert to_restart(strategy, children=["only"], failed="only") == ["only"]

    def test_accepts_the_strategy_value_string(self):
        """A strategy read from config as a string works the same."""
        restarted = to_restart("rest_for_one", children=CHILDREN, failed="c")  # type: ignore
        assert restarted == ["c", "d"]

    def test_unknown_strategy_is_a_value_error(self):
        """A string that is no strategy is refused."""
        with pytest.raises(ValueError):
            to_restart("simple_one_for_one", children=CHILDREN, failed="a")  # type: ignore

    def test_failed_child_must_be_one_of_the_children(self):
        """Restarting a child the supervisor does not have is a caller bug."""
        with pytest.raises(ValueError, match="'x' is not one of the children"):
            to_restart(Strategy.ONE_FOR_ONE, children=CHILDREN, failed="x")

    def test_duplicate_children_are_a_value_error(self):
        """Names identify children, so they must be unique."""
        with pytest.raises(ValueError, match="duplicate"):
            to_restart(Strategy.ONE_FOR_ALL, children=["a", "b", "a"], failed="b")

    def test_a_string_is_not_a_list_of_children(self):
        """children="abc" is a mistake, not three children a, b, c."""
        with pytest.raises(TypeError):
            to_restart(Strategy.ONE_FOR_ALL, children="abc", failed="a")

    def test_returns_a_fresh_list(self):
        """The caller may change the result without changing its input."""
        children = list(CHILDREN)
        to_restart(Strategy.ONE_FOR_ALL, children=children, failed="a").append("e")
        assert children == CHILDREN

    def test_accepts_any_sequence(self):
        """A tuple of names (e.g. SupervisorSpec.names) works like a list."""
        restarted = to_restart(Strategy.REST_FOR_ONE, children=tuple(CHILDREN), failed="b")
        assert restarted == ["b", "c", "d"]

    def test_children_and_failed_are_keyword_only(self):
        """Only the strategy is positional."""
        with pytest.raises(TypeError):
            to_restart(Strategy.ONE_FOR_ONE, CHILDREN, "a")  # type: ignore[misc]


class TestShutdownOrder:
    def test_is_the_reverse_of_start_order(self):
        """Children are stopped last-started first."""
        assert shutdown_order(["a", "b", "c"]) == ["c", "b", "a"]

    def test_of_a_rest_for_one_restart(self):
        """rest_for_one after "b" fails: stop d, c, b, then start b, c, d."""
        affected = to_restart(Strategy.REST_FOR_ONE, children=CHILDREN, failed="b")
        assert shutdown_order(affected) == ["d", "c", "b"]

    def test_of_nothing_is_nothing(self):
        """No children, nothing to stop."""
        assert shutdown_order([]) == []


class TestChildSpec:
    def test_defaults(self):
        """permanent, 5 s shutdown, no backoff, no breaker, no tenant, no kwargs."""
        spec = ChildSpec("db", Worker)
        assert (spec.name, spec.actor, dict(spec.kwargs)) == ("db", Worker, {})
        assert spec.restart is Restart.PERMANENT
        assert spec.shutdown == 5.0
        assert spec.backoff is NO_BACKOFF
        assert spec.breaker is None and spec.tenant is None

    def test_holds_every_option(self):
        """Every option given is kept."""
        backoff, breaker = BackoffPolicy(), BreakerPolicy()
        spec = ChildSpec(
            "kv-bucket_1.v2", Worker, kwargs={"size": 3}, restart=Restart.TEMPORARY, shutdown=0.25,
            backoff=backoff, breaker=breaker, tenant="acme",
        )  # fmt: skip
        assert (spec.restart, spec.shutdown, spec.backoff, spec.breaker, spec.tenant) == (
            Restart.TEMPORARY, 0.25, backoff, breaker, "acme",
        )  # fmt: skip
        assert dict(spec.kwargs) == {"size": 3}

    def test_options_are_keyword_only(self):
        """Only the name and the actor class are positional."""
        with pytest.raises(TypeError):
            ChildSpec("db", Worker, {"size": 1})  # type: ignore[misc]

    @pytest.mark.parametrize("bad", ["", "a/b", "a b", "tenant:1", "é", "db\n", None, 1, b"db"])
    def test_name_must_be_a_path_segment(self, bad):
        """Names are non-empty [A-Za-z0-9_.-]+ strings (one segment of an actor path)."""
        with raises_config_invalid("ChildSpec.name"):
            ChildSpec(bad, Worker)

    @pytest.mark.parametrize("bad", [object, int, Worker(), "Worker", lambda: Worker(), None])
    def test_actor_must_be_an_actor_subclass(self, bad):
        """The actor is a class deriving from runtime.Actor, not an instance or a factory."""
        with raises_config_invalid("ChildSpec.actor", "runtime.Actor"):
            ChildSpec("db", bad)

    def test_kwargs_are_a_frozen_copy(self):
        """Changing the mapping given does not change the spec, and the spec's is read-only."""
        given = {"size": 2}
        spec = ChildSpec("db", Worker, kwargs=given)
        given["size"] = 99
        assert spec.kwargs["size"] == 2
        with pytest.raises(TypeError):
            spec.kwargs["size"] = 3  # type: ignore[index]

    @pytest.mark.parametrize("bad", [[("size", 1)], "size=1", None, 1])
    def test_kwargs_must_be_a_mapping(self, bad):
        """Keyword arguments come as a mapping."""
        with raises_config_invalid("ChildSpec.kwargs", "mapping"):
            ChildSpec("db", Worker, kwargs=bad)

    @pytest.mark.parametrize("bad", [{1: 2}, {"not a name": 1}, {"": 1}])
    def test_kwargs_keys_must_be_identifiers(self, bad):
        """Keys become keyword names, so they must be identifiers."""
        with raises_config_invalid("ChildSpec.kwargs", "identifiers"):
            ChildSpec("db", Worker, kwargs=bad)

    def test_kwargs_the_actor_would_refuse_are_rejected_at_construction(self):
        """A misspelt keyword fails when the spec is built, not at the first (re)start."""
        with raises_config_invalid("ChildSpec.kwargs", "Worker()", "sise"):
            ChildSpec("db", Worker, kwargs={"sise": 3})

    def test_a_missing_required_keyword_is_rejected_at_construction(self):
        """An actor whose __init__ needs an argument the spec does not give is refused."""
        with raises_config_invalid("ChildSpec.kwargs", "NeedsUrl()", "url"):
            ChildSpec("nats", NeedsUrl)
        assert ChildSpec("nats", NeedsUrl, kwargs={"url": "nats://x"}).kwargs["url"] == "nats://x"

    def test_an_actor_without_init_takes_no_kwargs(self):
        """An actor with the default __init__ accepts only empty kwargs."""
        assert ChildSpec("p", Plain).kwargs == {}
        with raises_config_invalid("ChildSpec.kwargs", "Plain()"):
            ChildSpec("p", Plain, kwargs={"x": 1})

    def test_restart_accepts_its_value_string(self):
        """restart="transient" from config gives Restart.TRANSIENT."""
        spec = ChildSpec("db", Worker, restart="transient")  # type: ignore[arg-type]
        assert spec.restart is Restart.TRANSIENT

    @pytest.mark.parametrize("bad", ["Permanent", "always", "", None, 1, ["permanent"]])
    def test_restart_must_be_a_restart_type(self, bad):
        """Anything but a Restart or its exact value is CONFIG_INVALID, listing the choices."""
        with raises_config_invalid("ChildSpec.restart", "permanent, transient, temporary"):
            ChildSpec("db", Worker, restart=bad)

    @pytest.mark.parametrize(
        ("given", "kept"),
        [(0.001, 0.001), (30, 30.0), (BRUTAL, BRUTAL), ("brutal_kill", BRUTAL), ("brutal", BRUTAL)],
    )
    def test_shutdown_is_positive_seconds_or_brutal(self, given, kept):
        """Finite seconds > 0 (kept as float), or BRUTAL (also as "brutal_kill" / "brutal")."""
        assert ChildSpec("db", Worker, shutdown=given).shutdown == kept

    @pytest.mark.parametrize("bad", [0, 0.0, -1.0, "5", "infinity", *NON_FINITE, *NOT_NUMBERS])
    def test_shutdown_has_no_zero_negative_or_infinite_wait(self, bad):
        """Zero, negative, NaN, inf (OTP's `infinity`), bools and strings are CONFIG_INVALID."""
        with raises_config_invalid("ChildSpec.shutdown"):
            ChildSpec("db", Worker, shutdown=bad)

    @pytest.mark.parametrize("bad", [None, {"initial": 1.0}, 1.0])
    def test_backoff_must_be_a_backoff_policy(self, bad):
        """The backoff is a BackoffPolicy (NO_BACKOFF for none)."""
        with raises_config_invalid("ChildSpec.backoff", "BackoffPolicy"):
            ChildSpec("db", Worker, backoff=bad)

    @pytest.mark.parametrize("bad", [{"threshold": 1}, True, BackoffPolicy()])
    def test_breaker_must_be_a_breaker_policy_or_none(self, bad):
        """The breaker is a BreakerPolicy, or None for no breaker."""
        with raises_config_invalid("ChildSpec.breaker", "BreakerPolicy"):
            ChildSpec("db", Worker, breaker=bad)

    @pytest.mark.parametrize("bad", ["", 1, b"acme"])
    def test_tenant_must_be_a_non_empty_string_or_none(self, bad):
        """A tenant is named by a non-empty string."""
        with raises_config_invalid("ChildSpec.tenant"):
            ChildSpec("db", Worker, tenant=bad)

    def test_is_frozen_hashable_and_compared_by_value(self):
        """Equal specs are equal and hash alike; fields cannot be changed."""
        a = ChildSpec("db", Worker, kwargs={"size": 2}, shutdown=1.0)
        b = ChildSpec("db", Worker, kwargs={"size": 2}, shutdown=1)
        assert a == b and hash(a) == hash(b)
        assert a != ChildSpec("db", Worker, kwargs={"size": 3}, shutdown=1.0)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            a.name = "other"  # type: ignore[misc]

    def test_evolve_is_checked_too(self):
        """attrs.evolve goes through the same checks as construction."""
        with raises_config_invalid("ChildSpec.shutdown"):
            attrs.evolve(ChildSpec("db", Worker), shutdown=-1.0)


def child(name: str, **options) -> ChildSpec:
    return ChildSpec(name, Worker, **options)


class TestSupervisorSpec:
    def test_defaults(self):
        """Intensity 3 in 5 s and no children (children may be added at run time)."""
        spec = SupervisorSpec(Strategy.ONE_FOR_ONE)
        assert spec.intensity == RestartIntensity(3, 5.0)
        assert spec.children == () and spec.names == ()

    def test_keeps_children_in_start_order_as_a_tuple(self):
        """A list of children becomes a tuple in the same order; names follows it."""
        spec = SupervisorSpec(Strategy.REST_FOR_ONE, children=[child("b"), child("a"), child("c")])
        assert isinstance(spec.children, tuple)
        assert spec.names == ("b", "a", "c")

    def test_strategy_accepts_its_value_string(self):
        """strategy="one_for_all" from config gives Strategy.ONE_FOR_ALL."""
        spec = SupervisorSpec("one_for_all")  # type: ignore[arg-type]
        assert spec.strategy is Strategy.ONE_FOR_ALL

    @pytest.mark.parametrize("bad", ["simple_one_for_one", "ONE_FOR_ONE", "", None, 1])
    def test_unknown_strategy_is_rejected(self, bad):
        """Anything but a Strategy or its value is CONFIG_INVALID, listing the choices."""
        choices = "one_for_one, one_for_all, rest_for_one"
        with raises_config_invalid("SupervisorSpec.strategy", choices):
            SupervisorSpec(bad)

    def test_duplicate_child_names_are_rejected(self):
        """Two children with one name are CONFIG_INVALID, naming the duplicate."""
        with raises_config_invalid("SupervisorSpec.children", "duplicate child name 'db'"):
            SupervisorSpec(
                Strategy.ONE_FOR_ONE,
                children=[child("db"), child("kv"), child("db", restart="temporary")],
            )

    @pytest.mark.parametrize("bad", [["db"], [None], [Worker]])
    def test_children_must_be_child_specs(self, bad):
        """Each child is a ChildSpec."""
        with raises_config_invalid("SupervisorSpec.children", "ChildSpec"):
            SupervisorSpec(Strategy.ONE_FOR_ONE, children=bad)

    @pytest.mark.parametrize("bad", ["db", {"db": None}, None, 3])
    def test_children_must_be_a_sequence(self, bad):
        """A string, a mapping or a non-iterable is not a list of children."""
        with raises_config_invalid("SupervisorSpec.children", "sequence"):
            SupervisorSpec(Strategy.ONE_FOR_ONE, children=bad)

    @pytest.mark.parametrize("bad", [(3, 5.0), None, {"max_restarts": 3}])
    def test_intensity_must_be_a_restart_intensity(self, bad):
        """The intensity is a RestartIntensity (itself checked: no negative counts)."""
        with raises_config_invalid("SupervisorSpec.intensity", "RestartIntensity"):
            SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=bad)

    def test_negative_intensity_is_rejected_when_built(self):
        """A negative restart count never reaches a supervisor spec."""
        with raises_config_invalid("RestartIntensity.max_restarts"):
            SupervisorSpec(Strategy.ONE_FOR_ONE, intensity=RestartIntensity(-1, 5.0))

    def test_intensity_and_children_are_keyword_only(self):
        """Only the strategy is positional."""
        with pytest.raises(TypeError):
            SupervisorSpec(Strategy.ONE_FOR_ONE, RestartIntensity(1, 1.0))  # type: ignore[misc]

    def test_is_frozen(self):
        """A built spec cannot be changed."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            SupervisorSpec(Strategy.ONE_FOR_ONE).children = ()  # type: ignore[misc]
