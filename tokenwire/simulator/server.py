"""The OpenAI-compatible simulator: a Starlette app served by uvicorn.

``POST /v1/chat/completions`` (stream and non-stream), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /v1/_sim/closed`` (streams the client closed early) and
``GET /healthz``. What it answers is decided by
:mod:`tokenwire.simulator.script`; how it looks on the wire by
:mod:`tokenwire.simulator.wire`. Streams are paced with ``asyncio.sleep`` against absolute
deadlines, so a thousand concurrent streams cost a thousand sleeping coroutines.

A "cut" ends the ASGI call after some body chunks without the final (empty, last)
chunk: uvicorn then closes the socket mid chunked body, which a client sees as a
protocol error (httpx ``RemoteProtocolError`` -> ``openai.APIConnectionError``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tokenwire.settings import Settings
from tokenwire.simulator.request import ChatRequest, parse_body
from tokenwire.simulator.script import (
    CallCounter,
    CallPlan,
    DirectiveError,
    PromptCount,
    conversation_key,
    count_prompt,
    last_user_text,
    parse_directives,
    plan_call,
)
from tokenwire.simulator.wire import (
    DONE_FRAME,
    ChunkWriter,
    WireError,
    completion,
    dumps,
    error_body,
    model_list,
    model_object,
    request_id,
    role_delta,
    status_error,
)

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("gpt-4o-mini",)
MAX_CLOSED_RECORDS = 1_000
MAX_RECEIVED_RECORDS = 1_000
PROMPT_PREVIEW_CHARS = 256
_INCOMPLETE_MSG = "ASGI callable returned without completing response."
_deliberate_cut: ContextVar[bool] = ContextVar("tokenwire_sim_deliberate_cut", default=False)


class _DeliberateCutFilter(logging.Filter):
    """Hides uvicorn's error line for the responses the simulator cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _INCOMPLETE_MSG and _deliberate_cut.get())


def _install_cut_log_filter() -> None:
    uvicorn_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DeliberateCutFilter) for f in uvicorn_logger.filters):
        uvicorn_logger.addFilter(_DeliberateCutFilter())


# --- a body that can be cut -------------------------------------------------------------


# (frame bytes, how many pieces they carry): the pump counts what the client was sent.
Frames = AsyncIterator[tuple[bytes, int]]
EarlyClose = Callable[[float, int], None]


class BodyStream(Response):
    """Sends ``frames`` as they come; with ``cut`` the response is never completed.

    The pump runs beside a watcher of ``http.disconnect`` so a client that goes away
    stops the pacing coroutine at once. When the client leaves before the last frame
    was sent, ``on_early_close(closed_at, pieces_sent)`` is called; ``closed_at`` is
    ``time.time()`` taken when the disconnect arrived, not when the pacing woke.
    """

    def __init__(
        self,
        frames: Frames,
        *,
        headers: Mapping[str, str],
        cut: bool = False,
        status_code: int = 200,
        on_early_close: EarlyClose | None = None,
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.frames = frames
        self.cut = cut
        self.on_early_close = on_early_close
        self.pieces_sent = 0
        self.all_sent = False
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        pump = asyncio.create_task(self._pump(send))
        watch = asyncio.create_task(_wait_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.cancel()
            watch.cancel()
        if watch.done() and not watch.cancelled() and not self.all_sent:
            if self.on_early_close is not None:
                self.on_early_close(watch.result(), self.pieces_sent)
            return
        if pump.done() and not pump.cancelled():
            pump.result()
            if self.cut:
                _deliberate_cut.set(True)

    async def _pump(self, send: Send) -> None:
        async for chunk, pieces in self.frames:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.pieces_sent += pieces
        self.all_sent = True
        if not self.cut:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_disconnect(receive: Receive) -> float:
    """Waits for the client to go away; returns when it did (epoch seconds)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    return time.time()


# --- pacing -----------------------------------------------------------------------------


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - _now()
    if delay > 0:
        await asyncio.sleep(delay)


class Pacer:
    """Deadlines of piece i: start + ttft + i / tps, shifted by any stall."""

    def __init__(self, plan: CallPlan, start: float) -> None:
        self._plan = plan
        self._base = start + plan.ttft_s

    def _at(self, index: int) -> float:
        return self._base + index / self._plan.tps

    @property
    def first(self) -> float:
        return self._base

    def deadline(self, index: int) -> float:
        """When piece ``index`` (the finish chunk: index = len) is due; ask in order."""
        if self._plan.stall_after == index:
            late = max(0.0, _now() - self._at(index))
            self._base += late + self._plan.stall_s
        return self._at(index)

    @property
    def done_at(self) -> float:
        """When a non-streamed answer is complete."""
        stalls = self._plan.stall_s if self._plan.stall_after is not None else 0.0
        return self._at(len(self._plan.pieces)) + stalls


def schedule(
    plan: CallPlan, writer: ChunkWriter, prompt: PromptCount, start: float
) -> Iterator[tuple[float, bytes, int]]:
    """(deadline, frame, pieces in it) of every frame of one streamed answer, in order.

    A tool call opens with a header chunk (id, type, name) just before its first
    argument fragment; call 0's header rides in the role chunk unless reasoning comes
    first, as OpenAI sends it.
    """
    answer = plan.answer
    pacer = Pacer(plan, start)
    yield pacer.first, writer.role(answer), 0
    opened = {0} if "tool_calls" in role_delta(answer) else set()
    total = len(answer.pieces)
    sent = total if plan.cut_after is None else min(plan.cut_after, total)
    for index in range(sent):
        piece = answer.pieces[index]
        due = pacer.deadline(index)
        if piece.kind == "arguments" and piece.index not in opened:
            opened.add(piece.index)
            yield due, writer.tool_header(answer.tool_calls[piece.index]), 0
        yield due, writer.piece(piece, index, answer.seed), 1
    if plan.cut_after is not None:
        logger.info("chat cut id=%s after_pieces=%d", writer.id, sent)
        return
    done = pacer.deadline(total)
    yield done, writer.finish(answer.finish_reason), 0
    if writer.include_usage:
        yield done, writer.usage(answer, prompt), 0
    yield done, DONE_FRAME, 0


async def paced(frames: Iterator[tuple[float, bytes, int]]) -> Frames:
    """Each frame at its deadline; frames already due go out together in one write."""
    pending: list[bytes] = []
    count = 0
    for deadline, frame, pieces in frames:
        if deadline > _now():
            if pending:
                yield b"".join(pending), count
                pending, count = [], 0
            await _sleep_until(deadline)
        pending.append(frame)
        count += pieces
    if pending:
        yield b"".join(pending), count


# --- endpoints --------------------------------------------------------------------------


class Simulator:
    """The endpoints and their shared state (call counter, early-close record, defaults)."""

    def __init__(
        self, *, ttft_ms: float, tokens_per_s: float, models: Sequence[str], max_keys: int
    ) -> None:
        if ttft_ms < 0 or tokens_per_s <= 0:
            raise ValueError("ttft_ms must be >= 0 and tokens_per_s > 0")
        self.ttft_ms = ttft_ms
        self.tokens_per_s = tokens_per_s
        self.models = list(dict.fromkeys(models))
        self.calls = CallCounter(max_keys)
        self.closed: deque[dict[str, Any]] = deque(maxlen=MAX_CLOSED_RECORDS)
        # What callers sent, to show a gateway forwards options unchanged (messages left out:
        # they may be large; the prompt preview names the request).
        self.received: deque[dict[str, Any]] = deque(maxlen=MAX_RECEIVED_RECORDS)

    async def chat_completions(self, request: Request) -> Response:
        start = asyncio.get_running_loop().time()
        opened_at = time.time()
        chat = parse_body(await request.body())
        plan = self._plan(chat)
        self.received.append(
            {"prompt": last_user_text(chat.messages)[:PROMPT_PREVIEW_CHARS],
             "messages": len(chat.messages), "options": chat.options}
        )  # fmt: skip
        logger.info(
            "chat model=%s stream=%s messages=%d pieces=%d tools=%d finish=%s call=%d fault=%s",
            chat.model,
            chat.stream,
            len(chat.messages),
            len(plan.pieces),
            len(plan.answer.tool_calls),
            plan.finish_reason,
            plan.call_index,
            plan.fault,
        )
        headers = {"x-request-id": request_id(), "openai-model": chat.model}
        if plan.fail_status is not None:
            return _failure(plan, headers)
        if chat.stream:
            return self._streaming(chat, plan, headers, start, opened_at)
        return await _complete(chat, plan, headers, start)

    def _plan(self, chat: ChatRequest) -> CallPlan:
        try:
            directives = parse_directives(last_user_text(chat.messages))
        except DirectiveError as exc:
            raise WireError(400, f"Invalid sim directive: {exc}", param="messages") from None
        return plan_call(
            chat.messages,
            directives,
            call_index=self.calls.next(conversation_key(chat.messages)),
            max_tokens=chat.max_tokens,
            ttft_ms=self.ttft_ms,
            tokens_per_s=self.tokens_per_s,
            response_format=chat.response_format,
        )

    def _streaming(
        self,
        chat: ChatRequest,
        plan: CallPlan,
        headers: dict[str, str],
        start: float,
        opened_at: float,
    ) -> Response:
        writer = ChunkWriter(
            model=chat.model, include_usage=chat.include_usage, top_logprobs=chat.top_logprobs
        )
        headers |= {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        frames = paced(schedule(plan, writer, count_prompt(chat.messages), start))
        prompt = last_user_text(chat.messages)[:PROMPT_PREVIEW_CHARS]

        def record_early_close(closed_at: float, pieces_sent: int) -> None:
            self.closed.append(
                {
                    "id": writer.id,
                    "prompt": prompt,
                    "tokens_sent": pieces_sent,
                    "opened_at": opened_at,
                    "closed_at": closed_at,
                }
            )
            logger.info("chat closed early id=%s tokens_sent=%d", writer.id, pieces_sent)

        return BodyStream(
            frames,
            headers=headers,
            cut=plan.cut_after is not None,
            on_early_close=record_early_close,
        )

    async def received_requests(self, request: Request) -> Response:
        """``GET /v1/_sim/requests``: the last requests' options (all but messages)."""
        return JSONResponse({"requests": list(self.received)})

    async def closed_streams(self, request: Request) -> Response:
        """``GET /v1/_sim/closed``: streams the client closed before their end, oldest first."""
        return JSONResponse({"closed": list(self.closed)})

    async def list_models(self, request: Request) -> Response:
        return JSONResponse(model_list(self.models))

    async def get_model(self, request: Request) -> Response:
        model = request.path_params["model"]
        if model not in self.models:
            raise WireError(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return JSONResponse(model_object(model))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


def _failure(plan: CallPlan, headers: dict[str, str]) -> Response:
    assert plan.fail_status is not None
    error = status_error(plan.fail_status)
    if plan.retry_after_s is not None:
        headers["retry-after"] = f"{plan.retry_after_s:g}"
        headers["retry-after-ms"] = str(round(plan.retry_after_s * 1000))
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _complete(
    chat: ChatRequest, plan: CallPlan, headers: dict[str, str], start: float
) -> Response:
    await _sleep_until(Pacer(plan, start).done_at)
    body = completion(
        model=chat.model,
        answer=plan.answer,
        prompt=count_prompt(chat.messages),
        top_logprobs=chat.top_logprobs,
    )
    if plan.cut_after is None:
        return JSONResponse(body, headers=headers)
    return _cut_json(dumps(body).encode(), headers)


def _cut_json(payload: bytes, headers: dict[str, str]) -> Response:
    """Half of a JSON body under the full content-length: the client sees a short read."""
    headers |= {"content-type": "application/json", "content-length": str(len(payload))}

    async def half() -> Frames:
        yield payload[: len(payload) // 2], 0

    return BodyStream(half(), headers=headers, cut=True)


# --- errors -----------------------------------------------------------------------------


async def _wire_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WireError)
    if exc.status < 500:
        logger.info(
            "chat rejected status=%d param=%s code=%s message=%s",
            exc.status,
            exc.param,
            exc.code,
            exc.message,
        )
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = f"Invalid URL ({request.method} {request.url.path})"
    if exc.status_code != 404:
        message = f"{exc.detail}: {request.method} {request.url.path}"
    body = error_body(message, type="invalid_request_error")
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


# --- app and server ---------------------------------------------------------------------


def create_app(
    *,
    ttft_ms: float,
    tokens_per_s: float,
    models: Sequence[str] = DEFAULT_MODELS,
    max_conversations: int = 10_000,
) -> Starlette:
    """The simulator app; ``models`` is what ``/v1/models`` lists (any model is served)."""
    sim = Simulator(
        ttft_ms=ttft_ms, tokens_per_s=tokens_per_s, models=models, max_keys=max_conversations
    )
    _install_cut_log_filter()
    routes = [
        Route("/v1/chat/completions", sim.chat_completions, methods=["POST"]),
        Route("/v1/models", sim.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", sim.get_model, methods=["GET"]),
        Route("/v1/_sim/closed", sim.closed_streams, methods=["GET"]),
        Route("/v1/_sim/requests", sim.received_requests, methods=["GET"]),
        Route("/healthz", sim.healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={WireError: _wire_error, HTTPException: _http_error},
    )
    app.state.simulator = sim
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Run the simulator until Ctrl-C; returns the process exit code."""
    host = host or settings.sim_host
    port = settings.sim_port if port is None else port
    models = (settings.default_model, *DEFAULT_MODELS)
    app = create_app(
        ttft_ms=settings.sim_ttft_ms, tokens_per_s=settings.sim_tokens_per_s, models=models
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
    )
    logger.info(
        "simulator starting url=http://%s:%d/v1 ttft_ms=%s tokens_per_s=%s",
        host,
        port,
        settings.sim_ttft_ms,
        settings.sim_tokens_per_s,
    )
    try:
        uvicorn.Server(config).run()
    except SystemExit as exc:  # uvicorn exits this way when it cannot bind
        return exc.code if isinstance(exc.code, int) else 1
    return 0
