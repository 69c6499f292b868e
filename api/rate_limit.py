"""A per-user token bucket held in this process (each edge replica limits on its own)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

# Above this many users, buckets that have refilled completely are forgotten: a full bucket and
# no bucket behave the same, so memory follows active users only.
PRUNE_ABOVE = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, *, now: float | None = None) -> float | None:
        """Take one token for ``key``: None if allowed, else the seconds until one is free."""
        at = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= PRUNE_ABOVE:
                self._prune(at)
            bucket = self._buckets[key] = _Bucket(self._burst, at)
        bucket.tokens = min(self._burst, bucket.tokens + (at - bucket.updated) * self._rate)
        bucket.updated = at
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    def _prune(self, now: float) -> None:
        full_after = self._burst / self._rate
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if now - bucket.updated < full_after
        }


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is let through."""
    return str(max(1, math.ceil(seconds)))
