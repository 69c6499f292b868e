"""Figures from the client processes' raw outcomes: percentiles, integrity counts, CPU per token."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from typing import Any

PERCENTILES = (50, 90, 99)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on sorted data."""
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Iterable[float | None]) -> dict[str, float | int | None]:
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    summary: dict[str, float | int | None] = {"count": len(ordered)}
    for p in PERCENTILES:
        summary[f"p{p}"] = round(percentile(ordered, p), 3)
    summary["max"] = round(ordered[-1], 3)
    summary["mean"] = round(sum(ordered) / len(ordered), 3)
    return summary


def histogram(values: Sequence[float]) -> dict[str, list[float] | list[int]]:
    """Counts per log-spaced bucket (10 per decade, 0.1 ms to 100 s): enough for a CDF plot."""
    edges = [round(0.1 * 10 ** (k / 10), 4) for k in range(61)]
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_right(edges, value)] += 1
    return {"upper_edges_ms": edges, "counts": counts}


def _sum(requests: list[dict[str, Any]], key: str) -> int:
    return sum(int(r[key]) for r in requests)


def mode_figures(
    outcomes: list[dict[str, Any]],
    cpu_delta: dict[str, float],
    *,
    concurrency: int,
    requests_per_session: int,
    tps: float,
) -> dict[str, Any]:
    """The figures of one path (pipeline or relay) at one concurrency."""
    requests = [r for o in outcomes for r in o["requests"]]
    latencies = [x for o in outcomes for x in o["latencies_ms"]]
    delivered = _sum(requests, "delivered")
    starts = [r["t0"] for r in requests if r["t0"]]
    ends = [r["last_at"] for r in requests if r["last_at"]]
    span = (max(ends) - min(starts)) if starts and ends else None
    errors = [r["error"] for r in requests if r["error"]]
    expected_requests = concurrency * requests_per_session
    figures: dict[str, Any] = {
        "requests": len(requests),
        "expected_requests": expected_requests,
        "missing_requests": max(0, expected_requests - len(requests)),
        "ok_requests": sum(1 for r in requests if r["ok"]),
        "tokens_expected": _sum(requests, "expected"),
        "tokens_delivered": delivered,
        "lost": _sum(requests, "lost"),
        "duplicated": _sum(requests, "duplicated"),
        "reordered": _sum(requests, "reordered"),
        "mismatched_requests": sum(1 for r in requests if r["mismatched"]),
        "unfinished_requests": sum(1 for r in requests if r.get("unfinished")),
        "undelivered_tokens": sum(int(r.get("undelivered", 0)) for r in requests),
        "errors": len(errors),
        "retries": _sum(requests, "retries"),
        "reconnects": sum(int(o["reconnects"]) for o in outcomes),
        "id_violations": sum(int(o["id_violations"]) for o in outcomes),
        "error_samples": [e for o in outcomes for e in o["errors"]][:10],
        "latency_ms": distribution(latencies),
        "latency_histogram": histogram(latencies),
        # Where the pipeline's per-token time goes: inside the worker (chunk received -> event
        # built), then producer + broker + edge + SSE (event built -> client parsed).
        "latency_stages_ms": {
            "worker": distribution(x for o in outcomes for x in o["worker_ms"]),
            "after_worker": distribution(x for o in outcomes for x in o["after_worker_ms"]),
        },
        "ttft_added_ms": distribution(r["ttft_added_ms"] for r in requests),
        "ttft_added_first_request_ms": distribution(
            r["ttft_added_ms"] for r in requests if r["index"] == 0
        ),
        "ttft_added_later_requests_ms": distribution(
            r["ttft_added_ms"] for r in requests if r["index"] > 0
        ),
        "ttft_breakdown_first_request_p50_ms": _breakdown([r for r in requests if r["index"] == 0]),
        "ttft_breakdown_p50_ms": {
            "submit_answered": distribution(r.get("submit_ms") for r in requests)["p50"],
            "ingress_to_accepted": distribution(r["ttft_ingress_ms"] for r in requests)["p50"],
            "accepted_to_first_chunk_minus_ttft": distribution(
                r["ttft_llm_ms"] for r in requests
            )["p50"],
            "first_chunk_to_client": distribution(r["ttft_delivery_ms"] for r in requests)["p50"],
        },
        "duration_s": None if span is None else round(span, 3),
        "tokens_per_s": round(delivered / span, 1) if span and span > 0 else None,
        "offered_tokens_per_s": concurrency * tps,
        "cpu_s": {name: round(v, 3) for name, v in cpu_delta.items()},
        "cpu_s_per_1k_tokens": {
            name: round(v * 1000 / delivered, 4) if delivered else None
            for name, v in cpu_delta.items()
        },
        "client_cpu_s": round(sum(float(o["cpu_s"]) for o in outcomes), 3),
        "requests_per_edge": _per_edge(outcomes),
    }
    figures["clean"] = integrity_clean(figures)
    return figures


def _per_edge(outcomes: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        for port, n in outcome.get("requests_per_edge", {}).items():
            counts[port] = counts.get(port, 0) + int(n)
    return dict(sorted(counts.items()))


def _breakdown(requests: list[dict[str, Any]]) -> dict[str, float | int | None]:
    keys = {"submit_answered": "submit_ms", "ingress_to_accepted": "ttft_ingress_ms",
            "accepted_to_first_chunk_minus_ttft": "ttft_llm_ms",
            "first_chunk_to_client": "ttft_delivery_ms"}
    return {name: distribution(r.get(key) for r in requests)["p50"] for name, key in keys.items()}


def integrity_clean(figures: dict[str, Any]) -> bool:
    keys = ("missing_requests", "lost", "duplicated", "reordered", "mismatched_requests",
            "errors", "retries", "id_violations")
    return all(figures[k] == 0 for k in keys)


def added(pipeline: dict[str, Any], relay: dict[str, Any], key: str) -> dict[str, float | None]:
    """Pipeline minus relay, percentile by percentile."""
    out: dict[str, float | None] = {}
    for name in ("p50", "p90", "p99", "max"):
        a, b = pipeline[key].get(name), relay[key].get(name)
        out[name] = None if a is None or b is None else round(a - b, 3)
    return out


def broker_net(pipeline: dict[str, Any], relay: dict[str, Any]) -> float | None:
    """The shared broker's CPU per 1k pipeline tokens, less its rate while only the relay ran."""
    busy, idle = pipeline["cpu_s"].get("kafka"), relay["cpu_s"].get("kafka")
    tokens = pipeline["tokens_delivered"]
    if busy is None or idle is None or not tokens:
        return None
    net = busy - idle / relay["wall_s"] * pipeline["wall_s"]
    return round(max(0.0, net) * 1000 / tokens, 4)


def cpu_per_1k(pipeline: dict[str, Any], relay: dict[str, Any]) -> dict[str, float | None]:
    """CPU seconds per 1k delivered tokens of everything the pipeline adds (all its workers,
    all its edges, the broker's net share), beside the relay's own process.

    The simulator's CPU is the same on both paths (it stands in for the LLM) and is left out
    of both."""
    per = pipeline["cpu_s_per_1k_tokens"]
    workers = _role_sum(per, "worker")
    edges = _role_sum(per, "edge")
    broker = broker_net(pipeline, relay)
    total = None if workers is None or edges is None else round(workers + edges + (broker or 0), 4)
    own = relay["cpu_s_per_1k_tokens"].get("relay")
    ratio = round(total / own, 2) if total is not None and own else None
    return {"workers": workers, "edges": edges, "broker_net": broker, "total": total,
            "relay": own, "total_over_relay": ratio}


def _role_sum(per_1k: dict[str, float | None], role: str) -> float | None:
    """``worker`` + ``worker2`` + ... (None when no such process ran or had no tokens)."""
    values = [v for name, v in per_1k.items() if name.startswith(role) and v is not None]
    return round(sum(values), 4) if values else None


def added_figures(pipeline: dict[str, Any], relay: dict[str, Any]) -> dict[str, Any]:
    """What the pipeline adds over the relay at the same concurrency."""
    return {
        "latency_ms": added(pipeline, relay, "latency_ms"),
        "ttft_ms": added(pipeline, relay, "ttft_added_ms"),
        "broker_cpu_s_per_1k_tokens_net": broker_net(pipeline, relay),
        "cpu_s_per_1k_tokens": cpu_per_1k(pipeline, relay),
    }
