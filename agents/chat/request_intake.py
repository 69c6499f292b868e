"""Turns a raw ``chat.requests`` record into a ChatRequest, or a reason to dead-letter it.

``decode_request`` never raises: a record is hostile input, and an exception escaping here would
stop the agent behind a record that was taken but never acked (issue #11: 100,000 nested ``[``
raised ``RecursionError`` from the JSON decoder).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.dead_letter import REASON_DECODE_FAILED, REASON_NOT_JSON, REASON_SCHEMA
from schemas.requests import ChatRequest

log = logging.getLogger(__name__)

DETAIL_MAX_CHARS = 2000


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


def decode_request(raw: bytes | None, *, partition: int, offset: int) -> ChatRequest | Rejection:
    try:
        return _decode(raw, partition, offset)
    except Exception as exc:  # anything unforeseen is still this record's dead letter
        log.exception("decoding raised partition=%s offset=%s", partition, offset)
        return Rejection(REASON_DECODE_FAILED, f"{type(exc).__name__}: {exc}"[:DETAIL_MAX_CHARS])


def _decode(raw: bytes | None, partition: int, offset: int) -> ChatRequest | Rejection:
    if raw is None:
        return Rejection(REASON_NOT_JSON, "empty record value (tombstone)")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and UnicodeDecodeError; RecursionError is nesting
        # deeper than the decoder's stack allows.
        return Rejection(REASON_NOT_JSON, f"not valid JSON: {exc}"[:DETAIL_MAX_CHARS])
    try:
        request = ChatRequest.model_validate(payload)
    except ValidationError as exc:
        return Rejection(REASON_SCHEMA, _summarise(exc))
    if request.request_id is None:
        # A direct producer may omit the id; one derived from the record's coordinates stays the
        # same when the record is delivered again, so recovery still finds its events.
        request = request.model_copy(update={"request_id": f"p{partition}-o{offset}"})
    return request


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(loc) for loc in error["loc"]) or "(record)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:DETAIL_MAX_CHARS]
