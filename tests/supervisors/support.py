"""Helpers shared by the supervisors/ tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from exoarmur.runtime import InvalidInput, ReasonCode


@contextlib.contextmanager
def raises_config_invalid(*fragments: str) -> Iterator[pytest.ExceptionInfo[InvalidInput]]:
    """Expect InvalidInput with CONFIG_INVALID whose detail holds every fragment."""
    with pytest.raises(InvalidInput) as info:
        yield info
    assert info.value.code is ReasonCode.CONFIG_INVALID
    for fragment in fragments:
        assert fragment in info.value.detail, (fragment, info.value.detail)


@contextlib.contextmanager
def raises_caller_bug() -> Iterator[pytest.ExceptionInfo[ValueError]]:
    """Expect a plain ValueError: a bad call argument, not a bad setting."""
    with pytest.raises(ValueError) as info:
        yield info
    assert not isinstance(info.value, InvalidInput), info.value


# Values that are never a valid number of seconds or count.
NOT_NUMBERS = [True, False, None, "1", b"1", [1], 1j]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]
