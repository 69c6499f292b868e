"""``serve(settings)``: run the edge under uvicorn until SIGINT/SIGTERM (``tokenwire edge``).

Returns 0 after a clean stop on SIGINT, 1 if the app failed to start. As with uvicorn itself, a
SIGTERM is re-raised once the graceful shutdown is done, so the process ends by that signal.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from api.access_log import mask_tokens_in_access_log
from api.app import create_app
from api.runtime import EdgeRuntime
from tokenwire import tracing
from tokenwire.log_format import uvicorn_log_config
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

# SSE streams are ended at once on shutdown, so connections close well within this.
GRACEFUL_SHUTDOWN_S = 3


class EdgeServer(uvicorn.Server):
    """uvicorn that ends every SSE stream before it waits for connections to close.

    sse-starlette also ends streams when it sees the exit signal (it polls for it); draining the
    hub first makes that immediate and covers a shutdown that is not signal-driven.
    """

    def __init__(self, config: uvicorn.Config, runtime: EdgeRuntime) -> None:
        super().__init__(config)
        self._runtime = runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._runtime.hub.drain()
        await super().shutdown(sockets=sockets)
        # Now, not at exit: uvicorn re-raises SIGTERM after this, and atexit never runs then.
        await asyncio.to_thread(tracing.shutdown)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    mask_tokens_in_access_log()
    tracing.configure_tracing(tracing.EDGE_SERVICE)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host if host is not None else settings.edge_host,
        port=port if port is not None else settings.edge_port,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings.log_format),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )
    server = EdgeServer(config, app.state.runtime)
    log.info("edge starting host=%s port=%s", config.host, config.port)
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises the SIGINT it handled, once shutdown is complete: that is a clean stop.
        pass
    return 0 if server.started else 1
