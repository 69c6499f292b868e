"""The baseline: the simulator streamed straight to SSE clients, no Kafka.

``GET /relay?prompt=...`` calls the LLM with the same client and the same chunk reader as
the worker (``agents.chat.llm_stream``), stamps ``received_at`` at the same point, and sends the
same event shapes (start, token {text, received_at, seq}, done) through sse-starlette under
uvicorn, as the edge does. The difference between the two paths is then Kafka, the worker's
session writer and the edge's hub. Run with ``python -m tokenwire.bench.relay --host H --port P``
(settings from the ``TOKENWIRE_*`` environment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.chat.llm_stream import new_client, stream_chunks
from schemas.requests import ChatMessage, ChatRequest
from tokenwire.errors import GenerationError
from tokenwire.settings import Settings, get_settings

log = logging.getLogger(__name__)


def _event(kind: str, seq: int, request_id: str, **fields: object) -> ServerSentEvent:
    data = {"type": kind, "request_id": request_id, "attempt": 1, "seq": seq, **fields}
    return ServerSentEvent(json.dumps(data), event=kind, id=str(seq))


def create_relay_app(settings: Settings) -> Starlette:
    client = new_client(settings)

    async def relay(request: Request) -> Response:
        prompt = request.query_params.get("prompt", "")
        request_id = request.query_params.get("request_id") or uuid.uuid4().hex
        chat = ChatRequest(
            request_id=request_id, session_id="relay", user_id="relay",
            messages=[ChatMessage(role="user", content=prompt)],
        )
        return EventSourceResponse(
            _events(chat, time.time()),
            ping=settings.sse_ping_s,
            send_timeout=settings.sse_send_timeout_s,
            sep="\n",
        )

    async def _events(chat: ChatRequest, accepted_at: float) -> AsyncIterator[ServerSentEvent]:
        assert chat.request_id is not None
        rid, seq = chat.request_id, 0
        yield _event("start", seq, rid, accepted_at=accepted_at)
        try:
            async for chunk in stream_chunks(client, chat, settings.default_model):
                if chunk.text:
                    seq += 1
                    yield _event("token", seq, rid, text=chunk.text, received_at=chunk.received_at)
        except GenerationError as exc:
            yield _event("error", seq + 1, rid, code=exc.code, message=str(exc))
            return
        yield _event("done", seq + 1, rid)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.close()

    return Starlette(
        routes=[Route("/relay", relay), Route("/healthz", healthz)], lifespan=lifespan
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="direct LLM -> SSE relay (benchmark baseline)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The same uvicorn settings as the edge (api/server.py): defaults plus the log level.
    config = uvicorn.Config(
        create_relay_app(settings), host=args.host, port=args.port,
        log_level=settings.log_level.lower(), timeout_graceful_shutdown=3, lifespan="on",
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
