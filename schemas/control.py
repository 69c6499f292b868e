"""Records on ``chat.control`` (key = session_id): instructions to the worker owning a session.

The topic has as many partitions as ``chat.requests`` and the same key, so a session's control
records land in the partition with the same number as its requests: the worker that owns the
request's partition reads the matching control partition (agents/chat/cancellation.py), and no
record is broadcast to every worker.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, TypeAdapter

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, UserId, now


class CancelRequest(Contract):
    """Stop generating ``request_id``: keep the text already made, end with ``cancelled``."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["cancel"] = "cancel"
    request_id: RequestId
    session_id: SessionId
    # Who asked (the authenticated caller), for audit.
    user_id: UserId
    requested_at: float = Field(default_factory=now)


# One kind today; a union discriminated by ``type`` when another is added.
ControlRecord = CancelRequest
control_record_adapter: TypeAdapter[ControlRecord] = TypeAdapter(ControlRecord)


def parse_control_record(raw: bytes | str) -> ControlRecord:
    return control_record_adapter.validate_json(raw)
