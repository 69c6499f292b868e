"""Records on ``chat.alerts`` (key = user_id): a user's risk crossed the threshold in a window.

The worker's aggregates send at most one alert per user and window; the edge throttles the user's
new requests (429 with ``reason``) until ``expires_at`` (epoch seconds). ``alert_id`` is the same
for a re-sent alert of the same window, so a reader may drop repeats.
"""

from __future__ import annotations

from pydantic import Field

from schemas.common import SCHEMA_VERSION, Contract, UserId, now


class RiskAlert(Contract):
    schema_version: int = SCHEMA_VERSION
    type: str = "risk"
    alert_id: str
    user_id: UserId
    score: float = Field(ge=0, le=1)
    threshold: float = Field(gt=0, le=1)
    # Names of the signals that fired (see agents/aggregates/risk.py), e.g. ["burst", "injection"].
    signals: list[str] = Field(default_factory=list)
    window: str
    window_start: float
    window_end: float
    # Event time of the event that crossed the threshold, and until when the user is throttled.
    at: float = Field(default_factory=now)
    expires_at: float
    reason: str


def parse_alert(raw: bytes | str) -> RiskAlert:
    return RiskAlert.model_validate_json(raw)
