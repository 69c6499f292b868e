"""``POST /v1/sessions/{session_id}/requests/{request_id}/cancel``: ask the owning worker to stop.

Authorised like posting into the session (``api.session_access``: the caller's credential plus
the session's write token, same identity). The edge publishes a ``schemas.control.CancelRequest``
to ``Settings.control_topic`` keyed by the session id, so it lands in the partition with the
number of the session's requests and reaches the worker that owns them (no broadcast), and
answers 202 at once; stopping is the worker's (agents/chat/cancellation.py).

Answers:

- 202 ``{"request_id", "session_id", "status": "cancelling"}``: published. Idempotent: a repeat
  is 202 too, with ``"repeated": true`` when this edge already published a cancel for that
  request (remembered in a bounded LRU; a repeat is not published again, one record suffices).
- 409 ``{"error": {"code": "already_finished"}, "status": "finished", "finish_reason"}``: the
  edge knows the request ended (``finish_reason`` of its ``completed`` record, ``"error"`` for a
  ``failed`` one; ``"cancelled"`` once a cancel took effect).
- 4xx JSON for a bad credential / token / path, 503 when Kafka refuses the record.

How the edge knows a request ended: ``api.finished_requests``, a bounded map fed by the usage
ledger's reading of ``chat.events``. The ledger already follows every partition of that topic
without a group (it must, for per-user usage across workers), so it sees every ``completed`` /
``failed`` record of the cluster at no extra cost; the hub's ``api.terminal_index`` would only
know sessions some client of *this* edge streams. Not known means 202: the record is harmless
for a request that is over (the worker ignores it), so a lagging or freshly started edge errs
towards publishing, never towards refusing a live request.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth.authenticator import Identity
from api.errors import ApiError
from api.runtime import EdgeRuntime
from api.session_access import authenticate, authorise_session
from schemas.common import SESSION_ID_PATTERN
from schemas.control import CancelRequest
from tokenwire import tracing

log = logging.getLogger(__name__)

SESSION_ID = re.compile(SESSION_ID_PATTERN)
MAX_REQUEST_ID_CHARS = 64
# A stop button must not hang for the producer's 30 s request timeout (a missing topic waits that
# long for metadata); long enough for a cluster to name a new leader (as session_stream's
# END_OFFSET_TIMEOUT_S). A record given up on here may still go out: repeats are harmless.
PUBLISH_TIMEOUT_S = 15.0
OUTCOME_BY_STATUS = {
    401: "unauthorized",
    403: "forbidden",
    422: "invalid",
    503: "unavailable",
}


CancelHandler = Callable[[EdgeRuntime, Request], Awaitable[tuple[JSONResponse, str]]]


def cancel_endpoint(handle: CancelHandler) -> Callable[[Request], Awaitable[JSONResponse]]:
    """An endpoint that cancels through ``handle`` (its answer and outcome) and counts every
    outcome, refusals included, in ``tokenwire_edge_cancels_total``: one count for every way to
    stop an answer (this endpoint, the AI SDK's stop)."""

    async def endpoint(request: Request) -> JSONResponse:
        runtime: EdgeRuntime = request.app.state.runtime
        try:
            response, outcome = await handle(runtime, request)
        except ApiError as exc:
            runtime.metrics.cancel_outcome(OUTCOME_BY_STATUS.get(exc.status, "bad_request"))
            raise
        runtime.metrics.cancel_outcome(outcome)
        return response

    return endpoint


async def _cancel(runtime: EdgeRuntime, request: Request) -> tuple[JSONResponse, str]:
    identity = await authenticate(runtime, request)
    session_id, request_id = _path_params(request)
    authorise_session(runtime, request, session_id, identity)
    return await publish_cancel(runtime, identity, session_id, request_id)


post_cancel = cancel_endpoint(_cancel)


async def publish_cancel(
    runtime: EdgeRuntime, identity: Identity, session_id: str, request_id: str
) -> tuple[JSONResponse, str]:
    """Cancel ``request_id`` of ``session_id`` for a caller already authorised on the session
    (the protocol adapters' stop uses it too): the answer and its metrics outcome."""
    finished = runtime.finished.get(request_id, session_id)
    if finished is not None:
        return _already_finished(request_id, session_id, finished.finish_reason), "finished"
    body: dict[str, Any] = {
        "request_id": request_id, "session_id": session_id, "status": "cancelling",
    }
    key = (session_id, request_id)
    if key in runtime.cancels:
        return JSONResponse({**body, "repeated": True}, status_code=202), "repeated"
    cancel = CancelRequest(request_id=request_id, session_id=session_id, user_id=identity.user_id)
    await _publish(runtime, cancel)
    runtime.cancels.add(key)
    log.info(
        "cancel published request_id=%r session=%s credential=%s",
        request_id, session_id, identity.credential,
    )
    return JSONResponse(body, status_code=202), "accepted"


def _path_params(request: Request) -> tuple[str, str]:
    session_id = str(request.path_params["session_id"])
    request_id = str(request.path_params["request_id"])
    problems: list[dict[str, Any]] = []
    if not SESSION_ID.fullmatch(session_id):
        problems.append({"loc": ["path", "session_id"], "msg": "letters, digits and '-', 1..64"})
    if not 1 <= len(request_id) <= MAX_REQUEST_ID_CHARS:
        problems.append({"loc": ["path", "request_id"], "msg": "1..64 characters"})
    if problems:
        raise ApiError(422, "invalid_request", "invalid path", details=problems)
    return session_id, request_id


def _already_finished(request_id: str, session_id: str, finish_reason: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {"code": "already_finished", "message": "the request has already ended"},
            "request_id": request_id,
            "session_id": session_id,
            "status": "finished",
            "finish_reason": finish_reason,
        },
        status_code=409,
    )


async def _publish(runtime: EdgeRuntime, cancel: CancelRequest) -> None:
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            if tracing.is_enabled():
                await _send_traced(runtime, cancel)
            else:
                await _send(runtime, cancel, None)
    except (KafkaError, TimeoutError) as exc:
        log.warning(
            "cancel not published request_id=%r session=%s error=%r",
            cancel.request_id, cancel.session_id, exc,
        )
        raise ApiError(503, "unavailable", "the cancel could not be queued; retry") from exc


async def _send(
    runtime: EdgeRuntime, cancel: CancelRequest, headers: list[tuple[str, bytes]] | None
) -> None:
    await runtime.producer.send_and_wait(
        runtime.settings.control_topic, value=cancel.model_dump_json().encode(),
        key=cancel.session_id.encode(), headers=headers,
    )  # fmt: skip


async def _send_traced(runtime: EdgeRuntime, cancel: CancelRequest) -> None:
    """``chat.cancel`` (a caller's ``traceparent`` continued); the worker's span of applying
    the cancel links to it through the record's headers."""
    attributes = {
        "tokenwire.request_id": cancel.request_id, "tokenwire.session_id": cancel.session_id,
        "messaging.system": "kafka", "messaging.destination.name": runtime.settings.control_topic,
    }
    with tracing.tracer().start_as_current_span(
        tracing.CANCEL, kind=SpanKind.PRODUCER, attributes=attributes
    ):
        headers: list[tuple[str, bytes]] = []
        tracing.inject(headers)
        await _send(runtime, cancel, headers)
