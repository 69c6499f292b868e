"""Records on ``chat.sessions.index`` (key = request_id): where each request's events begin.

Only in the ``shared`` session layout (tokenwire/session_log.py), where every session's events go
to one topic, ``chat.sessions``, keyed by session. The worker writes one record per request and
waits for the broker to have it before the request's first event, so:

- ``offset`` is a lower bound of the request's first event in ``partition``: every event of the
  request is at or after it (the worker takes it from its own writes' acknowledgements);
- a request with no index record has no event yet, and a session's history begins at the lowest
  ``offset`` of its requests.

The topic is compacted (one record per request is all it needs) and ages out with the sessions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, TypeAdapter

from schemas.common import SCHEMA_VERSION, Contract, RequestId, SessionId, now


class RequestStart(Contract):
    """Request ``request_id`` of ``session_id`` has its events at ``offset`` or after it."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["request_start"] = "request_start"
    session_id: SessionId
    request_id: RequestId
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    written_at: float = Field(default_factory=now)


IndexRecord = RequestStart
index_record_adapter: TypeAdapter[IndexRecord] = TypeAdapter(IndexRecord)


def parse_index_record(raw: bytes | str) -> IndexRecord:
    return index_record_adapter.validate_json(raw)
