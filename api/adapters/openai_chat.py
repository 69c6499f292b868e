"""OpenAI's ``/v1/chat/completions`` on tokenwire's durable path; point an OpenAI SDK at the edge.

- ``POST /v1/chat/completions``: an OpenAI request body (``openai_wire.split_body``), published
  like ``POST /v1/chat`` (``validate_chat`` + ``admit_chat``: the same auth, quotas and bounds).
  ``stream: true`` answers SSE ``chat.completion.chunk``s (``id:`` lines are tokenwire event ids),
  the usage chunk with ``stream_options.include_usage``, then ``data: [DONE]``; otherwise one
  ``chat.completion`` once the answer is over. Headers ``x-tokenwire-session-id`` and
  ``x-tokenwire-request-id``; the completion id is ``chatcmpl-<request id>``.
- ``GET /v1/chat/completions/{id}/stream``: the same chunks again, running or finished, from the
  start or after a position (``Last-Event-ID``, or ``?from=<event id>``: from that event on);
  ``?include_usage=true`` adds the usage chunk.
- ``GET /v1/chat/completions/{id}``: the ``chat.completion`` (waits for the end), which is what
  the SDKs' ``chat.completions.retrieve(id)`` asks.

Each completion is its own session, ``owned_session_id("oa", caller, request id)``: the request
id alone finds it again, and only for the caller who made it (another caller's credential names
another session: 404). It is admitted with ``new_session=False``: a one-request session is a
request, so the caller's requests and tokens per minute bound it, as OpenAI's limits do, not the
ten new conversations a minute meant for chats. Nothing cancels on disconnect: the answer is on
Kafka, and re-attaching reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from api.adapters.openai_errors import (
    OpenAIError,
    from_api_error,
    from_error_event,
    interrupted,
    not_found,
)
from api.adapters.openai_wire import (
    ChunkRelay,
    Collected,
    Head,
    completion,
    completion_id,
    request_id_of,
    split_body,
    sse,
)
from api.adapters.request_events import (
    Delivered,
    delivered,
    entries_of,
    latest_request,
    request_events,
)
from api.adapters.session_ids import owned_session_id
from api.auth.authenticator import Identity
from api.connection_limits import ConnectionSlot
from api.edge_tracing import record_deliveries
from api.errors import ApiError
from api.event_ids import Position, parse_position
from api.ingress import MAX_BODY_BYTES, OUTCOME_BY_STATUS, admit_chat, validate_chat
from api.json_body import read_json_object
from api.runtime import EdgeRuntime
from api.session_access import authenticate
from api.session_feed import CLOSED_DISCONNECTED, Subscription
from api.session_stream import (
    END_OFFSET_TIMEOUT_S,
    SlotHoldingResponse,
    StreamControl,
    StreamParams,
    plan_start,
    take_slot,
)
from api.sse_response import PING
from schemas.session_events import TERMINAL_TYPES, DoneEvent, ErrorEvent
from tokenwire import tracing

log = logging.getLogger(__name__)

KIND = "oa"
MAX_ID_CHARS = 64
FROM_START = Position(None, 0)
# The events already in the session when a stream opens are read as one backlog (attempts that
# a later one supersedes dropped), looking this often whether the hub has read that far ...
BACKLOG_POLL_S = 0.05
# ... and for at most this long (a feed that lags sends its backlog as it comes).
BACKLOG_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class Answer:
    session_id: str
    request_id: str
    # The request's model, until its start event names the one answering.
    model: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {
            "x-tokenwire-session-id": self.session_id, "x-tokenwire-request-id": self.request_id,
        }  # fmt: skip

    @property
    def completion_id(self) -> str:
        return completion_id(self.request_id)


@dataclass(frozen=True, slots=True)
class Span:
    """Where a stream reads: from the session's ``floor``; what is below ``end`` is backlog;
    the client holds the events below ``held_below``."""

    floor: int
    end: int
    epoch: str | None
    held_below: int


# --- handlers ---------------------------------------------------------------------------


async def post_completion(request: Request) -> Response:
    runtime: EdgeRuntime = request.app.state.runtime
    try:
        answer, stream, include_usage, slot = await _admit(runtime, request)
    except ApiError as exc:
        outcome = "risk_throttled" if exc.code == "risk_throttled" else None
        runtime.metrics.outcome(outcome or OUTCOME_BY_STATUS.get(exc.status, "bad_request"))
        return from_api_error(exc).response()
    except OpenAIError as exc:
        runtime.metrics.outcome("bad_request")
        return exc.response()
    runtime.metrics.outcome("accepted")
    if stream:
        return _streaming(runtime, answer, None, slot, include_usage=include_usage)
    return WaitingResponse(lambda control: _final(runtime, answer, control), slot=slot)


async def get_stream(request: Request) -> Response:
    runtime: EdgeRuntime = request.app.state.runtime
    try:
        identity = await authenticate(runtime, request)
        answer = await _find(runtime, identity, request.path_params["completion_id"])
        params = _stream_params(request, answer.session_id)
        slot = take_slot(runtime, identity.user_id)
        try:
            span = await _locate(runtime, params)
        except BaseException:
            slot.release()
            raise
    except ApiError as exc:
        return from_api_error(exc).response()
    except OpenAIError as exc:
        return exc.response()
    include_usage = request.query_params.get("include_usage", "").lower() in ("1", "true")
    return _streaming(runtime, answer, span, slot, include_usage=include_usage)


async def get_completion(request: Request) -> Response:
    runtime: EdgeRuntime = request.app.state.runtime
    try:
        identity = await authenticate(runtime, request)
        answer = await _find(runtime, identity, request.path_params["completion_id"])
        slot = take_slot(runtime, identity.user_id)
    except ApiError as exc:
        return from_api_error(exc).response()
    except OpenAIError as exc:
        return exc.response()
    return WaitingResponse(lambda control: _final(runtime, answer, control), slot=slot)


ROUTES: list[BaseRoute] = [
    Route("/v1/chat/completions", post_completion, methods=["POST"], name="openai_completions"),
    Route(
        "/v1/chat/completions/{completion_id}/stream", get_stream, methods=["GET"],
        name="openai_completion_stream",
    ),
    Route(
        "/v1/chat/completions/{completion_id}", get_completion, methods=["GET"],
        name="openai_completion",
    ),
]


# --- admission and lookup ---------------------------------------------------------------


async def _admit(
    runtime: EdgeRuntime, request: Request
) -> tuple[Answer, bool, bool, ConnectionSlot]:
    identity = await authenticate(runtime, request)
    body = await read_json_object(request, max_bytes=MAX_BODY_BYTES)
    fields, options = split_body(body)
    chat = validate_chat(fields, runtime, identity)
    request_id = chat.request_id or ""
    session_id = owned_session_id(KIND, identity.user_id, request_id)
    chat = chat.model_copy(update={"session_id": session_id})
    # Taken before publishing: an answer the caller has no room to read is not made.
    slot = take_slot(runtime, identity.user_id)
    try:
        await admit_chat(runtime, identity, chat, new_session=False)
    except BaseException:
        slot.release()
        raise
    return Answer(session_id, request_id, chat.model), options.stream, options.include_usage, slot


async def _find(runtime: EdgeRuntime, identity: Identity, path_id: str) -> Answer:
    """The caller's completion ``path_id`` (``chatcmpl-…`` or the request id), else 404."""
    request_id = request_id_of(path_id)
    if not 1 <= len(request_id) <= MAX_ID_CHARS:
        raise not_found(path_id[:80])
    answer = Answer(owned_session_id(KIND, identity.user_id, request_id), request_id)
    # Admitted and not over (or just now): it exists before its session has an event.
    if runtime.ledger.knows_request(identity.user_id, request_id):
        return answer
    try:
        latest = await latest_request(runtime, answer.session_id, timeout_s=END_OFFSET_TIMEOUT_S)
    except Exception as exc:  # Kafka does not answer: say so, do not guess
        raise _unavailable(answer, exc) from exc
    if latest is None or latest.request_id != request_id:
        raise not_found(path_id[:80])
    return answer


def _stream_params(request: Request, session_id: str) -> StreamParams:
    """Where the client is: after ``Last-Event-ID``, or at ``?from``, else at the start."""
    last = _position(request.headers.get("last-event-id"), "Last-Event-ID")
    at = _position(request.query_params.get("from"), "from")
    if last is not None:
        return StreamParams(session_id, Position(last.epoch, last.offset + 1), last.offset, None)
    if at is not None:
        return StreamParams(session_id, at, at.offset - 1 if at.offset > 0 else None, None)
    return StreamParams(session_id, FROM_START, None, None)


def _position(raw: str | None, name: str) -> Position | None:
    if raw is None or not raw.strip():
        return None
    position = parse_position(raw)
    if position is None:
        raise OpenAIError(400, f"{name} must be an event id (an SSE id: line of this stream).",
                          param=name, code="invalid_value")  # fmt: skip
    return position


async def _locate(runtime: EdgeRuntime, params: StreamParams) -> Span:
    """``params`` resolved against the session (``plan_start``: 416 past its end, another
    generation reads from its start), with its floor and current end."""
    plan = await plan_start(runtime, params)
    hub, session_id = runtime.hub, params.session_id
    try:
        floor = await hub.beginning(session_id, timeout_s=END_OFFSET_TIMEOUT_S)
        current = await hub.generation(
            session_id, at_least=0, epoch=None, timeout_s=END_OFFSET_TIMEOUT_S
        )
    except Exception as exc:  # Kafka does not answer
        raise ApiError(503, "unavailable", "the answer's position could not be read; retry",
                       headers={"Retry-After": "1"}) from exc  # fmt: skip
    held_below = plan.start if plan.last_seen is not None else floor
    return Span(floor, current.end, plan.epoch, held_below)


def _unavailable(answer: Answer, exc: BaseException) -> ApiError:
    log.warning("completion lookup failed session=%s error=%r", answer.session_id, exc)
    return ApiError(503, "unavailable", "the completion could not be looked up; retry",
                    headers={"Retry-After": "1"})  # fmt: skip


# --- streaming --------------------------------------------------------------------------


def _streaming(
    runtime: EdgeRuntime, answer: Answer, span: Span | None, slot: ConnectionSlot, *,
    include_usage: bool,
) -> Response:
    control = StreamControl()
    response = SlotHoldingResponse(
        _chunks(runtime, answer, span, control, include_usage=include_usage),
        slot=slot, on_disconnect=control.disconnected,
        send_timeout=runtime.settings.sse_send_timeout_s,
    )
    response.headers.update(answer.headers)
    return response


async def _chunks(
    runtime: EdgeRuntime, answer: Answer, span: Span | None, control: StreamControl, *,
    include_usage: bool,
) -> AsyncIterator[ServerSentEvent | bytes]:
    if span is None:  # a new answer: located once the response started, errors in the stream
        try:
            span = await _locate(runtime, StreamParams(answer.session_id, FROM_START, None, None))
        except ApiError as exc:
            yield sse(from_api_error(exc).body())
            return
    # Subscribed here, not in the handler: a response that never streams (HEAD) holds nothing.
    sub = runtime.hub.subscribe(answer.session_id, span.floor, epoch=span.epoch)
    control.attach(sub)
    relay = ChunkRelay(answer.request_id, model=answer.model, include_usage=include_usage,
                       held_below=span.held_below)  # fmt: skip
    metrics = runtime.metrics
    metrics.sse_connections.inc()
    events = 0
    traced = tracing.is_enabled()
    try:
        async for read in _read(sub, answer.request_id, span.end, runtime.settings.sse_ping_s):
            if read is None:
                yield PING
                continue
            items, backlog = read
            events += len(items)
            data = relay.take(items, backlog=backlog)
            if data:
                yield data
            if traced:  # written to the client: the delivery spans end now
                record_deliveries(entries_of(items), answer.session_id)
            if relay.ended:
                break
        else:
            if sub.closed_reason != CLOSED_DISCONNECTED:
                yield sse(interrupted(answer.completion_id).body())
    finally:
        sub.leave()
        metrics.sse_events.inc(events)
        metrics.sse_connections.dec()
        log.info(
            "openai stream ended session=%s request_id=%s floor=%d held_below=%d events=%d "
            "ended=%s reason=%s", answer.session_id, answer.request_id, span.floor,
            span.held_below, events, relay.ended, sub.closed_reason,
        )


async def _read(
    sub: Subscription, request_id: str, end: int, ping_s: float
) -> AsyncIterator[tuple[list[Delivered], bool] | None]:
    """``request_id``'s events: first those below ``end`` as one backlog batch (``True``),
    then each as it comes (``False``), until its terminal event or the subscription closes;
    ``None`` after every quiet ``ping_s``."""
    backlog: list[Delivered] | None = []
    deadline = asyncio.get_running_loop().time() + BACKLOG_MAX_S
    while True:
        if backlog is not None and (
            _read_below(sub, end) or asyncio.get_running_loop().time() > deadline
        ):
            yield backlog, True
            backlog = None
        try:
            async with asyncio.timeout(BACKLOG_POLL_S if backlog is not None else ping_s):
                entry = await sub.next()
        except TimeoutError:
            if backlog is None:
                yield None
            continue
        if entry is None:
            if backlog:
                yield backlog, True
            return
        item = delivered(entry) if entry.request_id == request_id else None
        if item is None:
            continue
        terminal = entry.type in TERMINAL_TYPES
        if backlog is not None:
            if entry.offset < end:
                backlog.append(item)
                if not terminal:
                    continue
                yield backlog, True
                return
            yield backlog, True
            backlog = None
        yield [item], False
        if terminal:
            return


def _read_below(sub: Subscription, end: int) -> bool:
    """Whether ``sub`` has read every event of its session below ``end`` (the feed holds each
    record below its ``next_offset``; nothing cached below ``end`` is left for this reader)."""
    feed = sub.feed
    if feed is None or not feed.active or feed.next_offset < end:
        return False
    entry = feed.entry_for(sub)
    return entry is None or entry.offset >= end


# --- one chat.completion ----------------------------------------------------------------


class WaitingResponse(Response):
    """Waits for a finished answer, then sends it as JSON. A client that leaves ends the wait
    (not the answer); the connection slot is held meanwhile and freed on every path."""

    def __init__(
        self, produce: Callable[[StreamControl], Awaitable[Response]], *, slot: ConnectionSlot
    ) -> None:
        super().__init__()
        self._produce = produce
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        control = StreamControl()
        watcher = asyncio.create_task(_watch_disconnect(receive, control))
        try:
            response = await self._produce(control)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._slot.release()
        if control.closed_reason != CLOSED_DISCONNECTED:
            await response(scope, receive, send)


async def _watch_disconnect(receive: Receive, control: StreamControl) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    control.disconnected()


async def _final(runtime: EdgeRuntime, answer: Answer, control: StreamControl) -> Response:
    try:
        span = await _locate(runtime, StreamParams(answer.session_id, FROM_START, None, None))
    except ApiError as exc:
        return from_api_error(exc).response(answer.headers)
    sub = runtime.hub.subscribe(answer.session_id, span.floor, epoch=span.epoch)
    control.attach(sub)
    collected = Collected()
    try:
        async for item in request_events(sub, answer.request_id, ping_s=60.0):
            if item is None:
                continue
            event = item.event
            collected.add(event)
            if isinstance(event, DoneEvent):
                head = Head.of(answer.request_id, collected.start, answer.model)
                return JSONResponse(completion(head, collected, event), headers=answer.headers)
            if isinstance(event, ErrorEvent):
                return from_error_event(event).response(answer.headers)
    finally:
        sub.leave()
    return interrupted(answer.completion_id).response(answer.headers)
