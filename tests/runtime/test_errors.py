"""Reason codes and coded errors: one code per error, the right builtin base, stable values."""

from __future__ import annotations

import pickle

import pytest

from exoarmur.runtime import (
    ActorCrashed,
    ActorNotFound,
    DeadlineExceeded,
    ExoarmurError,
    InvalidInput,
    Overloaded,
    ReasonCode,
    TenantMismatch,
    error_for,
)
from exoarmur.runtime.codes import TIMEOUT_CODES

REQUIRED = {
    "TIMEOUT_NATS_CONNECT", "TIMEOUT_NATS_PUBLISH", "TIMEOUT_NATS_SUBSCRIBE",
    "TIMEOUT_NATS_STREAM_CREATE", "TIMEOUT_KV_CREATE", "TIMEOUT_KV_GET", "TIMEOUT_KV_PUT",
    "TIMEOUT_KV_DELETE", "TIMEOUT_EXECUTION_INTENT", "TIMEOUT_EXECUTION_CONTAINMENT",
    "TIMEOUT_EXECUTION_EXPIRATION", "TIMEOUT_APPROVAL_CHECK", "TIMEOUT_APPROVAL_GRANT",
    "TIMEOUT_REPLAY_PROCESSING", "TIMEOUT_REPLAY_VALIDATION", "TIMEOUT_API_REQUEST",
    "TIMEOUT_API_VALIDATION", "DEADLINE_EXCEEDED", "OVERLOAD_MAILBOX_FULL", "RATE_LIMITED",
    "BREAKER_OPEN", "RETRY_EXHAUSTED", "ACTOR_CRASHED", "ACTOR_NOT_FOUND", "ACTOR_STOPPED",
    "ENVELOPE_INVALID", "TENANT_MISMATCH", "DUPLICATE_SUPPRESSED", "SHUTTING_DOWN",
}  # fmt: skip


class TestReasonCode:
    def test_every_required_code_exists_with_its_own_name_as_value(self):
        """Every documented code (the timeout categories' included) exists, value == name."""
        for name in REQUIRED:
            assert ReasonCode[name].value == name

    def test_codes_serialise_as_plain_strings(self):
        """A code is a str: it serialises as its value, never a class name."""
        assert f"{ReasonCode.BREAKER_OPEN}" == "BREAKER_OPEN"
        assert ReasonCode("KV_CONFLICT") is ReasonCode.KV_CONFLICT


class TestErrors:
    @pytest.mark.parametrize("code", list(ReasonCode))
    def test_every_code_builds_exactly_one_error_class_carrying_it(self, code):
        """error_for gives, for each code, an ExoarmurError with that code."""
        error = error_for(code, "detail")
        assert isinstance(error, ExoarmurError)
        assert error.code is code
        assert str(error) == f"{code}: detail"

    @pytest.mark.parametrize("code", sorted(TIMEOUT_CODES))
    def test_timeout_codes_are_timeout_errors(self, code):
        """Every TIMEOUT_* code and DEADLINE_EXCEEDED raise a TimeoutError subclass."""
        error = error_for(code)
        assert isinstance(error, DeadlineExceeded)
        assert isinstance(error, TimeoutError)

    def test_errors_subclass_the_builtin_they_resemble(self):
        """Not-found is a LookupError, invalid input a ValueError, crash a RuntimeError."""
        assert isinstance(error_for(ReasonCode.ACTOR_NOT_FOUND), LookupError)
        assert isinstance(error_for(ReasonCode.ENVELOPE_INVALID), ValueError)
        assert isinstance(error_for(ReasonCode.ACTOR_CRASHED), RuntimeError)
        assert isinstance(error_for(ReasonCode.TENANT_MISMATCH), PermissionError)
        assert isinstance(error_for(ReasonCode.BREAKER_OPEN), ConnectionError)

    def test_an_error_refuses_a_code_outside_its_family(self):
        """A class only carries its own codes: Overloaded cannot say ACTOR_CRASHED."""
        with pytest.raises(ValueError):
            Overloaded(ReasonCode.ACTOR_CRASHED)
        with pytest.raises(ValueError):
            ActorNotFound("NOT_A_CODE")  # type: ignore[arg-type]

    def test_errors_pickle_with_their_code(self):
        """An error survives pickling (e.g. across a process boundary) with code and detail."""
        for error in (ActorCrashed(ReasonCode.ACTOR_CRASHED, "x"), TenantMismatch(ReasonCode.TENANT_MISMATCH)):
            back = pickle.loads(pickle.dumps(error))
            assert (type(back), back.code, back.detail) == (type(error), error.code, error.detail)

    def test_one_root_for_every_family(self):
        """Every coded error is caught by `except ExoarmurError`."""
        for code in ReasonCode:
            with pytest.raises(ExoarmurError):
                raise error_for(code)
        assert issubclass(InvalidInput, ExoarmurError)
