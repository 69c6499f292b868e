"""``ChatRequest``: what producers publish to ``chat.requests`` (key = session_id).

Version 2 adds OpenAI's chat request surface (content parts, tool messages, tools, output
formats, sampling options); every new field is optional, so version-1 records still decode.
``provider_body`` is what the worker sends to the provider: every field set here, unchanged,
plus ``stream`` and ``stream_options.include_usage``, which the worker always turns on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, UserId
from schemas.messages import ChatMessage
from schemas.tools import ResponseFormat, Tool, ToolChoice

StopWord = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
# The fields forwarded to the provider as they are (``max_tokens`` is set by the edge's quota).
PROVIDER_FIELDS: tuple[str, ...] = (
    "temperature", "max_tokens", "max_completion_tokens", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "stop", "seed", "top_p", "frequency_penalty",
    "presence_penalty", "logprobs", "top_logprobs", "reasoning_effort", "user",
    "safety_identifier", "metadata",
)  # fmt: skip


class ChatRequest(Contract):
    schema_version: int = SCHEMA_VERSION
    # Optional on input: the ingress fills a UUID; the worker fills one for direct producers
    # from the record's coordinates so that a re-delivery keeps the same id.
    request_id: RequestId | None = None
    session_id: SessionId
    user_id: UserId
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    model: str | None = Field(default=None, max_length=128)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=100_000)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stop: StopWord | list[StopWord] | None = Field(default=None)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    reasoning_effort: ReasoningEffort | None = None
    # The end user, for the provider's abuse detection (``user`` is OpenAI's older name).
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    # Forwarded to the provider when not empty (OpenAI: up to 16 string pairs). Not narrowed
    # here: version-1 records may hold any JSON object.
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def provider_body(self, model: str) -> dict[str, Any]:
        """The chat completions request body, as ``client.chat.completions.create`` sends it."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [message.wire() for message in self.messages],
        }
        for name in PROVIDER_FIELDS:
            value = getattr(self, name)
            if value is None or (name == "metadata" and not value):
                continue
            body[name] = _plain(value)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return body

    @property
    def prompt_text(self) -> str:
        """The text of the user's messages, for content scanning and audit."""
        return "\n".join(m.text for m in self.messages if m.role == "user")


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Contract):
        return value.model_dump(exclude_none=True)
    return value
