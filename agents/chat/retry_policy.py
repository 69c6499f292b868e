"""When to try the LLM again, and how long to wait first.

Exponential backoff with full jitter (the AWS architecture blog's recipe): the n-th retry waits a
random time in [0, min(max_delay, base * 2**n)]. A server that says Retry-After is obeyed instead,
capped by max_delay so one header cannot park a request forever.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenwire.errors import GenerationError
from tokenwire.settings import Settings


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_delay_s: float
    max_delay_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.retry_max_attempts,
            base_delay_s=settings.retry_base_delay_s,
            max_delay_s=settings.retry_max_delay_s,
        )

    def should_retry(self, error: GenerationError, attempt: int) -> bool:
        return error.retryable and attempt < self.max_attempts

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_delay_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return random.uniform(0.0, ceiling)
