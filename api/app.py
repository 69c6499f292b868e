"""``create_app(settings)``: the edge as one Starlette app.

Routes: ``POST /v1/chat``, ``GET /v1/sessions/{session_id}/events`` (SSE),
``POST /v1/sessions/{session_id}/requests/{request_id}/cancel``, ``GET /`` (chat page),
``/healthz``, ``/readyz``, ``/metrics``. The lifespan starts and stops the Kafka producer,
admin client and the shared session hub (``app.state.runtime``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from api import client_assets
from api.adapters import openai_chat, ui_chat
from api.auth.development import page_for_this_visit
from api.cancel import post_cancel
from api.edge_tracing import IngressTracing
from api.errors import EXCEPTION_HANDLERS
from api.health import healthz, readyz
from api.ingress import post_chat
from api.metrics import metrics_endpoint
from api.openapi import openapi_document
from api.runtime import EdgeRuntime
from api.session_stream import session_events
from tokenwire import tracing
from tokenwire.settings import Settings

PAGE = Path(__file__).parent / "static" / "index.html"


def create_app(settings: Settings) -> Starlette:
    """The edge; refuses (``UnsafeSettingsError``) built-in secrets outside development mode."""
    settings.require_safe("edge")
    runtime = EdgeRuntime(settings)
    page = PAGE.read_text(encoding="utf-8")

    async def index(_: Request) -> HTMLResponse:
        # The page may carry a development credential: never cache it.
        return HTMLResponse(
            page_for_this_visit(settings, page), headers={"Cache-Control": "no-store"}
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/v1/chat", post_chat, methods=["POST"]),
        Route(
            "/v1/sessions/{session_id}/events", session_events,
            methods=["GET"], name="session_events",
        ),
        Route(
            "/v1/sessions/{session_id}/requests/{request_id}/cancel", post_cancel,
            methods=["POST"], name="cancel_request",
        ),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint(runtime.metrics), methods=["GET"]),
        *ui_chat.ROUTES,
        *openai_chat.ROUTES,
        *client_assets.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        middleware=_middleware(settings),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


def _middleware(settings: Settings) -> list[Middleware]:
    # Tracing innermost: CORS preflights answered by CORSMiddleware are no ingress.
    traced = [Middleware(IngressTracing)] if tracing.is_enabled() else []
    if not settings.cors_origins:
        return traced
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization", "Content-Type", "Last-Event-ID", "X-Stream-Token", "X-API-Key",
            ],
            expose_headers=[
                "Retry-After", "x-tokenwire-session-id", "x-tokenwire-request-id",
                "x-vercel-ai-ui-message-stream",
            ],
            max_age=600,
        ),
        *traced,
    ]
