"""A tenant's limits as its owner keeps them, on a clock the test moves: a
token bucket refills at its rate up to its burst; a quota bounds the
intents not yet settled; each refusal is one code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exoarmur.actors.tenants import Admission, TenantLimits, TokenBucket
from exoarmur.runtime import Overloaded, ReasonCode


def test_a_bucket_holds_its_burst_and_refills_at_its_rate():
    bucket = TokenBucket(rate=10.0, capacity=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait() == pytest.approx(0.1)
    assert not bucket.take(0.05) and bucket.take(0.1)  # one token a tenth of a second
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 500.0),
    burst=st.floats(1.0, 50.0),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=300),
)
def test_a_bucket_never_admits_more_than_its_burst_plus_its_rate_times_the_time(rate, burst, gaps):
    bucket = TokenBucket(rate=rate, capacity=burst, now=0.0)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= burst + rate * now + 1e-6


def test_admission_refuses_past_the_rate_and_the_quota_with_their_codes():
    admission = Admission({"slow": TenantLimits(rate=1.0, burst=1.0), "few": TenantLimits(quota=2)}, default=TenantLimits())
    admission.admit("slow", now=0.0)
    with pytest.raises(Overloaded) as caught:
        admission.admit("slow", now=0.5)
    assert caught.value.code is ReasonCode.RATE_LIMITED and "500 ms" in caught.value.detail
    admission.admit("slow", now=1.0)
    admission.admit("few", now=0.0)
    admission.admit("few", now=0.0)
    with pytest.raises(Overloaded) as caught:
        admission.admit("few", now=0.0)
    assert caught.value.code is ReasonCode.OVERLOAD_TENANT_QUOTA
    admission.settled("few")
    admission.admit("few", now=0.0)
    for _ in range(1000):
        admission.admit("other", now=0.0)  # the default: no limit


def test_a_recount_from_the_index_replaces_what_was_counted():
    admission = Admission({"few": TenantLimits(quota=1)}, default=TenantLimits())
    admission.admit("few", now=0.0)
    admission.recount({"few": 0})  # its end was never told: the index says it settled
    admission.admit("few", now=0.0)
    admission.settled("few")
    admission.settled("few")  # told twice: never below zero
    assert admission.unsettled["few"] == 0
