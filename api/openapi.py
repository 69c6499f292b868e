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

# The adapters' bodies, as loose as the endpoints take them: what a client library sends, with
# every field's exact rules (UI message parts, OpenAI messages) checked by the edge (a 4xx).
UI_CHAT = {
    "type": "object",
    "required": ["id", "messages"],
    "properties": {
        "id": {"type": "string", "description": "the chat id (the caller's own session)"},
        "messages": {"type": "array", "items": {"type": "object"},
                     "description": "the AI SDK's UIMessage[] (role, parts)"},
        "trigger": {"type": "string", "enum": ["submit-message", "regenerate-message"]},
        "messageId": {"type": "string"},
    },
    "additionalProperties": True,
    "description": "what `useChat`'s DefaultChatTransport sends; other fields may be "
                   "ChatRequest's (model, tools, temperature...), anything else is a 422",
}
UI_NOTHING_ACTIVE = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": ERROR["properties"]["error"], "session_id": {"type": "string"},
                   "status": {"type": "string", "enum": ["finished"]}},
}
OPENAI_COMPLETION = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {"type": "array", "items": {"type": "object"}},
        "model": {"type": "string"},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object"},
    },
    "additionalProperties": True,
    "description": "OpenAI's chat completion request; a field tokenwire does not carry is "
                   "OpenAI's 400 naming it (`param`)",
}
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": "string", "nullable": True},
                       "code": {"type": "string", "nullable": True}},
    }},
}


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


def _openai_errors(*statuses: int) -> dict[str, Any]:
    schema = {"application/json": {"schema": {"$ref": REF.format(model="OpenAIError")}}}
    return {str(status): {"description": "OpenAI's error shape", "content": schema}
            for status in statuses}  # fmt: skip


def _chat_id(name: str = "chat_id") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def adapter_paths(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The AI SDK's and OpenAI's endpoints (``api.adapters``)."""
    stream = {"text/event-stream": {}}
    completion_id = _chat_id("completion_id")
    return {
        "/v1/ui/chat": {"post": {
            "operationId": "postUiChat", "security": security,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": UI_CHAT}}},
            "responses": {
                "200": {"description": "the AI SDK's UI message stream", "content": stream},
                **_errors(400, 401, 403, 413, 422, 429, 503),
            },
        }},
        "/v1/ui/chat/{chat_id}/stream": {"get": {
            "operationId": "resumeUiChat", "security": security, "parameters": [_chat_id()],
            "responses": {
                "200": {"description": "the active message from its start", "content": stream},
                "204": {"description": "nothing active"},
                **_errors(401, 403, 422, 429, 503),
            },
        }},
        "/v1/ui/chat/{chat_id}/cancel": {"post": {
            "operationId": "cancelUiChat", "security": security, "parameters": [_chat_id()],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"request_id": REQUEST_ID}}}}},
            "responses": {
                "202": {"description": "cancel published",
                        "content": {"application/json": {"schema": CANCELLING}}},
                "409": {"description": "nothing active, or the request already ended",
                        "content": {"application/json": {"schema": UI_NOTHING_ACTIVE}}},
                **_errors(400, 401, 403, 413, 422, 503),
            },
        }},
        "/v1/chat/completions": {"post": {
            "operationId": "createChatCompletion", "security": security,
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": OPENAI_COMPLETION}}},
            "responses": {
                "200": {"description": "`chat.completion`, or with `stream: true` its chunks",
                        "content": {"application/json": {}, **stream}},
                **_openai_errors(400, 401, 403, 429, 500, 503),
            },
        }},
        "/v1/chat/completions/{completion_id}": {"get": {
            "operationId": "retrieveChatCompletion", "security": security,
            "parameters": [completion_id],
            "responses": {"200": {"description": "the `chat.completion` once it is over",
                                  "content": {"application/json": {}}},
                          **_openai_errors(400, 401, 403, 404, 429, 500, 503)},
        }},
        "/v1/chat/completions/{completion_id}/stream": {"get": {
            "operationId": "reattachChatCompletion", "security": security,
            "parameters": [
                completion_id,
                {"name": "from", "in": "query", "schema": {"type": "string"},
                 "description": f"start at this position: {EVENT_ID}"},
                {"name": "include_usage", "in": "query", "schema": {"type": "string"}},
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"},
                 "description": f"start after this event (wins over `from`): {EVENT_ID}"},
            ],
            "responses": {"200": {"description": "the completion's chunks", "content": stream},
                          **_openai_errors(400, 401, 403, 404, 429, 500, 503)},
        }},
    }


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
            **adapter_paths(security),
            "/healthz": {"get": {"operationId": "healthz", "responses": {"200": {
                "description": "the process answers"}}}},
            "/readyz": {"get": {"operationId": "readyz", "responses": {
                "200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        },
        "components": {
            "schemas": {"ChatRequest": request_schema, "Error": ERROR,
                        "OpenAIError": OPENAI_ERROR, **definitions},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


DOCUMENT = build_document()


async def openapi_document(_: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)
