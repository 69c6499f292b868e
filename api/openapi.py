"""``GET /openapi.json``: the edge's HTTP API, described from the same models it validates with.

The request body is ``schemas.requests.ChatRequest``'s own JSON Schema, so the document cannot
drift from what the ingress accepts (a test compares them and fuzzes the edge from it).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from schemas.common import SESSION_ID_PATTERN
from schemas.control import CancelRequest
from schemas.requests import ChatRequest

REF = "#/components/schemas/{model}"
EVENT_ID = (
    "an event id as sent, `<epoch>-<offset>`: the session topic's generation (16 hex digits; "
    "it changes when an idle session topic is deleted and created again at offset 0) and the "
    "event's offset in it. A position of another generation than the current one starts at its "
    "beginning; a plain `<offset>` (clients from before epochs) is an offset in the current one"
)
CHAT_REQUEST = REF.format(model="ChatRequest")

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}
ACCEPTED = {
    "type": "object",
    "required": ["request_id", "session_id", "events_url", "stream_token", "write_token"],
    "properties": {
        "request_id": {"type": "string"},
        "session_id": {"type": "string"},
        "events_url": {"type": "string"},
        "stream_token": {"type": "string"},
        "write_token": {"type": "string"},
    },
}

CANCELLING = {
    "type": "object",
    "required": ["request_id", "session_id", "status"],
    "properties": {
        "request_id": {"type": "string"},
        "session_id": {"type": "string"},
        "status": {"type": "string", "enum": ["cancelling"]},
        "repeated": {"type": "boolean"},
    },
}
FINISHED = {
    "type": "object",
    "required": ["error", "status", "finish_reason"],
    "properties": {
        "error": ERROR["properties"]["error"],
        "request_id": {"type": "string"},
        "session_id": {"type": "string"},
        "status": {"type": "string", "enum": ["finished"]},
        "finish_reason": {"type": "string"},
    },
}
REQUEST_ID = CancelRequest.model_json_schema()["properties"]["request_id"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "malformed", 401: "not authenticated", 403: "not allowed", 404: "not found",
        409: "already finished", 413: "too large", 416: "resume position outside the session",
        422: "invalid",
        429: "over a quota or cap", 503: "unavailable",
    }
    return {str(status): _error(names[status]) for status in statuses}


def build_document() -> dict[str, Any]:
    request_schema = ChatRequest.model_json_schema(ref_template=REF, mode="validation")
    definitions = request_schema.pop("$defs", {})
    security = [{"bearer": []}, {"apiKey": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "tokenwire edge", "version": "1"},
        "paths": {
            "/v1/chat": {
                "post": {
                    "operationId": "postChat",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": CHAT_REQUEST}}},
                    },
                    "responses": {
                        "202": {
                            "description": "published",
                            "content": {"application/json": {"schema": ACCEPTED}},
                        },
                        **_errors(400, 401, 403, 413, 422, 429, 503),
                    },
                }
            },
            "/v1/sessions/{session_id}/events": {
                "get": {
                    "operationId": "sessionEvents",
                    "parameters": [
                        {"name": "session_id", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": SESSION_ID_PATTERN}},
                        {"name": "token", "in": "query", "schema": {"type": "string"}},
                        {"name": "from", "in": "query", "schema": {"type": "string"},
                         "description": f"start at this position: {EVENT_ID}"},
                        {"name": "until", "in": "query", "schema": {"type": "string"}},
                        {"name": "request_id", "in": "query", "schema": {"type": "string"}},
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"},
                         "description": f"start after this event (wins over `from`): {EVENT_ID}"},
                    ],
                    "responses": {
                        "200": {"description": "the session's events, `id: <epoch>-<offset>`, "
                                               "`event:` its type, `data:` its JSON",
                                "content": {"text/event-stream": {}}},
                        "204": {"description": "the awaited request already finished"},
                        **_errors(400, 401, 403, 416, 429, 503),
                    },
                }
            },
            "/v1/sessions/{session_id}/requests/{request_id}/cancel": {
                "post": {
                    "operationId": "cancelRequest",
                    "description": "Stop a generation: needs the caller's credential and the "
                                   "session's write token in `X-Stream-Token`. Publishes a "
                                   "cancel to the worker that owns the session; idempotent.",
                    "security": security,
                    "parameters": [
                        {"name": "session_id", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": SESSION_ID_PATTERN}},
                        {"name": "request_id", "in": "path", "required": True,
                         "schema": {"type": "string", "minLength": REQUEST_ID["minLength"],
                                    "maxLength": REQUEST_ID["maxLength"]}},
                        {"name": "X-Stream-Token", "in": "header", "required": True,
                         "schema": {"type": "string"},
                         "description": "the session's write token"},
                    ],
                    "responses": {
                        "202": {
                            "description": "cancel published (`repeated`: this edge had "
                                           "already published one for the request)",
                            "content": {"application/json": {"schema": CANCELLING}},
                        },
                        "409": {
                            "description": "the request has already ended",
                            "content": {"application/json": {"schema": FINISHED}},
                        },
                        **_errors(401, 403, 422, 503),
                    },
                }
            },
            "/healthz": {"get": {"operationId": "healthz", "responses": {"200": {
                "description": "the process answers"}}}},
            "/readyz": {"get": {"operationId": "readyz", "responses": {
                "200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        },
        "components": {
            "schemas": {"ChatRequest": request_schema, "Error": ERROR, **definitions},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


DOCUMENT = build_document()


async def openapi_document(_: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)
