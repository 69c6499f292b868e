"""The cancel scenario's figures: each stream matched to the simulator's record of its close.

Every time is ``time.time()`` on the one machine: the client's moment just before the cancel
POST, its 202, its ``done`` event, and the simulator's ``closed_at`` (when it saw the worker's
disconnect). A stream counts as ``cancelled_ok`` when the cancel was accepted (202), its
``done`` said ``cancelled``, its tokens were a clean prefix of the answer, and the simulator saw
its upstream stream closed after the POST.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tokenwire.bench.stats import distribution

WORKER_CANCEL_HISTOGRAM = "tokenwire_worker_cancel_seconds"


def closed_at(stream: dict[str, Any], closed: list[dict[str, Any]]) -> float | None:
    """The first close of the stream's upstream call at or after its cancel POST."""
    posted = stream.get("posted_at")
    if posted is None:
        return None
    times = [c["closed_at"] for c in closed
             if stream["marker"] in c.get("prompt", "") and c["closed_at"] >= posted]
    return min(times, default=None)


def all_matched(streams: Iterable[dict[str, Any]], closed: list[dict[str, Any]]) -> bool:
    """Whether every stream whose cancel was posted has its close recorded (the poll's end)."""
    return all(closed_at(s, closed) is not None for s in streams if s.get("posted_at"))


def _ms(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier) * 1000.0


def cancel_figures(streams: list[dict[str, Any]], closed: list[dict[str, Any]],
                   worker: dict[str, Any] | None) -> dict[str, Any]:
    to_closed, to_answer, to_done = [], [], []
    ok = missing_close = wrong_finish = not_accepted = not_prefix = errors = 0
    samples: list[str] = []
    for s in sorted(streams, key=lambda s: s["index"]):
        close = closed_at(s, closed)
        s["closed_at"] = close
        to_closed.append(_ms(close, s.get("posted_at")))
        to_answer.append(_ms(s.get("answered_at"), s.get("posted_at")))
        to_done.append(_ms(s.get("done_at"), s.get("posted_at")))
        accepted = s.get("status") == 202
        cancelled = s.get("finish_reason") == "cancelled"
        prefix = bool(s.get("prefix_ok"))
        not_accepted += not accepted
        missing_close += close is None
        wrong_finish += not cancelled
        not_prefix += not prefix
        errors += s["error"] is not None
        if s["error"] is not None and len(samples) < 10:
            samples.append(f"s{s['index']}: {s['error']}")
        ok += accepted and cancelled and prefix and close is not None and s["error"] is None
    counts = {"streams": len(streams), "cancelled_ok": ok, "missing_close": missing_close,
              "wrong_finish": wrong_finish, "not_accepted": not_accepted,
              "not_prefix": not_prefix, "errors": errors}
    return {
        **counts,
        "clean": ok == len(streams) > 0,
        "error_samples": samples,
        "post_to_upstream_closed_ms": distribution(to_closed),
        "post_to_202_ms": distribution(to_answer),
        "post_to_done_ms": distribution(to_done),
        "tokens_before_cancel": distribution(s.get("tokens_before_cancel") for s in streams),
        "worker_cancel_seconds": worker,
        "streams_detail": streams,
    }


# --- the worker's own histogram -------------------------------------------------------------


def histogram_sample(metrics_text: str) -> dict[str, Any]:
    """``tokenwire_worker_cancel_seconds`` from a /metrics page: cumulative buckets, sum, count."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != WORKER_CANCEL_HISTOGRAM:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return {"buckets": buckets, "sum": total, "count": count}


def histogram_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the worker observed during the scenario: count, mean, and the bucket upper bounds
    that hold the 50th and 99th percentiles (the worker's clock: edge's ``requested_at`` to the
    upstream stream closed)."""
    count = after["count"] - before["count"]
    edges = sorted(after["buckets"])
    cumulative = [after["buckets"][e] - before["buckets"].get(e, 0.0) for e in edges]

    def bound(q: float) -> float | None:
        for edge, seen in zip(edges, cumulative, strict=True):
            if count and seen >= q * count:
                return None if edge == float("inf") else round(edge * 1000, 3)
        return None

    return {
        "count": int(count),
        "mean_ms": round((after["sum"] - before["sum"]) / count * 1000, 3) if count else None,
        "p50_at_most_ms": bound(0.5),
        "p99_at_most_ms": bound(0.99),
    }
