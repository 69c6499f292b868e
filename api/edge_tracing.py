"""The edge's spans (names in ``tokenwire.tracing``): ``chat.ingress`` around every way in, and
``edge.first_token`` / ``edge.delivered`` when a stream has written a request's events.

Installed only when tracing is on (``api.app``): off, no middleware runs and streams never look
at an entry's type for tracing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.session_entries import TracedEntry
from api.session_feed import Entry
from schemas.session_events import TERMINAL_TYPES
from tokenwire import tracing

# POST /v1/chat and the protocol adapters' POSTs: all of them publish through admit_chat.
INGRESS_PATHS = frozenset({"/v1/chat", "/v1/ui/chat", "/v1/chat/completions"})
_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate"})


class IngressTracing:
    """ASGI middleware: ``chat.ingress`` as the server span of the ways in, continuing an
    incoming ``traceparent``; on other POSTs (cancels) the incoming context alone is current, so
    their spans continue the caller's trace too.

    The span ends when the response starts: an OpenAI ``stream: true`` answer goes on streaming
    in the same request, and its delivery has spans of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        carried = [
            (name.decode("latin-1"), value)
            for name, value in scope["headers"] if name in _CONTEXT_HEADERS
        ]  # fmt: skip
        parent = tracing.extract(carried)
        if scope["path"] not in INGRESS_PATHS:
            token = tracing.attach(parent)
            try:
                await self.app(scope, receive, send)
            finally:
                tracing.detach(token)
            return
        await self._ingress(scope, receive, send, parent)

    async def _ingress(self, scope: Scope, receive: Receive, send: Send, parent: object) -> None:
        span = tracing.tracer().start_span(
            tracing.INGRESS, context=parent, kind=SpanKind.SERVER,  # type: ignore[arg-type]
            attributes={"http.request.method": "POST", "url.path": scope["path"],
                        "http.route": scope["path"]},
        )  # fmt: skip
        ended = False

        async def send_and_end(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.start" and not ended:
                status = int(message["status"])
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
                ended = True
            await send(message)

        token = tracing.attach(trace.set_span_in_context(span, parent))  # type: ignore[arg-type]
        try:
            await self.app(scope, receive, send_and_end)
        except BaseException as exc:
            if not ended:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            tracing.detach(token)
            if not ended:
                span.end()


def record_deliveries(batch: Sequence[Entry], session_id: str) -> None:
    """Spans for the traced entries a stream has just written: an attempt's first output
    (``edge.first_token``) and the request's end (``edge.delivered``), each from the record's
    timestamp (the worker's send) to now, a child of the worker's ``chat.request``."""
    now_ns = time.time_ns()
    for entry in batch:
        if type(entry) is not TracedEntry or entry.type in ("start", "retry"):
            continue
        name = tracing.DELIVERED if entry.type in TERMINAL_TYPES else tracing.FIRST_TOKEN
        start_ns = min(now_ns, entry.timestamp_ms * 1_000_000) if entry.timestamp_ms else now_ns
        span = tracing.tracer().start_span(
            name, context=tracing.extract(entry.headers), start_time=start_ns,
            attributes={
                "tokenwire.session_id": session_id, "tokenwire.request_id": entry.request_id,
                "tokenwire.event": entry.type, "messaging.kafka.offset": entry.offset,
            },
        )  # fmt: skip
        span.end(end_time=now_ns)
