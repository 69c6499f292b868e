"""Events on ``chat.session.<session_id>``: what a browser sees, in order.

Per request, one attempt is ``start`` (attempt 1) or ``retry`` (attempt > 1, "drop this
request's partial text"), then its output events, then exactly one terminal ``done`` or ``error``.
``seq`` numbers the events of one attempt from 0, so gaps and duplicates are detectable.

Output events (version 2 added all but ``token``), each coalesced like text:

- ``token``: answer text (with ``logprobs`` entries when the request asked for them);
- ``tool_call``: a fragment of tool call ``index``; its first fragment names ``id`` and ``name``,
  every fragment adds to ``arguments``; ``done.tool_calls`` holds them assembled;
- ``refusal``: the model's refusal text; ``reasoning``: reasoning text a provider streams.

``done.finish_reason`` is the provider's (``stop``, ``length``, ``tool_calls``,
``content_filter``) or tokenwire's ``cancelled`` (stopped through the cancel endpoint).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, now
from schemas.messages import ToolCall


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
    # OpenAI's ``choices[].logprobs.content`` entries of the chunks in this event.
    logprobs: list[dict[str, Any]] | None = None


class ToolCallEvent(_SessionEventBase):
    type: Literal["tool_call"] = "tool_call"
    index: int = Field(ge=0)
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    received_at: float


class RefusalEvent(_SessionEventBase):
    type: Literal["refusal"] = "refusal"
    text: str
    received_at: float


class ReasoningEvent(_SessionEventBase):
    type: Literal["reasoning"] = "reasoning"
    text: str
    received_at: float


class Usage(Contract):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # True when the stream ended before the provider's usage chunk (a cut, a cancel): the
    # counts are the worker's own (chunks received, prompt characters / 4), not the provider's.
    estimated: bool = False


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
    tool_calls: list[ToolCall] = Field(default_factory=list)


class ErrorEvent(_SessionEventBase):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool
    # Version 2: what the failed attempts cost, as the worker counted it (``estimated``), so a
    # request cut off before any usage chunk is not billed as zero. None in version-1 events.
    usage: Usage | None = None


SessionEvent = Annotated[
    StartEvent | RetryEvent | TokenEvent | ToolCallEvent | RefusalEvent | ReasoningEvent
    | DoneEvent | ErrorEvent,
    Field(discriminator="type"),
]
TERMINAL_TYPES = frozenset({"done", "error"})
OUTPUT_TYPES = frozenset({"token", "tool_call", "refusal", "reasoning"})
CANCELLED = "cancelled"  # done.finish_reason of a request stopped through the cancel endpoint

session_event_adapter: TypeAdapter[SessionEvent] = TypeAdapter(SessionEvent)


def parse_session_event(raw: bytes | str) -> SessionEvent:
    return session_event_adapter.validate_json(raw)
