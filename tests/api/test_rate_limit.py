"""The per-user token bucket."""

from __future__ import annotations

import pytest

from api.rate_limit import RateLimiter, retry_after_header


def test_burst_then_refusal_then_refill() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.acquire("u", now=0.0) for _ in range(3)] == [None, None, None]
    assert limiter.acquire("u", now=0.0) == pytest.approx(0.5)
    assert limiter.acquire("u", now=0.25) == pytest.approx(0.25)
    assert limiter.acquire("u", now=0.5) is None


def test_users_are_limited_independently() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.acquire("a", now=0.0) is None
    assert limiter.acquire("a", now=0.0) is not None
    assert limiter.acquire("b", now=0.0) is None


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"


def test_the_map_is_bounded_and_keeps_the_users_in_use() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, max_keys=100)
    assert limiter.acquire("hot", now=0.0) is None
    for n in range(10_000):
        limiter.acquire(f"flood-{n}", now=0.0)
        if n % 50 == 0:
            # Still refused: a flood of new keys does not reset a user in use.
            assert limiter.acquire("hot", now=0.0) is not None
        assert len(limiter) <= 100


def test_buckets_that_refilled_are_forgotten_as_calls_go_by() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=2, max_keys=1_000)
    for n in range(500):
        limiter.acquire(f"u{n}", now=0.0)
    assert len(limiter) == 500
    for _ in range(300):
        limiter.acquire("later", now=10.0)
    assert len(limiter) == 1
    # A forgotten user starts with a full bucket: exactly what keeping it would have given.
    assert [limiter.acquire("u1", now=10.0) for _ in range(3)] == [None, None, pytest.approx(1.0)]
