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
