"""A session record as the edge routes it: only the fields it routes on are decoded.

The hub needs an event's type and request id (to end ``until=done`` streams and index terminal
events) and the record's bytes as they are (the SSE ``data``). Building a pydantic model per event
to read two fields cost more than the rest of the edge's per-event work (issue #14); the worker,
the only writer of session records (ACLs), validates every event when it builds it.
"""

from __future__ import annotations

import logging

import orjson

from api.event_ids import format_event_id
from api.session_feed import Entry
from api.sse_response import encode_event

log = logging.getLogger(__name__)

EVENT_TYPES = frozenset(
    {"start", "retry", "token", "tool_call", "refusal", "reasoning", "done", "error"}
)


def decode_entry(epoch: str, offset: int, raw: bytes | None, *, where: str) -> Entry | None:
    """The record at ``offset`` as an ``Entry``; None (logged) if it is not a session event."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
        event = orjson.loads(raw)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        event = None
    kind = event.get("type") if isinstance(event, dict) else None
    request_id = event.get("request_id") if isinstance(event, dict) else None
    if kind not in EVENT_TYPES or not isinstance(request_id, str):
        log.warning("skipping record that is not a session event %s offset=%d", where, offset)
        return None
    sse = encode_event(text, event=kind, event_id=format_event_id(epoch, offset))
    return Entry(offset, kind, request_id, sse)
