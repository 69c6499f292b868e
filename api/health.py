"""``/healthz`` (the process answers) and ``/readyz`` (Kafka answers; the hub's consumer is
whole, not being replaced)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.runtime import EdgeRuntime

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 3.0


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    runtime: EdgeRuntime = request.app.state.runtime
    checks = {"session_hub": "ok" if runtime.hub.ready else "down"}
    try:
        requests_topic = runtime.settings.requests_topic
        topics = await runtime.hub.existing_topics([requests_topic], READY_TIMEOUT_S)
    except Exception as exc:  # any failure to reach Kafka means "not ready", never a 500
        log.warning("readiness check failed error=%r", exc)
        checks["kafka"] = "unreachable"
    else:
        checks["kafka"] = "ok"
        checks["requests_topic"] = "ok" if requests_topic in topics else "missing"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
