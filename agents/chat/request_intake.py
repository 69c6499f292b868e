"""Turns a raw ``chat.requests`` record into a ChatRequest, or a reason to dead-letter it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.dead_letter import REASON_NOT_JSON, REASON_SCHEMA
from schemas.requests import ChatRequest


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


def decode_request(raw: bytes | None, *, partition: int, offset: int) -> ChatRequest | Rejection:
    if raw is None:
        return Rejection(REASON_NOT_JSON, "empty record value (tombstone)")
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection(REASON_NOT_JSON, f"not valid JSON: {exc}")
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
    return "; ".join(parts)[:2000]
