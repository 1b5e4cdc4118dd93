"""Message classes: frozen attrs classes with a stable, unique wire name."""

from __future__ import annotations

import attrs
import pytest

from exoarmur.runtime import InvalidInput, MessageRegistry, ReasonCode, TimeoutCategory, message, wire_name
from exoarmur.runtime.envelope import Envelope


class TestMessage:
    def test_decorated_class_is_frozen_attrs_with_its_wire_name(self):
        """@message makes a frozen attrs class and records its wire name and category."""
        registry = MessageRegistry()

        @message("test.msg.ping", timeout=TimeoutCategory.KV_GET, registry=registry)
        class Ping:
            text: str

        assert attrs.has(Ping)
        assert wire_name(Ping) == "test.msg.ping"
        assert Ping.__timeout__ is TimeoutCategory.KV_GET
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            Ping("a").text = "b"  # type: ignore[misc]
        assert registry.lookup("test.msg.ping") is Ping

    def test_duplicate_wire_name_is_an_error_at_definition_time(self):
        """Two classes cannot share a wire name."""
        registry = MessageRegistry()

        @message("test.msg.dup", registry=registry)
        class One:
            pass

        with pytest.raises(InvalidInput):

            @message("test.msg.dup", registry=registry)
            class Two:
                pass

    @pytest.mark.parametrize("bad", ["", "Upper.case", "trailing.", ".lead", "sp ace", "a..b", "name\n"])
    def test_malformed_wire_name_is_refused(self, bad):
        """Wire names are dotted lowercase identifiers."""
        with pytest.raises(InvalidInput):
            message(bad, registry=MessageRegistry())(type("M", (), {}))

    def test_mutable_attrs_class_is_refused(self):
        """A message must be frozen."""

        @attrs.define
        class Mutable:
            x: int

        with pytest.raises(InvalidInput):
            message("test.msg.mutable", registry=MessageRegistry())(Mutable)

    @pytest.mark.parametrize("bad", [2.5, "kv_get", "KV_GET", None, ReasonCode.TIMEOUT_KV_GET])
    def test_a_timeout_that_is_not_a_category_is_refused_at_definition(self, bad):
        """`timeout=2.5` or a string would fail only at the first send (a bare
        KeyError): it is refused here, coded, and nothing is registered."""
        registry = MessageRegistry()
        with pytest.raises(InvalidInput) as caught:

            @message("test.msg.bad_timeout", timeout=bad, registry=registry)
            class Bad:
                pass

        assert caught.value.code is ReasonCode.ENVELOPE_INVALID
        assert "TimeoutCategory" in caught.value.detail
        assert "test.msg.bad_timeout" not in registry

    def test_wire_name_of_a_plain_class_is_envelope_invalid(self):
        """Only @message classes have wire names."""
        with pytest.raises(InvalidInput):
            wire_name(int)


class TestEnvelope:
    def test_the_field_orders_the_positional_builders_rely_on(self):
        """runtime/ref.py's outgoing_envelope and runtime/system.py's failure
        build these tuples positionally: a field added or moved must move there
        too, and this fails first."""
        from exoarmur.runtime import AuditEvent

        assert Envelope._fields == (
            "message", "deadline", "tenant", "sender", "correlation_id", "trace_id", "idempotency_key", "attempt",
            "reply_to",
        )  # fmt: skip
        assert AuditEvent._fields == (
            "kind", "code", "at", "path", "message", "tenant", "sender", "correlation_id", "trace_id",
            "idempotency_key", "attempt", "detail",
        )  # fmt: skip

    def test_envelope_is_immutable_and_requires_a_deadline(self):
        """An Envelope cannot be changed and cannot be built without a deadline."""
        env = Envelope("m", 10.0)
        with pytest.raises(AttributeError):
            env.deadline = 11.0  # type: ignore[misc]
        with pytest.raises(TypeError):
            Envelope("m")  # type: ignore[call-arg]
        assert env._replace(attempt=2).attempt == 2
