"""What bounds the InfluxDB series: model tags from a list, user tags per window.

Every distinct tag set is a series in InfluxDB, and its index grows with each one; ``user_id``
and ``model`` come from callers, so unbounded they would let any client grow it at will.

- ``model``: only the models in ``influx_models`` (plus the worker's default model) are tag
  values; any other model is folded into ``other`` already in the fold, so the state does not
  keep caller-chosen model names either.
- ``user_id``: the first ``influx_users_per_window`` users of a window (per partition) get
  their own series for that window; later users of the same window are summed into points
  tagged ``user_id="(other users)"`` (rates per model; for risk the highest score and signals
  among them and ``users``, how many). They are still scored against their own baselines and
  still alerted (``chat.alerts``, ``chat_alert`` with their user id, one point per alert):
  only their ``chat_rate``/``chat_risk`` points are folded. First come, not top N: the choice
  is made once, when the user opens the window, so a point once written is never orphaned by
  a later ranking, and a replay makes the same choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.aggregates.points import PointRow, rate_rows, risk_row
from agents.aggregates.risk import Baseline, RiskScore
from agents.aggregates.windows import UserWindow
from tokenwire.aggregates_settings import (
    MODEL_TAG_MAX_CHARS,
    OTHER_MODEL,
    SIGNALS,
    AggregatesSettings,
)

# Never a series of its own user: a user who calls themselves this is folded into it.
OTHER_USERS = "(other users)"


@dataclass(frozen=True)
class SeriesLimits:
    models: frozenset[str]
    users_per_window: int

    @classmethod
    def from_settings(cls, s: AggregatesSettings, default_model: str | None = None) -> SeriesLimits:
        models = set(s.influx_models)
        if default_model and len(default_model) <= MODEL_TAG_MAX_CHARS:
            models.add(default_model)
        models.discard(OTHER_MODEL)
        return cls(models=frozenset(models), users_per_window=s.influx_users_per_window)

    def model_tag(self, model: str) -> str:
        return model if model in self.models else OTHER_MODEL

    def admit(self, clock: dict[str, Any], size: int, start: int, user_id: str) -> bool:
        """Whether a user new to window ``(size, start)`` gets their own series (and count it)."""
        if user_id == OTHER_USERS:
            return False
        users: dict[str, int] = clock.setdefault("users", {})
        key = f"{size}|{start}"
        if users.get(key, 0) >= self.users_per_window:
            return False
        users[key] = users.get(key, 0) + 1
        return True

    @staticmethod
    def forget(clock: dict[str, Any], size: int, start: int) -> None:
        clock.get("users", {}).pop(f"{size}|{start}", None)


def other_rows(
    folded: list[tuple[UserWindow, RiskScore]], exact_max: int, *, final: bool
) -> list[PointRow]:
    """The ``(other users)`` points of one window: the users without a series of their own."""
    first = folded[0][0]
    merged = UserWindow(user_id=OTHER_USERS, size_s=first.size_s, start=first.start)
    for window, _ in folded:
        for model, figures in sorted(window.models.items()):
            merged.figures(model).add(figures, exact_max)
        for kind, count in window.pii.items():
            merged.pii[kind] = merged.pii.get(kind, 0) + count
        merged.injection += window.injection
        merged.scan_truncated += window.scan_truncated
        merged.alerted = merged.alerted or window.alerted
        merged.max_score = max(merged.max_score, window.max_score)
    scores = [risk for _, risk in folded]
    risk = RiskScore(
        score=max(r.score for r in scores),
        signals={name: max(r.signals[name] for r in scores) for name in SIGNALS},
        fired=tuple(name for name in SIGNALS if any(name in r.fired for r in scores)),
    )
    return [
        *rate_rows(merged, final=final),
        risk_row(merged, risk, Baseline(), final=final, users=len(folded)),
    ]
