"""The aggregates section of Settings (``Settings.aggregates``, env ``TOKENWIRE_AGG_<FIELD>``).

Lists are given as JSON in the environment (``TOKENWIRE_AGG_WINDOWS_S='[10, 60]'``); the risk
weights too (``TOKENWIRE_AGG_RISK_WEIGHTS='{"burst": 0.4, "injection": 0.6}'``). A signal left out
of ``risk_weights`` weighs 0. See ``agents/aggregates/risk.py`` for the meaning of every risk key.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SIGNALS = ("burst", "token_spike", "error_share", "pii", "injection")
# Characters of one prompt or answer the content scanners read (see ``scan_max_chars``).
SCAN_MAX_CHARS = 12_288
# Models written to InfluxDB under their own name (TOKENWIRE_DEFAULT_MODEL is added to these);
# the simulator serves any model and lists gpt-4o-mini.
DEFAULT_INFLUX_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini")
# The tag value of every model not in ``influx_models``; model tags are at most this long.
OTHER_MODEL = "other"
MODEL_TAG_MAX_CHARS = 64

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

    # --- state expiry (event time) ---------------------------------------------------------
    # A user's baseline for a window size is deleted once no window of theirs of that size
    # closed for this long (it has decayed to nothing by then: 0.8 ** 25 920 for 10 s windows),
    # and a user's in-flight set once every request in it is older than ``active_stale_s``.
    baseline_idle_ttl_s: float = Field(default=3 * 86_400.0, gt=0)
    # How often (event time, per partition) the aggregates table is swept for those entries.
    state_sweep_interval_s: float = Field(default=600.0, gt=0)

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
    # Characters of one prompt or answer scanned for PII and injection markers (on the event
    # loop, so bounded): a longer text is scanned on its first quarter and last three quarters
    # of this budget; its middle is not scanned (content_flags.py).
    scan_max_chars: int = Field(default=SCAN_MAX_CHARS, ge=1024)

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
    # Series cardinality (agents/aggregates/series.py). Only these models are ``model`` tag
    # values; any other is tagged ``other`` (still counted).
    influx_models: list[str] = Field(default_factory=lambda: list(DEFAULT_INFLUX_MODELS))
    # Users with their own ``user_id`` tag per window and partition: the first this many users
    # of a window; the later ones are summed into ``user_id="(other users)"`` points.
    influx_users_per_window: int = Field(default=500, ge=1)

    @field_validator("windows_s")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        if not value or any(size <= 0 for size in value):
            raise ValueError("windows_s needs at least one positive window size in seconds")
        return sorted(set(value))

    @field_validator("influx_models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        bad = [m for m in value if not m or len(m) > MODEL_TAG_MAX_CHARS or m == OTHER_MODEL]
        if bad:
            raise ValueError(
                f"influx_models must be 1-{MODEL_TAG_MAX_CHARS} characters and not "
                f"{OTHER_MODEL!r}: {bad}"
            )
        return value

    @field_validator("risk_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown risk signals {sorted(unknown)}; known: {list(SIGNALS)}")
        if any(weight < 0 for weight in value.values()):
            raise ValueError("risk weights must be >= 0")
        return value
