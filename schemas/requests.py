"""``ChatRequest``: what producers publish to ``chat.requests`` (key = session_id)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, UserId


class ChatMessage(Contract):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


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
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
