"""The edge's Prometheus metrics, in a registry of its own per app.

Labels are bounded on purpose: never a session, request or user id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from api.connection_limits import REFUSALS
from tokenwire.exemplars import metrics_response

# Outcomes of POST /v1/chat; the label takes no other value.
OUTCOMES = (
    "accepted",
    "bad_request",
    "invalid",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "risk_throttled",
    "unavailable",
)
# Outcomes of POST /v1/sessions/{id}/requests/{id}/cancel (api/cancel.py); no other value.
CANCEL_OUTCOMES = (
    "accepted",
    "repeated",
    "finished",
    "bad_request",
    "invalid",
    "unauthorized",
    "forbidden",
    "unavailable",
)
# Why GET /v1/sessions/{id}/events was refused before streaming; no other label value.
REFUSED_POSITION = "position_out_of_range"
SSE_REFUSALS = (*REFUSALS, REFUSED_POSITION)


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tokenwire_edge_requests",
            "POST /v1/chat requests by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.sse_connections = Gauge(
            "tokenwire_edge_sse_connections",
            "SSE connections currently streaming.",
            registry=self.registry,
        )
        self.sse_events = Counter(
            "tokenwire_edge_sse_events",
            "Session events sent to SSE clients.",
            registry=self.registry,
        )
        self.slow_client_closes = Counter(
            "tokenwire_edge_slow_client_closes",
            "SSE connections closed because the client fell behind.",
            registry=self.registry,
        )
        self.hub_sessions = Gauge(
            "tokenwire_edge_hub_sessions",
            "Sessions the shared consumer currently follows.",
            registry=self.registry,
        )
        self.sse_refused = Counter(
            "tokenwire_edge_sse_refused",
            "SSE streams refused before streaming, by reason (connection caps, resume position).",
            ["reason"],
            registry=self.registry,
        )
        self.hub_consumer_restarts = Counter(
            "tokenwire_edge_hub_consumer_restarts",
            "Times the shared consumer was found broken and replaced.",
            registry=self.registry,
        )
        self.cancels = Counter(
            "tokenwire_edge_cancels",
            "POST …/requests/{id}/cancel by outcome (accepted, repeated, finished, refusals).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.requests.labels(outcome=outcome)
        for outcome in CANCEL_OUTCOMES:
            self.cancels.labels(outcome=outcome)
        for reason in SSE_REFUSALS:
            self.sse_refused.labels(reason=reason)

    def outcome(self, outcome: str) -> None:
        self.requests.labels(outcome=outcome).inc()

    def cancel_outcome(self, outcome: str) -> None:
        self.cancels.labels(outcome=outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_endpoint(metrics: EdgeMetrics) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # OpenMetrics for a scraper that asks (Prometheus), the classic text format otherwise.
        return metrics_response(metrics.registry, request)

    return endpoint
