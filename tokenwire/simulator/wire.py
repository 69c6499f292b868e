"""OpenAI's JSON shapes for chat completions, models and errors, byte-exact where it matters.

Streaming frames are ``data: <compact json>\\n\\n``; the stream ends with ``data: [DONE]``.
Content chunks are rendered from a per-stream prefix/suffix so hundreds of concurrent
streams cost one ``json.dumps`` of a short string per token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

DONE_FRAME = b"data: [DONE]\n\n"
SYSTEM_FINGERPRINT = "fp_" + hashlib.sha256(b"tokenwire-sim").hexdigest()[:10]
MODEL_CREATED = 1_700_000_000
OWNED_BY = "tokenwire-sim"

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def dumps(obj: Any) -> str:
    """Compact JSON as OpenAI sends it (UTF-8, not ``\\u`` escaped)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def frame(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


def completion_id() -> str:
    return "chatcmpl-" + "".join(secrets.choice(_ALNUM) for _ in range(29))


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


# --- usage ------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# --- streaming --------------------------------------------------------------------------


@dataclass(slots=True)
class ChunkWriter:
    """Renders the ``chat.completion.chunk`` frames of one stream."""

    model: str
    include_usage: bool
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    _prefix: str = field(init=False)
    _suffix: str = field(init=False)

    def __post_init__(self) -> None:
        head = self._head()
        self._prefix = "data: " + dumps(head)[:-1] + ',"choices":[{"index":0,"delta":{"content":'
        tail = ',"usage":null' if self.include_usage else ""
        self._suffix = '},"logprobs":null,"finish_reason":null}]' + tail + "}\n\n"

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def _choice_chunk(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        chunk = self._head()
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        if self.include_usage:
            chunk["usage"] = None
        return frame(chunk)

    def role(self) -> bytes:
        """The first chunk: ``{"role": "assistant", "content": ""}``."""
        return self._choice_chunk({"role": "assistant", "content": ""}, None)

    def content(self, token: str) -> bytes:
        return (self._prefix + dumps(token) + self._suffix).encode()

    def finish(self, finish_reason: str) -> bytes:
        return self._choice_chunk({}, finish_reason)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        chunk = self._head()
        chunk["choices"] = []
        chunk["usage"] = usage(prompt_tokens, completion_tokens)
        return frame(chunk)


# --- non-streaming ----------------------------------------------------------------------


def completion(
    *, model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A whole ``chat.completion`` object."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


# --- models -----------------------------------------------------------------------------


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": OWNED_BY}


def model_list(models: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}


# --- errors -----------------------------------------------------------------------------

_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request was invalid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported.",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests (simulated). Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class WireError(Exception):
    """An error answered as OpenAI's ``{"error": {...}}`` JSON with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def status_error(status: int, message: str | None = None) -> WireError:
    """The error OpenAI answers with ``status`` (simulated failures use this)."""
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    type_, code, default_message = _STATUS_ERRORS.get(
        status, (default_type, None, f"Simulated HTTP {status} error.")
    )
    return WireError(status, message or default_message, type_, None, code)
