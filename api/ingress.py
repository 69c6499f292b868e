"""``POST /v1/chat``: validate, authorise, rate-limit, publish a ``ChatRequest``, answer 202.

Session ownership:

- no ``session_id``: the edge opens a new, unguessable session (uuid4 hex) for ``user_id`` and
  returns a stream token for it;
- a ``session_id``: the caller must send ``Authorization: Bearer <stream token>`` for that
  session, issued to the same ``user_id`` (401 without or with an invalid token, 403 for another
  session or user). Nobody can post into, or obtain a token for, someone else's session. A
  caller that wants to choose a brand-new session id gets its token out of band, as direct Kafka
  producers do: ``tokenwire token --session S --user U``.

Fields the server owns (``request_id``, ``created_at``, ``schema_version``) are ignored in the body.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.errors import ApiError, token_error
from api.rate_limit import retry_after_header
from api.runtime import EdgeRuntime
from api.stream_tokens import bearer_token, issue_token, verify_token
from schemas.requests import ChatRequest
from tokenwire.errors import StreamTokenError, TopicError

log = logging.getLogger(__name__)

# The broker refuses records over ~1 MB by default; refuse bigger bodies before publishing.
MAX_BODY_BYTES = 900_000
SERVER_FIELDS = frozenset({"request_id", "created_at", "schema_version"})
OUTCOME_BY_STATUS = {
    400: "bad_request",
    413: "bad_request",
    422: "invalid",
    401: "unauthorized",
    403: "forbidden",
    429: "rate_limited",
    503: "unavailable",
}


def events_path(session_id: str) -> str:
    return f"/v1/sessions/{session_id}/events"


async def post_chat(request: Request) -> JSONResponse:
    runtime: EdgeRuntime = request.app.state.runtime
    try:
        response = await _accept(runtime, request)
    except ApiError as exc:
        outcome = "risk_throttled" if exc.code == "risk_throttled" else None
        runtime.metrics.outcome(outcome or OUTCOME_BY_STATUS.get(exc.status, "bad_request"))
        raise
    runtime.metrics.outcome("accepted")
    return response


async def _accept(runtime: EdgeRuntime, request: Request) -> JSONResponse:
    body = await _json_body(request)
    chat = _validate(body, runtime)
    if body.get("session_id") is not None:
        _authorise(runtime, request, chat)
    _risk_throttle(runtime, chat.user_id)
    _rate_limit(runtime, chat.user_id)
    await _publish(runtime, chat)
    token = issue_token(runtime.settings, session_id=chat.session_id, user_id=chat.user_id)
    log.info(
        "chat request accepted request_id=%s session=%s new_session=%s",
        chat.request_id, chat.session_id, body.get("session_id") is None,
    )
    return JSONResponse(
        {
            "request_id": chat.request_id,
            "session_id": chat.session_id,
            "events_url": events_path(chat.session_id),
            "stream_token": token,
        },
        status_code=202,
    )


async def _json_body(request: Request) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(400, "bad_request", "content type must be application/json")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "bad_request", f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(
            422, "invalid_request", "body must be a JSON object",
            details=[{"loc": [], "msg": "Input should be an object", "type": "dict_type"}],
        )
    return body


def _validate(body: dict[str, Any], runtime: EdgeRuntime) -> ChatRequest:
    data = {key: value for key, value in body.items() if key not in SERVER_FIELDS}
    if data.get("session_id") is None:
        data["session_id"] = uuid.uuid4().hex
    if data.get("model") is None:
        data["model"] = runtime.settings.default_model
    data["request_id"] = uuid.uuid4().hex
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ApiError(422, "invalid_request", "request body is invalid", details=errors) from exc


def _authorise(runtime: EdgeRuntime, request: Request, chat: ChatRequest) -> None:
    try:
        token = bearer_token(request, allow_query=False)
        claims = verify_token(runtime.settings, token, session_id=chat.session_id)
    except StreamTokenError as exc:
        raise token_error(exc) from exc
    if claims.user_id != chat.user_id:
        raise ApiError(403, "forbidden", "user_id does not match the stream token's user")


def _risk_throttle(runtime: EdgeRuntime, user_id: str) -> None:
    """A user whose risk score raised an alert waits until the alert expires."""
    reason = runtime.throttle.is_throttled(user_id)
    if reason is None:
        return
    wait_s = runtime.throttle.retry_after_s(user_id) or 1.0
    raise ApiError(
        429, "risk_throttled", f"requests from this user are paused: {reason}",
        headers={"Retry-After": retry_after_header(wait_s)},
    )


def _rate_limit(runtime: EdgeRuntime, user_id: str) -> None:
    wait_s = runtime.limiter.acquire(user_id)
    if wait_s is None:
        return
    runtime.metrics.rate_limited.inc()
    raise ApiError(
        429, "rate_limited", f"too many requests; retry in {wait_s:.2f}s",
        headers={"Retry-After": retry_after_header(wait_s)},
    )


async def _publish(runtime: EdgeRuntime, chat: ChatRequest) -> None:
    settings = runtime.settings
    try:
        # Created before publishing so that a reader can attach the moment it has the token.
        await runtime.session_topics.ensure(chat.session_id)
        await runtime.producer.send_and_wait(
            settings.requests_topic,
            value=chat.model_dump_json().encode(),
            key=chat.session_id.encode(),
        )
    except (TopicError, KafkaError) as exc:
        log.warning(
            "chat request not published request_id=%s session=%s error=%r",
            chat.request_id, chat.session_id, exc,
        )
        raise ApiError(503, "unavailable", "the request could not be queued; retry") from exc
