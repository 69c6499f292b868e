"""The aggregates section of Settings (``Settings.aggregates``, env ``TOKENWIRE_AGG_<FIELD>``).

Lists are given as JSON in the environment (``TOKENWIRE_AGG_WINDOWS_S='[10, 60]'``); the risk
weights too (``TOKENWIRE_AGG_RISK_WEIGHTS='{"burst": 0.4, "injection": 0.6}'``). A signal left out
of ``risk_weights`` weighs 0. See ``agents/aggregates/risk.py`` for the meaning of every risk key.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SIGNALS = ("burst", "token_spike", "error_share", "pii", "injection")

DEFAULT_WEIGHTS = {
    "burst": 0.35,
    "token_spike": 0.25,
    "error_share": 0.2,
    "pii": 0.3,
    "injection": 0.6,
}


class AggregatesSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENWIRE_AGG_", frozen=True, extra="ignore", populate_by_name=True
    )

    # --- windows (event time) ------------------------------------------------------------
    windows_s: list[int] = Field(default_factory=lambda: [10, 60])
    # A window is closed once the partition's event time passed its end by this much; an event
    # for a closed window is late: counted (metric, log, ``late_events`` field), not applied.
    grace_s: float = Field(default=5.0, ge=0)
    # An accepted request with no terminal event for this long (event time) stops being active.
    active_stale_s: float = Field(default=600.0, gt=0)
    # TTFT values kept exactly per window and model; beyond this the quantiles use the histogram.
    ttft_exact_max: int = Field(default=512, ge=1)

    # --- risk ------------------------------------------------------------------------------
    risk_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    risk_threshold: float = Field(default=0.6, gt=0, le=1)
    # A signal "fired" in a window when its value reached this level.
    risk_fire_level: float = Field(default=0.5, gt=0, le=1)
    # Requests (tokens) per window above the baseline that saturate the burst (spike) signal:
    # value = clip((observed / baseline - 1) / (factor - 1), 0, 1).
    burst_factor: float = Field(default=3.0, gt=1)
    token_spike_factor: float = Field(default=3.0, gt=1)
    # The baseline never counts as lower than these (per minute; scaled to the window size), so a
    # new or quiet user is not "bursting" on their third request.
    burst_floor_per_min: float = Field(default=6.0, gt=0)
    token_floor_per_min: float = Field(default=3000.0, gt=0)
    # Weight of the newest closed window in the per-user exponential moving average.
    baseline_alpha: float = Field(default=0.2, gt=0, le=1)
    # Content hits in one window that saturate the pii / injection signals.
    pii_saturation: int = Field(default=2, ge=1)
    injection_saturation: int = Field(default=1, ge=1)
    # The error/refusal share counts from this many finished requests in the window on.
    error_min_finished: int = Field(default=2, ge=1)
    # How long an alert throttles the user at the edge (from the event that crossed the line).
    alert_ttl_s: float = Field(default=300.0, gt=0)

    # --- InfluxDB sink ---------------------------------------------------------------------
    influx_batch_size: int = Field(default=500, ge=1)
    influx_flush_interval_s: float = Field(default=1.0, gt=0)
    # Points waiting for InfluxDB; beyond this the oldest are dropped (counted and logged).
    influx_buffer_max: int = Field(default=50_000, ge=1)
    influx_retry_base_s: float = Field(default=0.5, gt=0)
    influx_retry_max_s: float = Field(default=30.0, gt=0)
    influx_timeout_s: float = Field(default=10.0, gt=0)
    influx_close_timeout_s: float = Field(default=10.0, gt=0)
    # How often the still-open windows are written too, for live dashboards.
    current_interval_s: float = Field(default=5.0, gt=0)

    @field_validator("windows_s")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        if not value or any(size <= 0 for size in value):
            raise ValueError("windows_s needs at least one positive window size in seconds")
        return sorted(set(value))

    @field_validator("risk_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown risk signals {sorted(unknown)}; known: {list(SIGNALS)}")
        if any(weight < 0 for weight in value.values()):
            raise ValueError("risk weights must be >= 0")
        return value
