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

from tokenwire.simulator.answer import Piece, ToolCall, logprob_entry
from tokenwire.simulator.script import Answer, PromptCount

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


def usage(
    prompt_tokens: int,
    completion_tokens: int,
    *,
    reasoning_tokens: int = 0,
    prompt_audio_tokens: int = 0,
) -> dict[str, Any]:
    """OpenAI's usage object; ``completion_tokens`` already includes the reasoning."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": prompt_audio_tokens},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def answer_usage(answer: Answer, prompt: PromptCount) -> dict[str, Any]:
    return usage(
        prompt.tokens,
        answer.completion_tokens,
        reasoning_tokens=answer.reasoning_count,
        prompt_audio_tokens=prompt.audio_tokens,
    )


# --- streaming --------------------------------------------------------------------------


def tool_header(call: ToolCall) -> dict[str, Any]:
    """The delta entry that opens a streamed tool call: id, type, name, empty arguments."""
    return {
        "index": call.index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }


def role_delta(answer: Answer) -> dict[str, Any]:
    """The first delta, shaped by what follows it, as OpenAI (and DeepSeek) send it."""
    first = answer.pieces[0].kind if answer.pieces else "content"
    if first == "reasoning":
        return {"role": "assistant", "content": None, "reasoning_content": ""}
    if answer.tool_calls:
        header = [tool_header(answer.tool_calls[0])]
        return {"role": "assistant", "content": None, "tool_calls": header, "refusal": None}
    if answer.refusal:
        return {"role": "assistant", "content": None, "refusal": ""}
    return {"role": "assistant", "content": "", "refusal": None}


def piece_delta(piece: Piece) -> dict[str, Any]:
    if piece.kind == "content":
        return {"content": piece.text}
    if piece.kind == "reasoning":
        return {"content": None, "reasoning_content": piece.text}
    if piece.kind == "refusal":
        return {"refusal": piece.text}
    return {"tool_calls": [{"index": piece.index, "function": {"arguments": piece.text}}]}


@dataclass(slots=True)
class ChunkWriter:
    """Renders the ``chat.completion.chunk`` frames of one stream.

    ``top_logprobs`` is None without ``logprobs: true``; otherwise content and refusal
    chunks carry ``choices[0].logprobs`` with that many alternatives per token.
    """

    model: str
    include_usage: bool
    top_logprobs: int | None = None
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

    def _choice_chunk(
        self,
        delta: dict[str, Any],
        finish_reason: str | None,
        logprobs: dict[str, Any] | None = None,
    ) -> bytes:
        chunk = self._head()
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        ]
        if self.include_usage:
            chunk["usage"] = None
        return frame(chunk)

    def role(self, answer: Answer) -> bytes:
        """The first chunk (for a tool call it also opens call 0)."""
        delta = role_delta(answer)
        logprobs = None
        if self.top_logprobs is not None and delta.get("content") == "":
            logprobs = {"content": [], "refusal": None}
        return self._choice_chunk(delta, None, logprobs)

    def piece(self, piece: Piece, position: int, seed: bytes) -> bytes:
        """The chunk of one piece; ``position`` and ``seed`` fix its logprobs."""
        if self.top_logprobs is None or piece.kind not in ("content", "refusal"):
            if piece.kind == "content":
                return self.content(piece.text)
            return self._choice_chunk(piece_delta(piece), None)
        entry = [logprob_entry(seed, position, piece.text, self.top_logprobs)]
        logprobs = {"content": entry, "refusal": None}
        if piece.kind == "refusal":
            logprobs = {"content": None, "refusal": entry}
        return self._choice_chunk(piece_delta(piece), None, logprobs)

    def tool_header(self, call: ToolCall) -> bytes:
        return self._choice_chunk({"tool_calls": [tool_header(call)]}, None)

    def content(self, token: str) -> bytes:
        return (self._prefix + dumps(token) + self._suffix).encode()

    def finish(self, finish_reason: str) -> bytes:
        return self._choice_chunk({}, finish_reason)

    def usage(self, answer: Answer, prompt: PromptCount) -> bytes:
        chunk = self._head()
        chunk["choices"] = []
        chunk["usage"] = answer_usage(answer, prompt)
        return frame(chunk)


# --- non-streaming ----------------------------------------------------------------------


def completion(
    *, model: str, answer: Answer, prompt: PromptCount, top_logprobs: int | None = None
) -> dict[str, Any]:
    """A whole ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if answer.tool_calls or answer.refusal else answer.content,
        "refusal": answer.refusal_text,
        "annotations": [],
    }
    if answer.tool_calls:
        message["tool_calls"] = [call.wire() for call in answer.tool_calls]
    if answer.reasoning_count:
        message["reasoning_content"] = answer.reasoning
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": _message_logprobs(answer, top_logprobs),
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": answer_usage(answer, prompt),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _message_logprobs(answer: Answer, top_logprobs: int | None) -> dict[str, Any] | None:
    if top_logprobs is None:
        return None
    entries: dict[str, list[dict[str, Any]]] = {"content": [], "refusal": []}
    for position, piece in enumerate(answer.pieces):
        if piece.kind in entries:
            entries[piece.kind].append(
                logprob_entry(answer.seed, position, piece.text, top_logprobs)
            )
    if answer.refusal:
        return {"content": None, "refusal": entries["refusal"]}
    return {"content": entries["content"], "refusal": None}


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
