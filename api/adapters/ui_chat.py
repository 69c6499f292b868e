"""The AI SDK's chat endpoints (``useChat`` with ``DefaultChatTransport``), on the Kafka path.

- ``POST /v1/ui/chat``: the transport's body ``{id, messages, trigger, messageId, ...}``; ``id``
  is the chat, whose session is the caller's own (``owned_session_id("ui", user, id)``), so the
  credential is the only proof needed. Extra body fields may be tokenwire request fields
  (``model``, ``tools``, ``temperature``...; the transport's ``body`` option), anything else is
  422. The request is published like ``POST /v1/chat`` and answered with its UI message stream
  (``api.adapters.ui_message_stream``) read live from the session; ``x-tokenwire-session-id``
  and ``x-tokenwire-request-id`` name it.
- ``GET /v1/ui/chat/{id}/stream``: the transport's ``reconnectToStream`` (``useChat({resume:
  true})``): 204 when the chat's latest request has ended or there is none, else that request's
  message from its first event (the SDK sends no position; the message has the same id, so the
  client replaces what it holds). Attempts a retry superseded before the reader came are left
  out whole.
- ``POST /v1/ui/chat/{id}/cancel``: stop the chat's active request (optional body
  ``{"request_id"}``, which ``clients/js/ai-sdk.js`` sends once it has the response headers).
  The SDK's ``stop()`` only aborts its fetch, and a dropped connection must not cancel (that is
  what a resume is for), so stopping is this explicit call.

Streams hold a connection slot and end on disconnect like ``api.session_stream``'s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.adapters.attempts import drop_superseded
from api.adapters.request_events import (
    LatestRequest,
    entries_of,
    latest_request,
    request_batches,
)
from api.adapters.session_ids import MAX_CLIENT_ID_CHARS, owned_session_id
from api.adapters.ui_message_stream import DONE_LINE, UIMessageStream, encode
from api.adapters.ui_messages import chat_messages
from api.cancel import cancel_endpoint, publish_cancel
from api.edge_tracing import record_deliveries
from api.errors import ApiError
from api.ingress import MAX_BODY_BYTES, OUTCOME_BY_STATUS, admit_chat, validate_chat
from api.json_body import read_json_object
from api.runtime import EdgeRuntime
from api.session_access import authenticate
from api.session_feed import CLOSED_DISCONNECTED
from api.session_stream import END_OFFSET_TIMEOUT_S, SlotHoldingResponse, StreamControl, take_slot
from api.sse_response import PING
from schemas.requests import PROVIDER_FIELDS
from tokenwire import tracing

log = logging.getLogger(__name__)

SESSION_KIND = "ui"
STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "x-accel-buffering": "no"}
TRIGGERS = frozenset({"submit-message", "regenerate-message"})
TRANSPORT_FIELDS = frozenset({"id", "messages", "trigger", "messageId"})
REQUEST_FIELDS = frozenset({"model", *PROVIDER_FIELDS})
# Entries read per write: a resume's backlog comes in batches this big, so a retry within one
# drops the attempts before it outright.
WRITE_BATCH = 512


@dataclass(frozen=True, slots=True)
class Reading:
    """Which request a stream follows, and from where in the session."""

    session_id: str
    request_id: str
    start: int
    epoch: str | None


# --- POST /v1/ui/chat -------------------------------------------------------------------


async def post_ui_chat(request: Request) -> Response:
    runtime: EdgeRuntime = request.app.state.runtime
    try:
        response = await _accept(runtime, request)
    except ApiError as exc:
        runtime.metrics.outcome(OUTCOME_BY_STATUS.get(exc.status, "bad_request"))
        raise
    runtime.metrics.outcome("accepted")
    return response


async def _accept(runtime: EdgeRuntime, request: Request) -> Response:
    identity = await authenticate(runtime, request)
    body = await read_json_object(request, max_bytes=MAX_BODY_BYTES)
    chat_id = _chat_id(body.get("id"), ["id"])
    continued = _continued_message(body)
    session_id = owned_session_id(SESSION_KIND, identity.user_id, chat_id)
    chat = validate_chat(_chat_body(body, session_id), runtime, identity)
    slot = take_slot(runtime, identity.user_id)
    try:
        start, epoch, new_session = await _session_end(runtime, session_id)
        await admit_chat(runtime, identity, chat, new_session=new_session)
    except BaseException:
        slot.release()
        raise
    request_id = chat.request_id or ""
    reading = Reading(session_id, request_id, start, epoch)
    response = _stream_response(runtime, reading, slot, UIMessageStream(request_id, continued))
    response.headers["x-tokenwire-session-id"] = session_id
    response.headers["x-tokenwire-request-id"] = request_id
    return response


def _chat_id(value: Any, loc: list[str]) -> str:
    # A lone surrogate (JSON's "\ud800") is no text to hash into a session id.
    valid = isinstance(value, str) and 1 <= len(value) <= MAX_CLIENT_ID_CHARS
    if not valid or not _is_unicode(value):
        raise ApiError(
            422, "invalid_request",
            f"the chat id must be 1..{MAX_CLIENT_ID_CHARS} characters of Unicode text",
            details=[{"loc": loc, "msg": "a string of 1..128 characters", "type": "string_type"}],
        )
    return value


def _is_unicode(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _continued_message(body: dict[str, Any]) -> str | None:
    """The id of the assistant message this answer continues (the history ends with it: a
    tool result was added to it), else None: the answer is a message of its own."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "assistant" or body.get("trigger") != "submit-message":
        return None
    message_id = last.get("id")
    return message_id if isinstance(message_id, str) and 0 < len(message_id) <= 256 else None


def _chat_body(body: dict[str, Any], session_id: str) -> dict[str, Any]:
    """The tokenwire request fields of a transport body (422 for any other field)."""
    unknown = sorted(set(body) - TRANSPORT_FIELDS - REQUEST_FIELDS)
    if unknown:
        raise ApiError(
            422, "invalid_request", f"unrecognized field(s): {', '.join(unknown[:10])}",
            details=[{"loc": [name], "msg": "not a field of the UI chat request",
                      "type": "extra_forbidden"} for name in unknown[:10]],
        )  # fmt: skip
    trigger = body.get("trigger", "submit-message")
    if not isinstance(trigger, str) or trigger not in TRIGGERS:  # a list is not even hashable
        raise ApiError(
            422, "invalid_request", "trigger must be submit-message or regenerate-message",
            details=[{"loc": ["trigger"], "msg": "unknown trigger", "type": "literal_error"}],
        )
    ui_messages = body.get("messages")
    if trigger == "regenerate-message":
        ui_messages = _without_regenerated(ui_messages, body.get("messageId"))
    fields = {name: body[name] for name in REQUEST_FIELDS if name in body}
    return {**fields, "session_id": session_id, "messages": chat_messages(ui_messages)}


def _without_regenerated(ui_messages: Any, message_id: Any) -> Any:
    """The SDK sends a regenerate's history without the message it replaces; a client that
    sends it anyway does not get it as context."""
    if isinstance(ui_messages, list) and ui_messages and isinstance(ui_messages[-1], dict):
        last = ui_messages[-1]
        if last.get("role") == "assistant" and last.get("id") == message_id:
            return ui_messages[:-1]
    return ui_messages


async def _session_end(runtime: EdgeRuntime, session_id: str) -> tuple[int, str | None, bool]:
    """Where the next request's events will be (read before publishing it), in which
    generation, and whether the session is new (nothing in it yet)."""
    hub = runtime.hub
    try:
        floor = await hub.beginning(session_id, timeout_s=END_OFFSET_TIMEOUT_S)
        current = await hub.generation(
            session_id, at_least=0, epoch=None, timeout_s=END_OFFSET_TIMEOUT_S
        )
    except Exception as exc:  # Kafka does not answer: say so, do not guess
        log.warning("ui chat end offset lookup failed session=%s error=%r", session_id, exc)
        raise ApiError(
            503, "unavailable", "the chat's position could not be checked; retry",
            headers={"Retry-After": "1"},
        ) from exc
    if current.epoch is None:
        return floor, None, True
    return max(floor, current.end), current.epoch, current.end <= floor


# --- GET /v1/ui/chat/{id}/stream ----------------------------------------------------------


async def get_ui_stream(request: Request) -> Response:
    runtime: EdgeRuntime = request.app.state.runtime
    identity = await authenticate(runtime, request)
    chat_id = _chat_id(request.path_params["chat_id"], ["path", "chat_id"])
    session_id = owned_session_id(SESSION_KIND, identity.user_id, chat_id)
    slot = take_slot(runtime, identity.user_id)
    try:
        latest = await _latest(runtime, session_id)
    except BaseException:
        slot.release()
        raise
    if latest is None or latest.finished:
        slot.release()
        return Response(status_code=204)
    reading = Reading(session_id, latest.request_id, latest.start_offset, latest.epoch)
    return _stream_response(runtime, reading, slot, UIMessageStream(latest.request_id))


# --- the stream ---------------------------------------------------------------------------


def _stream_response(
    runtime: EdgeRuntime, reading: Reading, slot: Any, stream: UIMessageStream
) -> Response:
    control = StreamControl()
    response = SlotHoldingResponse(
        _chunks(runtime, reading, control, stream),
        slot=slot, on_disconnect=control.disconnected,
        send_timeout=runtime.settings.sse_send_timeout_s,
    )
    response.headers.update(STREAM_HEADERS)
    return response


async def _chunks(
    runtime: EdgeRuntime, reading: Reading, control: StreamControl, stream: UIMessageStream
) -> AsyncIterator[ServerSentEvent | bytes]:
    # Subscribed here, not in the handler: a response that never streams (HEAD) holds nothing.
    sub = runtime.hub.subscribe(reading.session_id, reading.start, epoch=reading.epoch)
    control.attach(sub)
    metrics = runtime.metrics
    metrics.sse_connections.inc()
    events = 0
    traced = tracing.is_enabled()
    try:
        yield b"".join(encode(chunk) for chunk in stream.opening())
        batches = request_batches(
            sub, reading.request_id, ping_s=runtime.settings.sse_ping_s, limit=WRITE_BATCH
        )
        async for batch in batches:
            if batch is None:
                yield PING
                continue
            events += len(batch)
            chunks = [
                chunk for event in drop_superseded(item.event for item in batch)
                for chunk in stream.feed(event)
            ]  # fmt: skip
            if chunks:
                yield b"".join(encode(chunk) for chunk in chunks)
            if traced:  # written to the client: the delivery spans end now
                record_deliveries(entries_of(batch), reading.session_id)
            if stream.ended:
                break
        if not stream.ended:
            if sub.closed_reason == CLOSED_DISCONNECTED:
                return
            # The session closed under the stream (shutdown, a recreated topic): the answer
            # goes on; the client resumes it.
            failed = stream.fail(
                "stream_closed", f"the stream ended early ({sub.closed_reason}); resume it"
            )
            yield b"".join(encode(chunk) for chunk in failed)
        yield DONE_LINE
    finally:
        sub.leave()
        metrics.sse_connections.dec()
        log.info(
            "ui message stream ended session=%s request_id=%s events=%d ended=%s reason=%s",
            reading.session_id, reading.request_id, events, stream.ended, sub.closed_reason,
        )


# --- POST /v1/ui/chat/{id}/cancel ---------------------------------------------------------


async def _cancel(runtime: EdgeRuntime, request: Request) -> tuple[JSONResponse, str]:
    identity = await authenticate(runtime, request)
    chat_id = _chat_id(request.path_params["chat_id"], ["path", "chat_id"])
    session_id = owned_session_id(SESSION_KIND, identity.user_id, chat_id)
    request_id = await _cancelled_request(runtime, request, session_id)
    if request_id is None:
        return _nothing_active(session_id), "finished"
    return await publish_cancel(runtime, identity, session_id, request_id)


post_ui_cancel = cancel_endpoint(_cancel)


async def _cancelled_request(
    runtime: EdgeRuntime, request: Request, session_id: str
) -> str | None:
    """The request named by the body, else the chat's latest one if it is still running."""
    named = None
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await read_json_object(request, max_bytes=4096)
        named = body.get("request_id")
        valid = isinstance(named, str) and 1 <= len(named) <= 64 and _is_unicode(named)
        if named is not None and not valid:
            raise ApiError(422, "invalid_request", "request_id must be 1..64 characters")
    if named is not None:
        return str(named)
    latest = await _latest(runtime, session_id)
    return None if latest is None or latest.finished else latest.request_id


async def _latest(runtime: EdgeRuntime, session_id: str) -> LatestRequest | None:
    """The chat's newest request; a 503 (retry) when Kafka does not answer, not a 500."""
    try:
        return await latest_request(runtime, session_id)
    except ApiError:
        raise
    except Exception as exc:
        log.warning("chat lookup failed session=%s error=%r", session_id, exc)
        raise ApiError(
            503, "unavailable", "the chat's state could not be read; retry",
            headers={"Retry-After": "1"},
        ) from exc


def _nothing_active(session_id: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {"code": "already_finished", "message": "the chat has no active request"},
            "session_id": session_id,
            "status": "finished",
        },
        status_code=409,
    )


ROUTES: list[BaseRoute] = [
    Route("/v1/ui/chat", post_ui_chat, methods=["POST"]),
    Route("/v1/ui/chat/{chat_id}/stream", get_ui_stream, methods=["GET"]),
    Route("/v1/ui/chat/{chat_id}/cancel", post_ui_cancel, methods=["POST"]),
]
