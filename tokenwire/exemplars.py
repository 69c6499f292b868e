"""Latency observations that name their trace, and /metrics in the format the scraper asks for.

``observe(histogram, value)`` attaches ``{"trace_id": <32 hex>}`` as an OpenMetrics exemplar
when a sampled span is current (tokenwire/tracing.py makes the request's span current around
the TTFT, token-emit and request-duration observations), nothing otherwise: with tracing off the
current span is the invalid one and the cost is that one check. A histogram keeps the latest
exemplar of each bucket, so a slow bucket points at one recent slow request's trace.

Exemplars exist only in the OpenMetrics exposition: ``metrics_response`` serves it to a scraper
that sends ``Accept: application/openmetrics-text`` (Prometheus does, and stores exemplars with
``--enable-feature=exemplar-storage``), the classic text format to anyone else.
"""

from __future__ import annotations

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response


def observe(histogram: Histogram, value: float) -> None:
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        histogram.observe(value, {"trace_id": format(context.trace_id, "032x")})
    else:
        histogram.observe(value)


def metrics_response(registry: CollectorRegistry, request: Request) -> Response:
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), headers={"content-type": content_type})
