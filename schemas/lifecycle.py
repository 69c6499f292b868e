"""Events on ``chat.events`` (key = user_id): the input of aggregates and of audit.

``completed`` carries the final answer text, so ``chat.requests`` + ``chat.events`` are the
long-lived record even after a session topic is deleted.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, UserId, now
from schemas.session_events import Timings, Usage


class _LifecycleBase(Contract):
    schema_version: int = SCHEMA_VERSION
    request_id: RequestId
    session_id: SessionId
    user_id: UserId
    model: str
    attempt: int = Field(ge=1)
    # Event time: aggregates window on this, never on the wall clock of the reader.
    at: float = Field(default_factory=now)


class Accepted(_LifecycleBase):
    type: Literal["accepted"] = "accepted"
    prompt_chars: int = 0
    prompt_text: str = ""


class FirstToken(_LifecycleBase):
    type: Literal["first_token"] = "first_token"
    ttft_s: float


class Completed(_LifecycleBase):
    type: Literal["completed"] = "completed"
    finish_reason: str
    usage: Usage
    timings: Timings
    retries: int = 0
    answer: str


class Failed(_LifecycleBase):
    type: Literal["failed"] = "failed"
    code: str
    message: str
    retries: int = 0
    timings: Timings


LifecycleEvent = Annotated[Accepted | FirstToken | Completed | Failed, Field(discriminator="type")]
lifecycle_event_adapter: TypeAdapter[LifecycleEvent] = TypeAdapter(LifecycleEvent)


def parse_lifecycle_event(raw: bytes | str) -> LifecycleEvent:
    return lifecycle_event_adapter.validate_json(raw)
