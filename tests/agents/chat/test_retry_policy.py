"""Retry policy: bounded attempts, exponential backoff with jitter, Retry-After obeyed."""

from agents.chat.retry_policy import RetryPolicy
from tokenwire.errors import GenerationError

POLICY = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=2.0)


def test_retryable_errors_are_retried_until_the_attempt_limit() -> None:
    error = GenerationError("http_500", "boom", retryable=True)
    assert [POLICY.should_retry(error, n) for n in (1, 2, 3, 4)] == [True, True, True, False]


def test_non_retryable_errors_end_at_once() -> None:
    assert not POLICY.should_retry(GenerationError("http_400", "bad", retryable=False), 1)


def test_backoff_grows_exponentially_within_its_cap() -> None:
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (8, 2.0)):
        delays = [POLICY.delay_s(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the range


def test_retry_after_is_obeyed_but_capped() -> None:
    assert POLICY.delay_s(1, retry_after_s=0.7) == 0.7
    assert POLICY.delay_s(1, retry_after_s=60) == 2.0
