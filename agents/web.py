"""The worker's HTTP face: /metrics for Prometheus (OpenMetrics, with exemplars, when asked),
/healthz and /readyz for orchestrators."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.chat.runtime import ChatRuntime
from tokenwire.exemplars import metrics_response


def create_worker_web(runtime: ChatRuntime) -> Starlette:
    async def metrics(request: Request) -> Response:
        return metrics_response(runtime.metrics.registry, request)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        ready = runtime.ready.is_set()
        return JSONResponse(
            {"status": "ready" if ready else "starting", "inflight": len(runtime.inflight)},
            status_code=200 if ready else 503,
        )

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
