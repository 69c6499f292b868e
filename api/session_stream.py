"""``GET /v1/sessions/{session_id}/events``: a session's events over SSE, resumable exactly.

Wire format, one SSE event per session event::

    id: <epoch>-<offset>   (the topic's generation, the event's offset in chat.session.<id>)
    event: <start|retry|token|done|error>
    data: <the event JSON exactly as stored in Kafka>

The epoch (16 hex digits, ``api.event_ids``) changes when the janitor deletes an idle session
topic and a new request creates it again at offset 0. The stream opens with
``retry: <sse_retry_ms>`` and carries a ``: ping`` comment after every ``sse_ping_s`` without an
event. Where to start: ``Last-Event-ID: E-N`` → offset N+1 (it wins, since EventSource resends the
same URL on reconnect), else ``?from=E-N`` → offset N, else the topic's beginning. A position of
another generation than the topic's current one (or of a topic that is gone) starts at the
beginning of the current one. A plain ``N`` (a client from before epochs) is an offset in the
current generation, as it always was. A start past the end of the session is refused with 416
(``details.next_offset`` says where it ends); the ids this edge sends are always below that end
or of another generation, so EventSource's own reconnects are never refused. A start below the
oldest retained event reads from that event. Open streams are capped per user (429) and per
process (503), both with ``Retry-After``. ``?until=done&request_id=R`` ends the stream after R's
done/error event; a client whose position is already past that event gets 204, which stops
EventSource from reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.connection_limits import REFUSED_USER, ConnectionSlot
from api.edge_tracing import record_deliveries
from api.errors import ApiError, retry_after_header, token_error
from api.event_ids import Position, parse_position
from api.metrics import REFUSED_POSITION
from api.runtime import EdgeRuntime
from api.session_feed import CLOSED_DISCONNECTED, Entry, Subscription
from api.sse_response import PING, LeanEventSourceResponse
from api.stream_tokens import LEEWAY_S as TOKEN_LEEWAY_S
from api.stream_tokens import bearer_token, verify_token
from schemas.common import SESSION_ID_PATTERN
from schemas.session_events import TERMINAL_TYPES
from tokenwire import tracing
from tokenwire.errors import StreamTokenError

log = logging.getLogger(__name__)

SESSION_ID = re.compile(SESSION_ID_PATTERN)
TERMINAL_LOOKUP_TIMEOUT_S = 5.0
# Longer than a cluster takes to name a new leader when one dies (a dead broker is fenced after
# broker.session.timeout.ms, 5 s on the local cluster): a reconnect in a failover waits for the
# position instead of getting a 503, on which a browser's EventSource gives up for good.
END_OFFSET_TIMEOUT_S = 15.0
# Events already waiting for a reader go out in one write, at most this many.
WRITE_BATCH = 64
# A refused stream may try again this much later (the cap frees as other streams end).
REFUSED_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class StreamParams:
    """What the client asked for: where to start (``start.offset`` in ``start.epoch``; None:
    the current generation, whichever) and the last offset it already has, if it said so."""

    session_id: str
    start: Position
    last_seen: int | None
    until_request: str | None


@dataclass(frozen=True)
class StartPlan:
    """Where the stream starts, resolved against the topic's current generation."""

    start: int
    last_seen: int | None
    # The generation ``start`` is an offset in; None: any (a start at 0 is everyone's beginning).
    epoch: str | None



class StreamControl:
    """Ends one stream's subscription from outside its generator (client disconnect).

    The subscription is made lazily by the generator, so a disconnect can come first: it is
    remembered and applied on ``attach``.
    """

    def __init__(self) -> None:
        self.closed_reason: str | None = None
        self.subscription: Subscription | None = None

    def attach(self, subscription: Subscription) -> None:
        self.subscription = subscription
        if self.closed_reason is not None:
            subscription.close(self.closed_reason)

    def disconnected(self) -> None:
        self.closed_reason = CLOSED_DISCONNECTED
        if self.subscription is not None:
            self.subscription.close(CLOSED_DISCONNECTED)


class SlotHoldingResponse(LeanEventSourceResponse):
    """Holds the stream's connection slot while it is served, and frees it on every path
    (a HEAD or a failed first send never runs the body iterator's own cleanup)."""

    def __init__(
        self,
        content: AsyncIterator[ServerSentEvent | bytes],
        *,
        slot: ConnectionSlot,
        on_disconnect: Callable[[], None],
        send_timeout: float | None,
    ) -> None:
        super().__init__(content, on_disconnect=on_disconnect, send_timeout=send_timeout)
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()


async def session_events(request: Request) -> Response:
    runtime: EdgeRuntime = request.app.state.runtime
    params = _params(request)
    try:
        claims = verify_token(
            runtime.settings, bearer_token(request, allow_query=True),
            session_id=params.session_id,
        )
    except StreamTokenError as exc:
        raise token_error(exc) from exc
    # Taken before any Kafka lookup, so lookups in flight are bounded by the caps too.
    slot = take_slot(runtime, claims.user_id)
    try:
        plan = await plan_start(runtime, params)
        if await _already_finished(runtime, params, plan):
            slot.release()
            return Response(status_code=204)
    except BaseException:
        slot.release()
        raise
    control = StreamControl()
    # The stream ends when its token does: a leaked or outlived token reads nothing more, and
    # EventSource's reconnect then needs a fresh one.
    ends_at = claims.expires_at + TOKEN_LEEWAY_S
    return SlotHoldingResponse(
        _stream(runtime, params, plan, control, ends_at),
        slot=slot,
        on_disconnect=control.disconnected,
        send_timeout=runtime.settings.sse_send_timeout_s,
    )


def take_slot(runtime: EdgeRuntime, user_id: str) -> ConnectionSlot:
    taken = runtime.connections.acquire(user_id)
    if isinstance(taken, ConnectionSlot):
        return taken
    runtime.metrics.sse_refused.labels(reason=taken).inc()
    # %r: a user id is the caller's text; escaped, it cannot start a forged log line.
    log.info("sse stream refused reason=%s user=%r", taken, user_id)
    retry = {"Retry-After": retry_after_header(REFUSED_RETRY_AFTER_S)}
    if taken == REFUSED_USER:
        cap = runtime.settings.sse_max_connections_per_user
        raise ApiError(
            429, "too_many_streams", f"at most {cap} open streams per user", headers=retry
        )
    raise ApiError(
        503, "edge_full", "this edge holds all the streams it may; retry later", headers=retry
    )


async def plan_start(runtime: EdgeRuntime, params: StreamParams) -> StartPlan:
    """Resolve the client's position against the topic's current generation.

    A position of another generation (or of a topic that is gone) starts at the beginning; one
    past the session's end is refused: it is no position the edge sent, and following a session
    from there would wait for events that may never come.
    """
    start = params.start
    try:
        # The topic layout's sessions begin at 0; a shared partition's at the session's first
        # request (tokenwire/session_log.py): nothing of the session lies below it.
        floor = await runtime.hub.beginning(params.session_id, timeout_s=END_OFFSET_TIMEOUT_S)
        if start.offset == 0 and start.epoch is None:
            return StartPlan(floor, None, None)
        current = await runtime.hub.generation(
            params.session_id, at_least=start.offset, epoch=start.epoch,
            timeout_s=END_OFFSET_TIMEOUT_S,
        )
    except Exception as exc:  # Kafka does not answer: say so, do not guess
        log.warning("session end offset lookup failed session=%s error=%r", params.session_id, exc)
        raise ApiError(
            503, "unavailable", "the session's position could not be checked; retry",
            headers={"Retry-After": "1"},
        ) from exc
    if start.epoch is not None and start.epoch != current.epoch:
        log.info(
            "resume position of another generation session=%s position=%s epoch=%s",
            params.session_id, start, current.epoch,
        )
        return StartPlan(floor, None, None)
    if start.offset > current.end:
        runtime.metrics.sse_refused.labels(reason=REFUSED_POSITION).inc()
        raise ApiError(
            416, "position_out_of_range",
            f"resume position {start.offset} is past the end of the session ({current.end})",
            details={"next_offset": current.end},
        )
    return StartPlan(max(start.offset, floor), params.last_seen, current.epoch)


def _params(request: Request) -> StreamParams:
    session_id = request.path_params["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise ApiError(400, "invalid_session_id", f"session id must match {SESSION_ID_PATTERN}")
    last_event_id = _position(request.headers.get("last-event-id"), "Last-Event-ID")
    from_position = _position(request.query_params.get("from"), "from")
    if last_event_id is not None:
        # The next event after the last one seen (an offset past 2**63-1 is refused as past
        # the end by the position check).
        start = Position(last_event_id.epoch, last_event_id.offset + 1)
        last_seen: int | None = last_event_id.offset
    elif from_position is not None:
        start = from_position
        last_seen = from_position.offset - 1 if from_position.offset > 0 else None
    else:
        start, last_seen = Position(None, 0), None
    return StreamParams(session_id, start, last_seen, _until_request(request))


def _position(raw: str | None, name: str) -> Position | None:
    if raw is None or raw.strip() == "":
        return None
    position = parse_position(raw)
    if position is None:
        raise ApiError(
            400, "bad_request", f"{name} must be an event id (<epoch>-<offset>) or an offset"
        )
    return position


def _until_request(request: Request) -> str | None:
    until = request.query_params.get("until")
    if until is None:
        return None
    request_id = request.query_params.get("request_id", "")
    if until != "done" or not 1 <= len(request_id) <= 64:
        raise ApiError(400, "bad_request", "until=done requires request_id (1-64 characters)")
    return request_id


async def _already_finished(runtime: EdgeRuntime, params: StreamParams, plan: StartPlan) -> bool:
    if params.until_request is None or plan.last_seen is None:
        return False
    terminal = await runtime.hub.find_terminal(
        params.session_id, params.until_request,
        upto=plan.last_seen, epoch=plan.epoch, timeout_s=TERMINAL_LOOKUP_TIMEOUT_S,
    )
    return terminal is not None


def _until_done_at(batch: list[Entry], request_id: str | None) -> int | None:
    """Index of the ``until=done`` request's terminal event in ``batch``, if it is there."""
    if request_id is None:
        return None
    for index, entry in enumerate(batch):
        if entry.request_id == request_id and entry.type in TERMINAL_TYPES:
            return index
    return None


async def _stream(
    runtime: EdgeRuntime, params: StreamParams, plan: StartPlan, control: StreamControl,
    ends_at: float,
) -> AsyncIterator[ServerSentEvent | bytes]:
    # Subscribed here, not in the handler: a response that never streams (HEAD) holds nothing.
    sub = runtime.hub.subscribe(params.session_id, plan.start, epoch=plan.epoch)
    control.attach(sub)
    metrics = runtime.metrics
    metrics.sse_connections.inc()
    ping_s = runtime.settings.sse_ping_s
    sent, reason = 0, "disconnected"
    traced = tracing.is_enabled()
    try:
        yield ServerSentEvent(retry=runtime.settings.sse_retry_ms)
        while True:
            left_s = ends_at - time.time()
            if left_s <= 0:
                reason = "token_expired"
                return
            try:
                async with asyncio.timeout(min(ping_s, left_s)):
                    entry = await sub.next()
            except TimeoutError:
                if time.time() < ends_at:
                    yield PING
                continue
            if entry is None:
                break
            batch = [entry, *sub.ready(WRITE_BATCH - 1)]
            ends = _until_done_at(batch, params.until_request)
            if ends is not None:
                batch = batch[: ends + 1]
            yield b"".join(e.sse for e in batch) if len(batch) > 1 else entry.sse
            if traced:  # written to the client: the delivery spans end now
                record_deliveries(batch, params.session_id)
            metrics.sse_events.inc(len(batch))
            sent += len(batch)
            if ends is not None:
                reason = "until_done"
                return
        reason = sub.closed_reason or "closed"
    finally:
        sub.leave()
        metrics.sse_connections.dec()
        log.info(
            "sse stream ended session=%s start=%d epoch=%s events=%d reason=%s",
            params.session_id, plan.start, plan.epoch, sent, reason,
        )
