"""The timeout policy table (categories and defaults: docs/rules.md, "Timeouts"; config overrides)."""

from __future__ import annotations

import math

import pytest

from exoarmur.runtime import InvalidInput, ReasonCode, TimeoutCategory, TimeoutPolicy
from exoarmur.runtime.timeouts import DEFAULT_SECONDS


class TestTimeoutPolicy:
    def test_defaults_are_seed_001s(self):
        """The defaults are the table of docs/rules.md, "Timeouts"."""
        policy = TimeoutPolicy()
        assert policy[TimeoutCategory.NATS_CONNECT] == 10.0
        assert policy[TimeoutCategory.NATS_PUBLISH] == 5.0
        assert policy[TimeoutCategory.KV_GET] == 5.0
        assert policy[TimeoutCategory.EXECUTION_INTENT] == 30.0
        assert policy[TimeoutCategory.REPLAY_PROCESSING] == 300.0
        assert policy[TimeoutCategory.API_REQUEST] == 30.0
        assert policy[TimeoutCategory.DEFAULT] == 30.0
        assert set(DEFAULT_SECONDS) == set(TimeoutCategory)

    def test_each_category_names_its_timeout_code(self):
        """A category's code is TIMEOUT_<category>; DEFAULT's is DEADLINE_EXCEEDED."""
        for category in TimeoutCategory:
            if category is TimeoutCategory.DEFAULT:
                assert category.code is ReasonCode.DEADLINE_EXCEEDED
            else:
                assert category.code == f"TIMEOUT_{category.name}"

    def test_overrides_replace_only_the_named_categories(self):
        """Overrides by case-insensitive name or member; the rest keep their defaults."""
        policy = TimeoutPolicy.with_overrides({"kv_get": 2, TimeoutCategory.NATS_CONNECT: 1.5})
        assert policy[TimeoutCategory.KV_GET] == 2.0
        assert policy[TimeoutCategory.NATS_CONNECT] == 1.5
        assert policy[TimeoutCategory.KV_PUT] == 5.0

    @pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan, "5", None, True])
    def test_non_positive_or_non_finite_override_is_config_invalid(self, bad):
        """A timeout must be a finite number > 0."""
        with pytest.raises(InvalidInput) as caught:
            TimeoutPolicy.with_overrides({"kv_get": bad})
        assert caught.value.code is ReasonCode.CONFIG_INVALID

    def test_unknown_category_is_config_invalid(self):
        """A misspelt category is refused, not ignored."""
        with pytest.raises(InvalidInput) as caught:
            TimeoutPolicy.with_overrides({"kv_gte": 1})
        assert "kv_gte" in caught.value.detail

    def test_policy_is_immutable(self):
        """The table cannot be changed after construction."""
        policy = TimeoutPolicy()
        with pytest.raises(TypeError):
            policy.seconds[TimeoutCategory.KV_GET] = 1.0  # type: ignore[index]
