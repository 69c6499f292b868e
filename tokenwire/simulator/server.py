"""The OpenAI-compatible simulator: a Starlette app served by uvicorn.

``POST /v1/chat/completions`` (stream and non-stream), ``GET /v1/models``,
``GET /v1/models/{id}`` and ``GET /healthz``. What it answers is decided by
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
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
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
    content_text,
    conversation_key,
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
    status_error,
)

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("gpt-4o-mini",)
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


class BodyStream(Response):
    """Sends ``frames`` as they come; with ``cut`` the response is never completed.

    The pump runs beside a watcher of ``http.disconnect`` so a client that goes away
    stops the pacing coroutine at once.
    """

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str],
        cut: bool = False,
        status_code: int = 200,
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.frames = frames
        self.cut = cut
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
        if pump.done() and not pump.cancelled():
            pump.result()
            if self.cut:
                _deliberate_cut.set(True)

    async def _pump(self, send: Send) -> None:
        async for chunk in self.frames:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not self.cut:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# --- pacing -----------------------------------------------------------------------------


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - _now()
    if delay > 0:
        await asyncio.sleep(delay)


class Pacer:
    """Deadlines of token i: start + ttft + i / tps, shifted by any stall."""

    def __init__(self, plan: CallPlan, start: float) -> None:
        self._plan = plan
        self._base = start + plan.ttft_s

    def _at(self, index: int) -> float:
        return self._base + index / self._plan.tps

    @property
    def first(self) -> float:
        return self._base

    def deadline(self, index: int) -> float:
        """When token ``index`` (the finish chunk: index = len) is due; ask in order."""
        if self._plan.stall_after == index:
            late = max(0.0, _now() - self._at(index))
            self._base += late + self._plan.stall_s
        return self._at(index)

    @property
    def done_at(self) -> float:
        """When a non-streamed answer is complete."""
        stalls = self._plan.stall_s if self._plan.stall_after is not None else 0.0
        return self._at(len(self._plan.tokens)) + stalls


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """A stable stand-in for tiktoken: words plus OpenAI's per-message overhead."""
    return 3 + sum(4 + len(content_text(m.get("content")).split()) for m in messages)


def schedule(
    plan: CallPlan, writer: ChunkWriter, n_prompt: int, start: float
) -> Iterator[tuple[float, bytes]]:
    """(deadline, frame) of every frame of one streamed answer, lazily, in order."""
    pacer = Pacer(plan, start)
    yield pacer.first, writer.role()
    total = len(plan.tokens)
    sent = total if plan.cut_after is None else min(plan.cut_after, total)
    for index in range(sent):
        yield pacer.deadline(index), writer.content(plan.tokens[index])
    if plan.cut_after is not None:
        logger.info("chat cut id=%s after_tokens=%d", writer.id, sent)
        return
    done = pacer.deadline(total)
    yield done, writer.finish(plan.finish_reason)
    if writer.include_usage:
        yield done, writer.usage(n_prompt, total)
    yield done, DONE_FRAME


async def paced(frames: Iterator[tuple[float, bytes]]) -> AsyncIterator[bytes]:
    """Each frame at its deadline; frames already due go out together in one write."""
    pending: list[bytes] = []
    for deadline, frame in frames:
        if deadline > _now():
            if pending:
                yield b"".join(pending)
                pending = []
            await _sleep_until(deadline)
        pending.append(frame)
    if pending:
        yield b"".join(pending)


# --- endpoints --------------------------------------------------------------------------


class Simulator:
    """The endpoints and their shared state (call counter, defaults)."""

    def __init__(
        self, *, ttft_ms: float, tokens_per_s: float, models: Sequence[str], max_keys: int
    ) -> None:
        if ttft_ms < 0 or tokens_per_s <= 0:
            raise ValueError("ttft_ms must be >= 0 and tokens_per_s > 0")
        self.ttft_ms = ttft_ms
        self.tokens_per_s = tokens_per_s
        self.models = list(dict.fromkeys(models))
        self.calls = CallCounter(max_keys)

    async def chat_completions(self, request: Request) -> Response:
        start = asyncio.get_running_loop().time()
        chat = parse_body(await request.body())
        plan = self._plan(chat)
        logger.info(
            "chat model=%s stream=%s messages=%d tokens=%d finish=%s call=%d fault=%s",
            chat.model,
            chat.stream,
            len(chat.messages),
            len(plan.tokens),
            plan.finish_reason,
            plan.call_index,
            plan.fault,
        )
        headers = {"x-request-id": request_id(), "openai-model": chat.model}
        if plan.fail_status is not None:
            return _failure(plan, headers)
        if chat.stream:
            return _streaming(chat, plan, headers, start)
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
        )

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


def _streaming(
    chat: ChatRequest, plan: CallPlan, headers: dict[str, str], start: float
) -> Response:
    writer = ChunkWriter(model=chat.model, include_usage=chat.include_usage)
    headers |= {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    frames = paced(schedule(plan, writer, prompt_tokens(chat.messages), start))
    return BodyStream(frames, headers=headers, cut=plan.cut_after is not None)


async def _complete(
    chat: ChatRequest, plan: CallPlan, headers: dict[str, str], start: float
) -> Response:
    await _sleep_until(Pacer(plan, start).done_at)
    body = completion(
        model=chat.model,
        text="".join(plan.tokens),
        finish_reason=plan.finish_reason,
        prompt_tokens=prompt_tokens(chat.messages),
        completion_tokens=len(plan.tokens),
    )
    if plan.cut_after is None:
        return JSONResponse(body, headers=headers)
    return _cut_json(dumps(body).encode(), headers)


def _cut_json(payload: bytes, headers: dict[str, str]) -> Response:
    """Half of a JSON body under the full content-length: the client sees a short read."""
    headers |= {"content-type": "application/json", "content-length": str(len(payload))}

    async def half() -> AsyncIterator[bytes]:
        yield payload[: len(payload) // 2]

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
