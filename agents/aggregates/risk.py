"""The per-user risk score of one window: named signals in [0, 1], weighted, summed, clipped.

    score = min(1, sum(weight[s] * value[s] for s in signals))

Signals (each in [0, 1]; ``W`` = window size in seconds):

- ``burst``: requests in the window against the user's own baseline, an exponential moving
  average of their requests per closed window (never below ``burst_floor_per_min * W / 60``):
  ``clip((requests / baseline - 1) / (burst_factor - 1), 0, 1)``, so 1 at ``burst_factor`` x.
- ``token_spike``: the same with tokens (prompt + completion) and ``token_spike_factor``.
- ``error_share``: (failed + refused) / finished requests in the window, once at least
  ``error_min_finished`` finished (a refusal is a ``content_filter`` finish or an answer that
  opens like one).
- ``pii``: e-mail addresses, card numbers (Luhn), phone numbers and SSNs found in prompts and
  answers: ``min(1, hits / pii_saturation)``.
- ``injection``: prompt-injection markers in prompts: ``min(1, hits / injection_saturation)``.

A signal *fired* when its value reached ``fire_level`` (and its weight is > 0). The baseline moves
only when a window closes; windows in which the user sent nothing decay it by ``(1 - alpha)``
each, so it reflects their recent habit in event time, and a replay computes the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tokenwire.aggregates_settings import SIGNALS, AggregatesSettings


@dataclass(frozen=True)
class RiskConfig:
    weights: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.6
    fire_level: float = 0.5
    burst_factor: float = 3.0
    token_spike_factor: float = 3.0
    burst_floor_per_min: float = 6.0
    token_floor_per_min: float = 3000.0
    baseline_alpha: float = 0.2
    pii_saturation: int = 2
    injection_saturation: int = 1
    error_min_finished: int = 2

    @classmethod
    def from_settings(cls, s: AggregatesSettings) -> RiskConfig:
        return cls(
            weights={name: s.risk_weights.get(name, 0.0) for name in SIGNALS},
            threshold=s.risk_threshold,
            fire_level=s.risk_fire_level,
            burst_factor=s.burst_factor,
            token_spike_factor=s.token_spike_factor,
            burst_floor_per_min=s.burst_floor_per_min,
            token_floor_per_min=s.token_floor_per_min,
            baseline_alpha=s.baseline_alpha,
            pii_saturation=s.pii_saturation,
            injection_saturation=s.injection_saturation,
            error_min_finished=s.error_min_finished,
        )


@dataclass(frozen=True)
class Baseline:
    """A user's habit for one window size: moving averages over their closed windows."""

    requests: float = 0.0
    tokens: float = 0.0
    windows: int = 0
    last_start: float | None = None

    def after_window(
        self, start: float, size_s: int, requests: int, tokens: int, alpha: float
    ) -> Baseline:
        requests_avg, tokens_avg = self.requests, self.tokens
        if self.last_start is not None and start > self.last_start + size_s:
            empty = round((start - self.last_start) / size_s) - 1
            decay = (1 - alpha) ** empty
            requests_avg, tokens_avg = requests_avg * decay, tokens_avg * decay
        return Baseline(
            requests=(1 - alpha) * requests_avg + alpha * requests,
            tokens=(1 - alpha) * tokens_avg + alpha * tokens,
            windows=self.windows + 1,
            last_start=start,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Baseline:
        return cls(**data) if data else cls()


@dataclass(frozen=True)
class RiskInputs:
    window_s: int
    requests: int = 0
    tokens: int = 0
    finished: int = 0
    failed: int = 0
    refusals: int = 0
    pii_hits: int = 0
    injection_hits: int = 0


@dataclass(frozen=True)
class RiskScore:
    score: float
    signals: dict[str, float]
    fired: tuple[str, ...]

    @property
    def reason(self) -> str:
        return ",".join(self.fired) if self.fired else "none"


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _ratio_signal(observed: float, baseline: float, floor: float, factor: float) -> float:
    reference = max(baseline, floor)
    return _clip((observed / reference - 1.0) / (factor - 1.0))


def signals(inputs: RiskInputs, baseline: Baseline, config: RiskConfig) -> dict[str, float]:
    minutes = inputs.window_s / 60.0
    finished = inputs.finished
    error_share = 0.0
    if finished >= config.error_min_finished:
        error_share = _clip((inputs.failed + inputs.refusals) / finished)
    return {
        "burst": _ratio_signal(
            inputs.requests, baseline.requests, config.burst_floor_per_min * minutes,
            config.burst_factor,
        ),
        "token_spike": _ratio_signal(
            inputs.tokens, baseline.tokens, config.token_floor_per_min * minutes,
            config.token_spike_factor,
        ),
        "error_share": error_share,
        "pii": _clip(inputs.pii_hits / config.pii_saturation),
        "injection": _clip(inputs.injection_hits / config.injection_saturation),
    }  # fmt: skip


def score(inputs: RiskInputs, baseline: Baseline, config: RiskConfig) -> RiskScore:
    values = signals(inputs, baseline, config)
    total = sum(config.weights.get(name, 0.0) * value for name, value in values.items())
    fired = tuple(
        name
        for name in SIGNALS
        if values[name] >= config.fire_level and config.weights.get(name, 0.0) > 0
    )
    return RiskScore(score=round(_clip(total), 6), signals=values, fired=fired)
