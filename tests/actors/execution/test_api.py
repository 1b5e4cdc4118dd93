"""The plug-in API: a type's settings are checked when its class is defined,
`revertible` follows `revert`, and `from_config` names the option it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from exoarmur.actors.execution import ExecutionError, ExecutionType, Ledger, Noop, Reconciled
from exoarmur.runtime import InvalidInput, ReasonCode
from exoarmur.supervisors import BreakerPolicy
from tests.actors.execution.support import NeedsHost, OneWay, Scripted


def define(**attributes):
    """A subclass of ExecutionType with `attributes` and working methods."""

    async def apply(self, intent, key):
        return None

    async def reconcile(self, intent, key):
        return Reconciled.APPLIED

    return type("Probe", (ExecutionType,), {"apply": apply, "reconcile": reconcile, **attributes})


class TestDefinition:
    @pytest.mark.parametrize("name", ["Ledger", "1st", "with-dash", "a" * 65, "noop\n", " noop", 3])
    def test_a_bad_name_is_refused_at_definition(self, name):
        """Names are lowercase [a-z][a-z0-9_]{0,63}, nothing else (not even a trailing newline)."""
        with pytest.raises(ValueError, match=r"Probe\.name"):
            define(name=name)

    @pytest.mark.parametrize("name", ["a", "noop", "block_ip4", "a" * 64])
    def test_a_good_name_is_taken(self, name):
        """The pattern's edges hold."""
        assert define(name=name).name == name

    @pytest.mark.parametrize("reason", ["BREAKER_OPEN", "EXECUTION_FAILED", "TIMEOUT_EXECUTION_INTENT"])
    def test_a_reason_that_is_a_reason_code_is_refused(self, reason):
        """A type's own reasons never collide with the kernel's codes."""
        with pytest.raises(ValueError, match="is a ReasonCode"):
            define(name="probe", reasons=frozenset({"TARGET_GONE", reason}))

    @pytest.mark.parametrize("reason", ["target_gone", "9LIVES", "", "A-B", "X" * 65])
    def test_a_reason_that_is_not_upper_snake_is_refused(self, reason):
        with pytest.raises(ValueError, match="UPPER_SNAKE"):
            define(name="probe", reasons=frozenset({reason}))

    def test_reasons_given_as_a_set_become_a_frozenset(self):
        assert define(name="probe", reasons={"TARGET_GONE"}).reasons == frozenset({"TARGET_GONE"})

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("timeout", 0),
            ("timeout", -1.0),
            ("timeout", float("inf")),
            ("timeout", float("nan")),
            ("timeout", True),
            ("timeout", "10"),
            ("concurrency", 0),
            ("concurrency", 1.5),
            ("concurrency", True),
            ("breaker", "open"),
            ("backoff", None),
            ("reasons", ["TARGET_GONE"]),
            ("approval", "yes"),
            ("approval", 1),
            ("approval_timeout", 0),
            ("approval_timeout", float("inf")),
            ("approval_timeout", False),
            ("wait_for_breaker", "no"),
        ],
    )
    def test_bad_settings_are_refused_naming_the_field(self, field, value):
        with pytest.raises(ValueError, match=rf"Probe\.{field}"):
            define(name="probe", **{field: value})

    def test_a_named_type_must_define_apply_and_reconcile(self):
        """A concrete type without reconcile cannot exist: it could not answer after a crash."""

        async def apply(self, intent, key):
            return None

        with pytest.raises(TypeError, match="defines apply and reconcile"):
            type("Probe", (ExecutionType,), {"name": "probe", "apply": apply})

    def test_an_unnamed_base_may_leave_them_out(self):
        """An abstract helper base (no name) is allowed; its subclasses are checked."""
        base = type("Base", (ExecutionType,), {})
        assert base.name == ""

    def test_methods_must_be_async(self):
        def apply(self, intent, key):
            return None

        with pytest.raises(TypeError, match="apply must be an async def"):
            type("Probe", (ExecutionType,), {"name": "probe", "apply": apply})

    def test_revertible_is_whether_the_class_defines_revert(self):
        """Scripted and Ledger define revert; OneWay and Noop do not; a subclass inherits it."""
        assert (Scripted.revertible, Ledger.revertible) == (True, True)
        assert (OneWay.revertible, Noop.revertible) == (False, False)
        assert type("Sub", (Scripted,), {"name": "sub"}).revertible is True

    def test_the_defaults_are_sane(self):
        """Every setting has a default a type can live with: a breaker, a bound, a timeout."""
        probe = define(name="probe")
        assert probe.timeout == 10.0 and probe.concurrency == 16 and probe.reasons == frozenset()
        assert isinstance(probe.breaker, BreakerPolicy)
        assert probe.backoff.max_delay > 0


class TestExecutionError:
    def test_it_carries_its_reason_and_detail(self):
        error = ExecutionError("TARGET_GONE", "no such host")
        assert (error.reason, error.detail, str(error)) == ("TARGET_GONE", "no such host", "TARGET_GONE: no such host")
        assert str(ExecutionError("TARGET_GONE")) == "TARGET_GONE"


class TestFromConfig:
    def test_the_options_are_the_constructors_keywords(self, tmp_path):
        built = NeedsHost.from_config({"host": "fw.local", "port": 8443}, state_dir=tmp_path)
        assert (built.host, built.port) == ("fw.local", 8443)

    @pytest.mark.parametrize(
        ("options", "named"),
        [
            ({"host": "fw", "colour": "red"}, "execution_types.needs_host.colour: unknown option"),
            ({}, "execution_types.needs_host.host: required"),
            ({"host": "fw", "port": 0}, "execution_types.needs_host: ValueError('port out of range: 0')"),
            ({"port": 70000, "host": "fw"}, "execution_types.needs_host:"),
        ],
    )
    def test_a_bad_option_is_config_invalid_naming_it(self, tmp_path, options, named):
        with pytest.raises(InvalidInput) as info:
            NeedsHost.from_config(options, state_dir=tmp_path)
        assert info.value.code is ReasonCode.CONFIG_INVALID
        assert named in info.value.detail

    def test_a_single_bad_option_is_named_by_its_key(self, tmp_path):
        """With one option, the constructor's refusal can only be about it."""

        def __init__(self, *, port: int = 443) -> None:
            if not 0 < port < 65536:
                raise ValueError("out of range")

        probe = define(name="probe", __init__=__init__)
        with pytest.raises(InvalidInput, match=r"execution_types\.probe\.port: ValueError\('out of range'\)"):
            probe.from_config({"port": 0}, state_dir=tmp_path)

    def test_a_constructor_that_accepts_anything_gets_every_option(self, tmp_path):
        """**options: no option is unknown."""

        def __init__(self, **options) -> None:
            self.options = options

        probe = define(name="probe", __init__=__init__)
        assert probe.from_config({"a": 1, "b": 2}, state_dir=tmp_path).options == {"a": 1, "b": 2}

    def test_the_ledger_resolves_its_path_against_the_state_directory(self, tmp_path):
        assert Ledger.from_config({}, state_dir=tmp_path).path == tmp_path / "ledger.jsonl"
        assert Ledger.from_config({"path": "sub/l.jsonl"}, state_dir=tmp_path).path == tmp_path / "sub" / "l.jsonl"
        assert Ledger.from_config({"path": "/abs/l.jsonl"}, state_dir=tmp_path).path == Path("/abs/l.jsonl")

    @pytest.mark.parametrize("path", ["", 3, None])
    def test_the_ledger_refuses_a_path_that_is_not_a_string(self, tmp_path, path):
        with pytest.raises(InvalidInput, match=r"execution_types\.ledger\.path"):
            Ledger.from_config({"path": path}, state_dir=tmp_path)
