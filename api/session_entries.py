"""A session record as the edge routes it: only the fields it routes on are decoded.

The hub needs an event's type and request id (to end ``until=done`` streams and index terminal
events) and the record's bytes as they are (the SSE ``data``). Building a pydantic model per event
to read two fields cost more than the rest of the edge's per-event work (issue #14); the worker,
the only writer of session records (ACLs), validates every event when it builds it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from api.event_ids import format_event_id
from api.session_feed import Entry
from api.sse_response import encode_event
from tokenwire import tracing

log = logging.getLogger(__name__)

EVENT_TYPES = frozenset(
    {"start", "retry", "token", "tool_call", "refusal", "reasoning", "done", "error"}
)


@dataclass(frozen=True, slots=True)
class TracedEntry(Entry):
    """An entry whose record carries the request's trace context (the few records per attempt
    the worker marks, only while tracing is on): plain entries stay as small as they were."""

    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None


def decode_entry(
    epoch: str,
    offset: int,
    raw: bytes | None,
    *,
    where: str,
    headers: Sequence[tuple[str, bytes]] | None = None,
    timestamp_ms: int | None = None,
) -> Entry | None:
    """The record at ``offset`` as an ``Entry``; None (logged) if it is not a session event.
    ``headers``/``timestamp_ms``: the record's, for the trace context it may carry."""
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
    if headers and tracing.is_enabled() and tracing.has_traceparent(headers):
        return TracedEntry(offset, kind, request_id, sse, tuple(headers), timestamp_ms)
    return Entry(offset, kind, request_id, sse)
