"""Events on ``chat.events`` (key = user_id): the input of aggregates and of audit.

``completed`` carries the final answer text, so ``chat.requests`` + ``chat.events`` are the
long-lived record even after a session topic is deleted.

Delivery contract: at least once, de-duplicated by ``(type, request_id)``. A request's
``completed``/``failed`` record is written after its terminal event on the session topic and
before the request is acked; a worker that is delivered a request whose session topic already
holds the terminal event sends the record again, rebuilt from the session topic (same content,
same ``at`` = ``timings.finished_at``, same record timestamp), because a crash may have cut it
off. ``accepted`` is sent again when a crash came before the request's first session event. So
every reader counts one record per ``(type, request_id)``: the aggregates (once per window,
``UserWindow.seen``), ``tokenwire replay`` (copies are a note, not an error) and the edge's usage
ledger. A request has at most one of ``completed`` and ``failed``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, UserId, now
from schemas.messages import ToolCall
from schemas.session_events import Timings, Usage


class _LifecycleBase(Contract):
    schema_version: int = SCHEMA_VERSION
    request_id: RequestId
    session_id: SessionId
    user_id: UserId
    model: str
    attempt: int = Field(ge=1)
    # Event time: aggregates window on this, never on the wall clock of the reader. For
    # ``completed``/``failed`` it is ``timings.finished_at``, so a copy sent again lands in the
    # same windows.
    at: float = Field(default_factory=now)


class Accepted(_LifecycleBase):
    type: Literal["accepted"] = "accepted"
    prompt_chars: int = 0
    prompt_text: str = ""


class FirstToken(_LifecycleBase):
    type: Literal["first_token"] = "first_token"
    ttft_s: float


class FinalMessage(Contract):
    """The assistant message a request produced, as a client assembles it from the stream."""

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    refusal: str | None = None
    reasoning: str | None = None


class Completed(_LifecycleBase):
    """A request that ended with ``done``; ``finish_reason: "cancelled"`` when it was stopped."""

    type: Literal["completed"] = "completed"
    finish_reason: str
    usage: Usage
    timings: Timings
    retries: int = 0
    answer: str
    # Version 2: the whole message (``answer`` is its content); absent in version-1 records.
    message: FinalMessage | None = None

    @property
    def cancelled(self) -> bool:
        return self.finish_reason == "cancelled"


class Failed(_LifecycleBase):
    type: Literal["failed"] = "failed"
    code: str
    message: str
    retries: int = 0
    timings: Timings
    # Version 2: the failed attempts' estimated usage (``ErrorEvent.usage``); None in version 1.
    usage: Usage | None = None


LifecycleEvent = Annotated[Accepted | FirstToken | Completed | Failed, Field(discriminator="type")]
lifecycle_event_adapter: TypeAdapter[LifecycleEvent] = TypeAdapter(LifecycleEvent)


def parse_lifecycle_event(raw: bytes | str) -> LifecycleEvent:
    return lifecycle_event_adapter.validate_json(raw)
