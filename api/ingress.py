"""``POST /v1/chat``: authenticate, validate, check quotas, publish a ``ChatRequest``, answer 202.

The caller (``api.auth``) *is* the ``user_id``: a body ``user_id`` that differs is refused (403),
one that is absent is filled in. Session ownership:

- no ``session_id``: the edge opens a new, unguessable session (uuid4 hex) for the caller;
- a ``session_id``: the caller also sends ``X-Stream-Token: <write token>`` for that session,
  issued to the same identity (401 without or with an invalid token, 403 for another session,
  another identity or a read-only token). Nobody can post into someone else's session.

The answer carries two fresh stream tokens for the session, neither outliving the caller's own
credential: ``stream_token`` (``read``: for the SSE URL) and ``write_token`` (for follow-ups).
Fields the server owns (``request_id``, ``created_at``, ``schema_version``) are ignored in the body.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal

from aiokafka.errors import KafkaError
from opentelemetry import trace
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth.authenticator import Identity
from api.errors import ApiError
from api.json_body import read_json_object
from api.runtime import EdgeRuntime
from api.session_access import authenticate, authorise_session
from api.stream_tokens import issue_token
from api.usage_ledger import admission_headers
from schemas.requests import ChatRequest
from tokenwire import tracing
from tokenwire.errors import TopicError

log = logging.getLogger(__name__)

# The broker refuses records over ~1 MB by default; refuse bigger bodies before publishing.
MAX_BODY_BYTES = 900_000
SERVER_FIELDS = frozenset({"request_id", "created_at", "schema_version"})
KNOWN_FIELDS = frozenset(ChatRequest.model_fields)
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
    identity = await authenticate(runtime, request)
    body = await read_json_object(request, max_bytes=MAX_BODY_BYTES)
    new_session = body.get("session_id") is None
    chat = validate_chat(body, runtime, identity)
    if not new_session:
        authorise_session(runtime, request, chat.session_id, identity)
    await admit_chat(runtime, identity, chat, new_session=new_session)
    return JSONResponse(
        {
            "request_id": chat.request_id,
            "session_id": chat.session_id,
            "events_url": events_path(chat.session_id),
            "stream_token": _stream_token(runtime, chat.session_id, identity, "read"),
            "write_token": _stream_token(runtime, chat.session_id, identity, "write"),
        },
        status_code=202,
    )


async def admit_chat(
    runtime: EdgeRuntime, identity: Identity, chat: ChatRequest, *, new_session: bool
) -> None:
    """Quotas, then publish: every way into tokenwire (``POST /v1/chat`` and the protocol
    adapters in ``api/adapters``) goes through here, so one caller's limits hold on all of them.
    The caller has validated ``chat`` (``validate_chat``) and authorised its session."""
    record = _serialised(chat)
    if tracing.is_enabled():
        _name_in_span(chat)
    # Checked and counted in one step, before the first await: requests in flight at the same
    # time cannot all pass the same quota. A request that is then not published is uncounted.
    runtime.quotas.check(identity, model=chat.model or "", new_session=new_session)
    admission = runtime.ledger.note_admitted(
        identity.user_id, chat.request_id or "", chat.session_id, new_session=new_session
    )
    try:
        await _publish(runtime, chat, record, new_session=new_session)
    except BaseException:
        runtime.ledger.withdraw(admission)
        raise
    log.info(
        "chat request accepted request_id=%s session=%s new_session=%s credential=%s",
        chat.request_id, chat.session_id, new_session, identity.credential,
    )


def _stream_token(
    runtime: EdgeRuntime, session_id: str, identity: Identity, scope: Literal["read", "write"]
) -> str:
    return issue_token(
        runtime.settings, session_id=session_id, user_id=identity.user_id, scope=scope,
        not_after=identity.expires_at,
    )


def validate_chat(
    body: dict[str, Any], runtime: EdgeRuntime, identity: Identity
) -> ChatRequest:
    """``body`` (tokenwire's request fields) as the ``ChatRequest`` to publish, or a 4xx
    ``ApiError``; a new session id and the request id are made here."""
    _refuse_unknown_fields(body)
    data = {key: value for key, value in body.items() if key not in SERVER_FIELDS}
    claimed = data.get("user_id")
    if claimed is not None and claimed != identity.user_id:
        raise ApiError(403, "forbidden", "user_id differs from the authenticated caller")
    data["user_id"] = identity.user_id
    if data.get("session_id") is None:
        data["session_id"] = uuid.uuid4().hex
    if data.get("model") is None:
        data["model"] = runtime.settings.default_model
    data["request_id"] = uuid.uuid4().hex
    try:
        chat = ChatRequest.model_validate(data)
    except RecursionError as exc:
        raise ApiError(400, "bad_request", "request body nested too deeply") from exc
    except ValidationError as exc:
        errors = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ApiError(422, "invalid_request", "request body is invalid", details=errors) from exc
    # Within the caller's ceiling, and filled in when absent: the worker never asks for more.
    max_tokens = runtime.quotas.max_tokens(identity, chat.max_tokens)
    if max_tokens == chat.max_tokens:
        return chat
    return chat.model_copy(update={"max_tokens": max_tokens})


def _refuse_unknown_fields(body: dict[str, Any]) -> None:
    """A field tokenwire does not forward is an error here, as OpenAI answers "Unrecognized
    request argument": dropped silently, ``n: 3`` or ``stream: false`` would be ignored behind
    the caller's back. (Records on Kafka keep ignoring unknown fields: newer producers.)"""
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise ApiError(
            422, "invalid_request", f"unrecognized request field(s): {', '.join(unknown[:10])}",
            details=[{"loc": [name], "msg": "not a field of the chat request",
                      "type": "extra_forbidden"} for name in unknown[:10]],
        )  # fmt: skip


def _serialised(chat: ChatRequest) -> bytes:
    """The record's bytes; a body that validates but cannot be written (a lone surrogate,
    nesting past the serialiser's depth) is the caller's error, found before anything is made."""
    try:
        return chat.model_dump_json().encode()
    except (PydanticSerializationError, RecursionError, UnicodeEncodeError) as exc:
        raise ApiError(
            422, "invalid_request", "request body cannot be stored: nested too deeply or not "
            "valid Unicode",
        ) from exc


async def _publish(
    runtime: EdgeRuntime, chat: ChatRequest, record: bytes, *, new_session: bool
) -> None:
    settings = runtime.settings
    headers = admission_headers(
        chat.user_id, chat.request_id or "", chat.session_id, new_session=new_session
    )
    try:
        # Made readable before publishing so that a reader can attach the moment it has the token.
        await runtime.open_session(chat.session_id)
        if tracing.is_enabled():
            await _send_traced(runtime, chat, record, headers)
        else:
            await runtime.producer.send_and_wait(
                settings.requests_topic, value=record, key=chat.session_id.encode(),
                headers=headers,
            )  # fmt: skip
    except (TopicError, KafkaError) as exc:
        log.warning(
            "chat request not published request_id=%s session=%s error=%r",
            chat.request_id, chat.session_id, exc,
        )
        raise ApiError(503, "unavailable", "the request could not be queued; retry") from exc


def _name_in_span(chat: ChatRequest) -> None:
    """The ingress span (api/edge_tracing.py) learns which request it carried."""
    span = trace.get_current_span()
    span.set_attribute("tokenwire.request_id", chat.request_id or "")
    span.set_attribute("tokenwire.session_id", chat.session_id)


async def _send_traced(
    runtime: EdgeRuntime, chat: ChatRequest, record: bytes, headers: list[tuple[str, bytes]]
) -> None:
    """The publish as a span whose context the record carries (``traceparent``): the worker's
    spans of this request are its children."""
    topic = runtime.settings.requests_topic
    attributes = {"messaging.system": "kafka", "messaging.destination.name": topic}
    with tracing.tracer().start_as_current_span(
        tracing.PUBLISH, kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        tracing.inject(headers)
        metadata = await runtime.producer.send_and_wait(
            topic, value=record, key=chat.session_id.encode(), headers=headers
        )
        span.set_attribute("messaging.destination.partition.id", str(metadata.partition))
        span.set_attribute("messaging.kafka.offset", metadata.offset)
