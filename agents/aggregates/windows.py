"""Tumbling event-time windows and what one user's window holds.

A window of ``size_s`` seconds starts at ``floor(at / size_s) * size_s`` of the event's own time;
``label`` names the size in points and alerts (``10s``, ``1m``). ``UserWindow`` is everything one
user did in one window: rate figures per model and the inputs of the risk score. It is kept as
JSON in the aggregates table, so it survives a worker restart through the changelog.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

# Upper bounds of the TTFT histogram (seconds); the last bucket is +Inf.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def window_label(size_s: int) -> str:
    for unit, seconds in (("h", 3600), ("m", 60)):
        if size_s % seconds == 0:
            return f"{size_s // seconds}{unit}"
    return f"{size_s}s"


def window_start(at: float, size_s: int) -> int:
    return math.floor(at / size_s) * size_s


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def histogram_quantile(counts: list[int], q: float) -> float:
    """Prometheus-style: linear within the bucket the rank falls in; +Inf answers the last bound."""
    total = sum(counts)
    rank = q * total
    cumulative = 0
    for index, count in enumerate(counts):
        if count and cumulative + count >= rank:
            if index == len(TTFT_BUCKETS):
                return TTFT_BUCKETS[-1]
            lower = TTFT_BUCKETS[index - 1] if index else 0.0
            return lower + (TTFT_BUCKETS[index] - lower) * (rank - cumulative) / count
        cumulative += count
    return TTFT_BUCKETS[-1]


@dataclass
class ModelFigures:
    """Rate figures of one (user, model) in one window."""

    requests: int = 0
    # Requests that ended with ``done``, cancelled ones included (they are also in
    # ``cancellations``), so ``completed + failed`` stays the number of finished requests.
    completed: int = 0
    failed: int = 0
    cancellations: int = 0
    refusals: int = 0
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    # Completion tokens and streaming seconds (first token to finish) of completed requests.
    gen_tokens: int = 0
    gen_seconds: float = 0.0
    ttft_exact: list[float] = field(default_factory=list)
    ttft_hist: list[int] = field(default_factory=lambda: [0] * (len(TTFT_BUCKETS) + 1))
    ttft_count: int = 0
    ttft_sum: float = 0.0
    # Requests of this user and model in flight at the window's last event (event time).
    active: int = 0
    late_events: int = 0

    def observe_ttft(self, seconds: float, exact_max: int) -> None:
        self.ttft_count += 1
        self.ttft_sum += seconds
        self.ttft_hist[bisect.bisect_left(TTFT_BUCKETS, seconds)] += 1
        if len(self.ttft_exact) < exact_max:
            bisect.insort(self.ttft_exact, seconds)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["ttft_exact"] = list(self.ttft_exact)
        data["ttft_hist"] = list(self.ttft_hist)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelFigures:
        figures = cls(**data)
        figures.ttft_exact = list(figures.ttft_exact)
        figures.ttft_hist = list(figures.ttft_hist)
        return figures

    def add(self, other: ModelFigures, exact_max: int) -> None:
        """Sum ``other`` into these figures (a window of several users)."""
        for name in ("requests", "completed", "failed", "cancellations", "refusals", "retries",
                     "tokens_in", "tokens_out", "gen_tokens", "gen_seconds", "ttft_count",
                     "ttft_sum", "active", "late_events"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ttft_hist = [a + b for a, b in zip(self.ttft_hist, other.ttft_hist, strict=True)]
        # Exact quantiles only while every value is kept (else ttft_quantile uses the histogram).
        self.ttft_exact = sorted(self.ttft_exact + other.ttft_exact)[:exact_max]

    def ttft_quantile(self, q: float) -> float | None:
        if not self.ttft_count:
            return None
        if len(self.ttft_exact) == self.ttft_count:
            return quantile(self.ttft_exact, q)
        return histogram_quantile(self.ttft_hist, q)


@dataclass
class UserWindow:
    user_id: str
    size_s: int
    start: int
    models: dict[str, ModelFigures] = field(default_factory=dict)
    # "<type>:<request_id>" of the events counted, so a duplicated event counts once.
    seen: set[str] = field(default_factory=set)
    pii: dict[str, int] = field(default_factory=dict)
    injection: int = 0
    # Whether the user has their own InfluxDB series in this window (series.py).
    tagged: bool = True
    # Prompts and answers longer than the scan budget (their middle was not scanned).
    scan_truncated: int = 0
    alerted: bool = False
    max_score: float = 0.0

    @property
    def end(self) -> int:
        return self.start + self.size_s

    @property
    def label(self) -> str:
        return window_label(self.size_s)

    def figures(self, model: str) -> ModelFigures:
        found = self.models.get(model)
        if found is None:
            found = self.models[model] = ModelFigures()
        return found

    def total(self, name: str) -> int:
        return sum(int(getattr(figures, name)) for figures in self.models.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "size_s": self.size_s,
            "start": self.start,
            "models": {model: f.to_json() for model, f in self.models.items()},
            "seen": sorted(self.seen),
            "pii": dict(self.pii),
            "injection": self.injection,
            "tagged": self.tagged,
            "scan_truncated": self.scan_truncated,
            "alerted": self.alerted,
            "max_score": self.max_score,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserWindow:
        """Copies: the table's stored value is never changed in place, only replaced."""
        return cls(
            user_id=data["user_id"],
            size_s=data["size_s"],
            start=data["start"],
            models={m: ModelFigures.from_json(f) for m, f in data.get("models", {}).items()},
            seen=set(data.get("seen", ())),
            pii=dict(data.get("pii", {})),
            injection=data.get("injection", 0),
            tagged=data.get("tagged", True),
            scan_truncated=data.get("scan_truncated", 0),
            alerted=data.get("alerted", False),
            max_score=data.get("max_score", 0.0),
        )
