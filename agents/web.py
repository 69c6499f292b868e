"""The worker's HTTP face: /metrics for Prometheus, /healthz and /readyz for orchestrators."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.chat.runtime import ChatRuntime


def create_worker_web(runtime: ChatRuntime) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

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
