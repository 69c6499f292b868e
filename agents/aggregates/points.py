"""What the aggregates write to InfluxDB: measurements, tags and fields, in one place.

Every point's timestamp is its window's start (second precision), so writing a window again
(the live current-window refresh, the final write at close, a replay) overwrites the same point.

``chat_rate``  tags ``user_id, model, window`` -- one series per user and model; per-user or
per-model figures are sums over the other tag. Both tags are bounded (``series``): models
outside a list are ``other``, users past a per-window cap are ``(other users)``.
``chat_risk``  tags ``user_id, window``.
``chat_alert`` tags ``user_id, window`` -- one point per alert sent to ``chat.alerts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.aggregates.risk import Baseline, RiskScore
from agents.aggregates.windows import TTFT_BUCKETS, UserWindow
from schemas.alerts import RiskAlert
from tokenwire.aggregates_settings import SIGNALS

RATE = "chat_rate"
RISK = "chat_risk"
ALERT = "chat_alert"

FieldValue = int | float | bool | str


@dataclass(frozen=True)
class PointRow:
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, FieldValue]
    time_s: int

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...], int]:
        """Rows with the same key are the same InfluxDB point: the later one wins."""
        return (self.measurement, self.tags, self.time_s)

    def tag(self, name: str) -> str:
        return dict(self.tags)[name]


def ttft_bucket_field(index: int) -> str:
    return "ttft_le_inf" if index == len(TTFT_BUCKETS) else f"ttft_le_{TTFT_BUCKETS[index]:g}"


def rate_rows(window: UserWindow, *, final: bool) -> list[PointRow]:
    rows = []
    for model, f in sorted(window.models.items()):
        fields: dict[str, FieldValue] = {
            "requests": f.requests,
            "completed": f.completed,
            "failed": f.failed,
            "cancellations": f.cancellations,
            "refusals": f.refusals,
            "retries": f.retries,
            "tokens_in": f.tokens_in,
            "tokens_out": f.tokens_out,
            "requests_per_s": f.requests / window.size_s,
            "tokens_per_s": f.tokens_out / window.size_s,
            "active": f.active,
            "late_events": f.late_events,
            "ttft_count": f.ttft_count,
            "ttft_sum_s": float(f.ttft_sum),
            "final": final,
        }
        if f.gen_seconds > 0:
            fields["gen_tokens_per_s"] = f.gen_tokens / f.gen_seconds
        if f.ttft_count:
            fields["ttft_p50_s"] = float(f.ttft_quantile(0.5) or 0.0)
            fields["ttft_p95_s"] = float(f.ttft_quantile(0.95) or 0.0)
            fields["ttft_mean_s"] = f.ttft_sum / f.ttft_count
        cumulative = 0
        for index, count in enumerate(f.ttft_hist):
            cumulative += count
            fields[ttft_bucket_field(index)] = cumulative
        tags = (("model", model), ("user_id", window.user_id), ("window", window.label))
        rows.append(PointRow(RATE, tags, fields, window.start))
    return rows


def risk_row(
    window: UserWindow,
    risk: RiskScore,
    baseline: Baseline,
    *,
    final: bool,
    users: int | None = None,
) -> PointRow:
    fields: dict[str, FieldValue] = {
        "score": float(risk.score),
        "max_score": float(max(window.max_score, risk.score)),
        "signals_fired": ",".join(risk.fired),
        "fired_count": len(risk.fired),
        "requests": window.total("requests"),
        "tokens": window.total("tokens_in") + window.total("tokens_out"),
        "failed": window.total("failed"),
        "refusals": window.total("refusals"),
        "pii_hits": sum(window.pii.values()),
        "injection_hits": window.injection,
        "scan_truncated": window.scan_truncated,
        "baseline_requests": float(baseline.requests),
        "baseline_tokens": float(baseline.tokens),
        "alerted": window.alerted,
        "final": final,
    }
    for name in SIGNALS:
        fields[f"sig_{name}"] = float(risk.signals[name])
    for kind, count in window.pii.items():
        fields[f"pii_{kind}"] = count
    if users is not None:  # the (other users) point: how many users it sums (series.py)
        fields["users"] = users
    tags = (("user_id", window.user_id), ("window", window.label))
    return PointRow(RISK, tags, fields, window.start)


def alert_row(alert: RiskAlert) -> PointRow:
    fields: dict[str, FieldValue] = {
        "alerts": 1,
        "score": float(alert.score),
        "threshold": float(alert.threshold),
        "signals": ",".join(alert.signals),
        "expires_at": float(alert.expires_at),
    }
    tags = (("user_id", alert.user_id), ("window", alert.window))
    return PointRow(ALERT, tags, fields, int(alert.window_start))


def as_dict(row: PointRow) -> dict[str, Any]:
    return {"measurement": row.measurement, "tags": dict(row.tags), "fields": row.fields,
            "time": row.time_s}  # fmt: skip
