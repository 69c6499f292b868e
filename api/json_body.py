"""A request body read as one JSON object, or a 4xx ``ApiError`` — never a 500.

Bounded before it is parsed (413 past ``max_bytes``, counted while streaming, so a lying or
missing ``Content-Length`` changes nothing), and parsed defensively: malformed bytes, invalid
UTF-8 and nesting too deep for the parser are all 400.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from api.errors import ApiError


async def read_json_object(request: Request, *, max_bytes: int) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(400, "bad_request", "content type must be application/json")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > max_bytes:
            raise ApiError(413, "payload_too_large", f"body over {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise ApiError(400, "bad_request", "malformed JSON: nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "bad_request", f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(
            422, "invalid_request", "body must be a JSON object",
            details=[{"loc": [], "msg": "Input should be an object", "type": "dict_type"}],
        )
    return body
