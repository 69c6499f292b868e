"""Events on ``chat.session.<session_id>``: what a browser sees, in order.

Per request, one attempt is ``start`` (attempt 1) or ``retry`` (attempt > 1, "drop this
request's partial text"), then ``token``s, then exactly one terminal ``done`` or ``error``.
``seq`` numbers the events of one attempt from 0, so gaps and duplicates are detectable.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, now


class _SessionEventBase(Contract):
    schema_version: int = SCHEMA_VERSION
    request_id: RequestId
    session_id: SessionId
    attempt: int = Field(ge=1)
    seq: int = Field(ge=0)
    emitted_at: float = Field(default_factory=now)


class StartEvent(_SessionEventBase):
    type: Literal["start"] = "start"
    model: str
    accepted_at: float


class RetryEvent(_SessionEventBase):
    type: Literal["retry"] = "retry"
    reason: str
    delay_s: float = 0.0


class TokenEvent(_SessionEventBase):
    type: Literal["token"] = "token"
    text: str
    # When the worker received the (last) chunk coalesced into this event: latency is measured
    # from here to the client.
    received_at: float


class Usage(Contract):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Timings(Contract):
    accepted_at: float
    first_token_at: float | None = None
    finished_at: float
    ttft_s: float | None = None
    duration_s: float


class DoneEvent(_SessionEventBase):
    type: Literal["done"] = "done"
    finish_reason: str
    usage: Usage
    timings: Timings


class ErrorEvent(_SessionEventBase):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool


SessionEvent = Annotated[
    StartEvent | RetryEvent | TokenEvent | DoneEvent | ErrorEvent, Field(discriminator="type")
]
TERMINAL_TYPES = frozenset({"done", "error"})

session_event_adapter: TypeAdapter[SessionEvent] = TypeAdapter(SessionEvent)


def parse_session_event(raw: bytes | str) -> SessionEvent:
    return session_event_adapter.validate_json(raw)
