"""OpenAI's chat completions wire format, both ways, as pure functions.

In: an OpenAI request body becomes tokenwire's request fields (``split_body``); what tokenwire does
not carry is refused as OpenAI refuses it (400, ``param`` naming the field). ``stream``,
``stream_options`` and ``n`` are this endpoint's own; ``modalities: ["text"]`` and ``store`` are
accepted (every completion is kept and retrievable by its id anyway).

Out: one request's session events become ``chat.completion.chunk`` dicts (``ChunkWriter``) or
one ``chat.completion`` (``Collected`` + ``completion``). Ids are ``chatcmpl-<request id>``;
``created`` and ``model`` come from the request's ``start`` event, so a re-attach names the same
completion as the stream that made it. Reasoning text is ``reasoning_content`` (as DeepSeek and
vLLM send it: OpenAI's chat completions do not stream reasoning).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from api.adapters.attempts import AttemptFilter, Diverged, drop_superseded
from api.adapters.openai_errors import (
    OpenAIError,
    answer_restarted,
    from_error_event,
    unrecognized,
    unsupported,
)
from api.adapters.request_events import Delivered
from schemas.requests import PROVIDER_FIELDS
from schemas.session_events import (
    CANCELLED,
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    RefusalEvent,
    SessionEvent,
    StartEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
)

COMPLETION_PREFIX = "chatcmpl-"
FORWARDED = frozenset({"messages", "model", *PROVIDER_FIELDS})
OWN = frozenset({"stream", "stream_options", "n", "modalities", "store"})
STREAM_OPTIONS = frozenset({"include_usage", "include_obfuscation"})
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
DONE_LINE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Options:
    stream: bool
    include_usage: bool


def split_body(body: dict[str, Any]) -> tuple[dict[str, Any], Options]:
    """The tokenwire request fields of an OpenAI body, and what the response should look like."""
    for name in body:
        if name not in FORWARDED and name not in OWN:
            raise unrecognized(name)
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise unsupported("n", "Only n=1 is supported: each completion is one durable answer.")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise unsupported("modalities", 'Only text output is supported: modalities=["text"].')
    _flag(body, "store")
    stream = _flag(body, "stream")
    return {k: v for k, v in body.items() if k in FORWARDED}, Options(
        stream, _include_usage(body.get("stream_options"), stream=stream)
    )


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise OpenAIError(400, f"Invalid type for '{name}': expected a boolean.", param=name,
                          code="invalid_type")  # fmt: skip
    return bool(value)


def _include_usage(options: Any, *, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise OpenAIError(
            400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options", code="invalid_value",
        )
    if not isinstance(options, dict):
        raise OpenAIError(400, "Invalid type for 'stream_options': expected an object.",
                          param="stream_options", code="invalid_type")  # fmt: skip
    for name in options:
        if name not in STREAM_OPTIONS:
            raise unrecognized(f"stream_options.{name}")
    return _flag(options, "include_usage")


# --- ids --------------------------------------------------------------------------------


def completion_id(request_id: str) -> str:
    return COMPLETION_PREFIX + request_id


def request_id_of(completion_or_request_id: str) -> str:
    """A path's id: the completion's (``chatcmpl-…``, as the SDKs have it) or the request's."""
    return completion_or_request_id.removeprefix(COMPLETION_PREFIX)


@dataclass(frozen=True, slots=True)
class Head:
    """What every chunk of one completion repeats."""

    id: str
    created: int
    model: str

    @classmethod
    def of(cls, request_id: str, start: StartEvent | None, model: str | None = None) -> Head:
        if start is None:
            return cls(completion_id(request_id), int(time.time()), model or "")
        return cls(completion_id(request_id), int(start.accepted_at), start.model)


# --- streaming --------------------------------------------------------------------------


def sse(obj: dict[str, Any], event_id: str | None = None) -> bytes:
    """One SSE event; ``id:`` is tokenwire's event id, a position to re-attach from."""
    data = b"data: " + orjson.dumps(obj) + b"\n\n"
    return data if event_id is None else f"id: {event_id}\n".encode() + data


@dataclass(slots=True)
class ChunkWriter:
    """The chunks of one stream: a role chunk before its first delta, then one chunk per
    output event, a finish chunk and (``include_usage``) a usage chunk with no choices."""

    head: Head
    include_usage: bool
    _opened: bool = False

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        chunk: dict[str, Any] = {
            "id": self.head.id, "object": "chat.completion.chunk", "created": self.head.created,
            "model": self.head.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                         "finish_reason": finish_reason}],
        }  # fmt: skip
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def output(self, event: SessionEvent) -> list[dict[str, Any]]:
        """The chunks of an output event (token, tool_call, refusal, reasoning)."""
        if isinstance(event, TokenEvent):
            logprobs = None if event.logprobs is None else {
                "content": event.logprobs, "refusal": None}  # fmt: skip
            return self._opening("content", [self.chunk({"content": event.text}, None, logprobs)])
        if isinstance(event, ToolCallEvent):
            return self._opening("tool_calls", [self.chunk({"tool_calls": [tool_delta(event)]})])
        if isinstance(event, RefusalEvent):
            return self._opening("refusal", [self.chunk({"refusal": event.text})])
        if isinstance(event, ReasoningEvent):
            delta = {"reasoning_content": event.text}
            return self._opening("reasoning", [self.chunk(delta)])
        return []

    def finish(self, done: DoneEvent) -> list[dict[str, Any]]:
        chunks = self._opening("content", [self.chunk({}, finish_reason(done.finish_reason))])
        if self.include_usage:
            chunks.append(self.usage(done.usage))
        return chunks

    def usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "id": self.head.id, "object": "chat.completion.chunk", "created": self.head.created,
            "model": self.head.model, "choices": [], "usage": usage_object(usage),
        }  # fmt: skip

    def _opening(self, kind: str, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """OpenAI's first chunk says the role, shaped by what follows: ``content: ""`` before
        text, ``content: null`` before a tool call or a refusal."""
        if self._opened:
            return chunks
        self._opened = True
        content = "" if kind in ("content", "reasoning") else None
        return [self.chunk({"role": "assistant", "content": content}), *chunks]


def tool_delta(event: ToolCallEvent) -> dict[str, Any]:
    """A tool call fragment as OpenAI streams it: the first names id, type and function name."""
    if event.id is None:
        return {"index": event.index, "function": {"arguments": event.arguments}}
    return {
        "index": event.index, "id": event.id, "type": "function",
        "function": {"name": event.name, "arguments": event.arguments},
    }  # fmt: skip


def finish_reason(reason: str) -> str:
    """OpenAI's finish reasons; a cancel through tokenwire ends like a stop sequence."""
    if reason == CANCELLED or reason not in FINISH_REASONS:
        return "stop"
    return reason


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


class ChunkRelay:
    """One stream's SSE bytes from one request's events, for a client that cannot take text
    back: attempts go through an ``AttemptFilter``, and events the client already holds (below
    offset ``held_below``, a re-attach from a position) are only remembered as sent."""

    def __init__(
        self, request_id: str, *, model: str | None, include_usage: bool, held_below: int
    ) -> None:
        self.request_id = request_id
        self.ended = False
        self._model = model
        self._include_usage = include_usage
        self._held_below = held_below
        self._start: StartEvent | None = None
        self._filter = AttemptFilter()
        self._writer: ChunkWriter | None = None

    def take(self, items: list[Delivered], *, backlog: bool) -> bytes:
        """The bytes for ``items`` (in order; ``backlog``: read together without waiting, so
        attempts a later one among them supersedes are dropped outright)."""
        for item in items:
            if isinstance(item.event, StartEvent) and self._start is None:
                self._start = item.event
        fresh = [item for item in items if item.offset >= self._held_below]
        out = [self._hold(item) for item in items if item.offset < self._held_below]
        if backlog and fresh:
            kept = {id(event) for event in drop_superseded(item.event for item in fresh)}
            fresh = [item for item in fresh if id(item.event) in kept]
        for item in fresh:
            if self.ended:
                break
            out.append(self._relay(item))
        return b"".join(out)

    def _hold(self, item: Delivered) -> bytes:
        """An event the client has: remembered as sent; a terminal one still ends the stream."""
        self._filter.accept(item.event)
        return self._terminal(item.event) if isinstance(item.event, DoneEvent | ErrorEvent) else b""

    def _relay(self, item: Delivered) -> bytes:
        passed = self._filter.accept(item.event)
        if isinstance(passed, Diverged):
            self.ended = True
            return sse(answer_restarted(completion_id(self.request_id), passed.reason).body())
        out = []
        for event in passed:
            if isinstance(event, DoneEvent | ErrorEvent):
                out.append(self._terminal(event, item.event_id))
            else:
                out.append(_with_last_id(self.writer.output(event), item.event_id))
        return b"".join(out)

    def _terminal(self, event: DoneEvent | ErrorEvent, event_id: str | None = None) -> bytes:
        self.ended = True
        if isinstance(event, ErrorEvent):
            return sse(from_error_event(event).body())
        return _with_last_id(self.writer.finish(event), event_id) + DONE_LINE

    @property
    def writer(self) -> ChunkWriter:
        if self._writer is None:
            head = Head.of(self.request_id, self._start, self._model)
            self._writer = ChunkWriter(head, self._include_usage)
        return self._writer


def _with_last_id(chunks: list[dict[str, Any]], event_id: str | None) -> bytes:
    """One event's chunks; the last carries its id (its whole output is then the client's)."""
    last = len(chunks) - 1
    return b"".join(sse(chunk, event_id if i == last else None) for i, chunk in enumerate(chunks))


# --- non-streaming ----------------------------------------------------------------------


@dataclass(slots=True)
class Collected:
    """One request's final attempt, assembled (a ``start``/``retry`` drops what came before).

    Kept as pieces, joined once at the end: a long answer is not copied whole per token."""

    start: StartEvent | None = None
    attempt: int = 0
    _parts: list[str] = field(default_factory=list)
    _refusal: list[str] = field(default_factory=list)
    _reasoning: list[str] = field(default_factory=list)
    _logprobs: list[dict[str, Any]] | None = None

    def add(self, event: SessionEvent) -> None:
        if event.attempt != self.attempt:
            self.attempt = event.attempt
            self._parts, self._refusal, self._reasoning, self._logprobs = [], [], [], None
        if isinstance(event, StartEvent):
            self.start = self.start or event
        elif isinstance(event, TokenEvent):
            self._parts.append(event.text)
            if event.logprobs is not None:
                self._logprobs = self._logprobs or []
                self._logprobs.extend(event.logprobs)
        elif isinstance(event, RefusalEvent):
            self._refusal.append(event.text)
        elif isinstance(event, ReasoningEvent):
            self._reasoning.append(event.text)

    @property
    def content(self) -> str:
        return "".join(self._parts)

    @property
    def refusal(self) -> str | None:
        return "".join(self._refusal) if self._refusal else None

    @property
    def reasoning(self) -> str | None:
        return "".join(self._reasoning) if self._reasoning else None

    @property
    def logprobs(self) -> list[dict[str, Any]] | None:
        return self._logprobs


def completion(head: Head, collected: Collected, done: DoneEvent) -> dict[str, Any]:
    """The ``chat.completion`` of a finished request."""
    text, refusal, reasoning = collected.content, collected.refusal, collected.reasoning
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if not text and (done.tool_calls or refusal) else text,
        "refusal": refusal,
        "annotations": [],
    }
    if done.tool_calls:
        message["tool_calls"] = [call.model_dump(mode="json") for call in done.tool_calls]
    if reasoning:
        message["reasoning_content"] = reasoning
    logprobs = None if collected.logprobs is None else {
        "content": collected.logprobs, "refusal": None}  # fmt: skip
    return {
        "id": head.id, "object": "chat.completion", "created": head.created, "model": head.model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                     "finish_reason": finish_reason(done.finish_reason)}],
        "usage": usage_object(done.usage),
    }  # fmt: skip
