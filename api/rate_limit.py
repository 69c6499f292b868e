"""A per-user token bucket held in this process (each edge replica limits on its own).

Bounded and O(1) per call: buckets are kept in least-recently-used order. A bucket that has
refilled completely behaves exactly like no bucket, so full ones are dropped from the old end as
calls go by; beyond ``max_keys`` the least recently used bucket is dropped even if not full (that
user starts again with a full burst: the price of a bounded map under a flood of new keys).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_MAX_KEYS = 100_000
# Full buckets dropped per call at most: the work per call stays constant, and since each call
# adds at most one bucket, the full ones still cannot pile up.
EXPIRE_PER_CALL = 2


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, rate_per_s: float, burst: int, *, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst >= 1 and max_keys >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._refill_s = self._burst / rate_per_s
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str, *, now: float | None = None) -> float | None:
        """Take one token for ``key``: None if allowed, else the seconds until one is free."""
        at = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, at)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (at - bucket.updated) * self._rate)
            bucket.updated = at
        self._expire(at)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        while len(buckets) > self._max_keys:
            buckets.popitem(last=False)
        for _ in range(EXPIRE_PER_CALL):
            oldest = next(iter(buckets.values()))
            if now - oldest.updated < self._refill_s:
                return  # in LRU order: every later bucket was used more recently still
            buckets.popitem(last=False)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is let through."""
    return str(max(1, math.ceil(seconds)))
