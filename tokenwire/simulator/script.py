"""What the simulator says, and which faults it injects, as pure functions of the request.

Text: a seed is the sha256 of every message's role, content (``[[sim: ...]]`` directives
removed), tool calls and tool call id; SHAKE-256 of that seed picks words from
:data:`VOCABULARY`. Token 0 is a bare word, every later token is the word with one
leading space.

Directives, written anywhere in the LAST user message, any number of blocks::

    [[sim: key=value key=value ...]]

    fail=<status>[x<n>]    the first n calls answer HTTP <status> (400..599) with OpenAI's
                           error JSON; without ``x<n>`` every call fails
    retry_after=<seconds>  retry-after (and retry-after-ms) on a failure; 429 defaults to 1
    cut_after=<k>[x<n>]    the first n streaming calls (default 1) send k pieces (content
                           tokens, reasoning tokens, refusal words or tool-argument
                           fragments), then the connection is dropped: no finish chunk,
                           no [DONE]
    stall_after=<k>[x<n>]  the first n calls (default 1) pause after k pieces ...
    stall_s=<seconds>      ... for this long (default 1), then continue normally
    tokens=<n>             answer length in tokens (default 24)
    tps=<float>            tokens (pieces) per second for this request
    ttft_ms=<float>        time to the first piece for this request
    tool=<name>            the answer is a call of function <name> ...
    args=<json object>     ... with these arguments (default {}); repeat ``tool=... args=...``
                           for parallel calls, in order. Streamed as OpenAI does: the role
                           chunk carries call 0's id/type/name with ``arguments: ""``, later
                           calls open with the same header, then argument fragments;
                           finish_reason ``tool_calls``. Ignored once a ``tool`` message
                           follows the last user message: the answer to a tool result is text
    refusal=1              the answer is :data:`REFUSAL_TEXT` in ``delta.refusal`` (content
                           null), finish_reason ``stop``
    reasoning=<k>          k reasoning tokens in ``delta.reasoning_content`` (as DeepSeek and
                           vLLM stream it) before the answer; counted in completion_tokens and
                           completion_tokens_details.reasoning_tokens

An ``args`` object may hold spaces and commas; a block ends at the first ``]]`` outside a
JSON string.

The request shapes the answer too: ``response_format`` ``json_schema`` makes the content a
compact JSON text that fills every property of the schema (:func:`json_schema_text`),
``json_object`` makes it ``{"answer": "<the words>"}``; both are streamed in JSON-sized
pieces. A ``max_tokens``/``max_completion_tokens`` cap counts every piece (reasoning
first) and ends the answer with ``length``. Tool call ids are ``call_`` + 24 base62
characters derived from the seed, so :func:`expected_tool_calls` predicts them.

Calls are counted per conversation (sha256 of the raw messages, directives included), so
retrying the same request is the next call. ``fail`` consumes the first calls; ``cut_after``
and ``stall_after`` count only the calls that were not failed, so
``fail=429x1 cut_after=3`` answers 429, then a cut stream, then a full one.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tokenwire.simulator.answer import (
    REFUSAL_TEXT,
    VOCABULARY,
    Piece,
    ToolCall,
    as_tokens,
    json_object_text,
    json_pieces,
    json_schema_text,
    reasoning_tokens,
    tool_call_id,
    word_pieces,
    words,
)
from tokenwire.simulator.directives import (
    MAX_TOKENS,
    DirectiveError,
    Directives,
    parse_directives,
    strip_directives,
)

__all__ = [
    "DEFAULT_TOKENS",
    "MAX_TOKENS",
    "REFUSAL_TEXT",
    "VOCABULARY",
    "Answer",
    "CallCounter",
    "CallPlan",
    "DirectiveError",
    "Directives",
    "PromptCount",
    "build_answer",
    "content_text",
    "conversation_key",
    "count_prompt",
    "expected_reasoning",
    "expected_refusal",
    "expected_text",
    "expected_tokens",
    "expected_tool_calls",
    "last_user_text",
    "parse_directives",
    "plan_call",
    "strip_directives",
    "text_seed",
]

DEFAULT_TOKENS = 24

FinishReason = Literal["stop", "length", "tool_calls"]
Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """Everything one answer streams, in order: reasoning pieces, then the body pieces."""

    seed: bytes
    pieces: tuple[Piece, ...]
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    refusal: bool = False

    @property
    def content(self) -> str:
        return self._text("content")

    @property
    def refusal_text(self) -> str | None:
        return self._text("refusal") if self.refusal else None

    @property
    def reasoning(self) -> str:
        return self._text("reasoning")

    @property
    def reasoning_count(self) -> int:
        return sum(1 for piece in self.pieces if piece.kind == "reasoning")

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)

    def _text(self, kind: str) -> str:
        return "".join(piece.text for piece in self.pieces if piece.kind == kind)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything one call will do, decided before the first byte is sent."""

    call_index: int
    answer: Answer
    ttft_s: float
    tps: float
    fail_status: int | None = None
    retry_after_s: float | None = None
    cut_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0

    @property
    def finish_reason(self) -> FinishReason:
        return self.answer.finish_reason

    @property
    def pieces(self) -> tuple[Piece, ...]:
        return self.answer.pieces

    @property
    def fault(self) -> str:
        """A short key=value-friendly description of the injected fault, or ``none``."""
        parts = []
        if self.fail_status is not None:
            parts.append(f"fail{self.fail_status}")
        if self.cut_after is not None:
            parts.append(f"cut@{self.cut_after}")
        if self.stall_after is not None:
            parts.append(f"stall@{self.stall_after}:{self.stall_s:g}s")
        return ",".join(parts) or "none"


# --- message text -----------------------------------------------------------------------


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, a list of parts, or None."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(part) for part in content)
    return str(content)


def _part_text(part: Any) -> str:
    if isinstance(part, Mapping):
        for key in ("text", "refusal"):
            if isinstance(part.get(key), str):
                return part[key]
    if isinstance(part, str):
        return part
    return ""


def last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def answers_tool_result(messages: Sequence[Message]) -> bool:
    """Whether a ``tool`` message follows the last user message (the model reads a result)."""
    for message in reversed(messages):
        role = message.get("role")
        if role == "tool":
            return True
        if role == "user":
            return False
    return False


# --- prompt tokens ----------------------------------------------------------------------

# OpenAI-like prices of non-text parts: a low-detail image is 85 tokens; "high"/"auto" is
# priced as a 1024x1024 image (85 + 4 tiles x 170). Audio is about 10 tokens a second of
# 16 kHz 16-bit mono (one per 3,200 decoded bytes); a file one per 4 decoded bytes.
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 765
AUDIO_BYTES_PER_TOKEN = 3_200
FILE_BYTES_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class PromptCount:
    """Prompt tokens, and how many of them are audio (for ``prompt_tokens_details``)."""

    tokens: int
    audio_tokens: int = 0


def count_prompt(messages: Sequence[Message]) -> PromptCount:
    """A stable stand-in for tiktoken: words, parts, tool calls and per-message overhead."""
    tokens, audio = 3, 0
    for message in messages:
        tokens += 4 + len(content_text(message.get("content")).split())
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                tokens += 3 + len(f"{function.get('name')} {function.get('arguments')}".split())
        parts = message.get("content")
        for part in parts if isinstance(parts, list) else ():
            image, sound = _part_tokens(part)
            tokens += image + sound
            audio += sound
    return PromptCount(tokens, audio)


def _part_tokens(part: Any) -> tuple[int, int]:
    """(tokens, of which audio) of one non-text content part."""
    if not isinstance(part, Mapping):
        return 0, 0
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        detail = image.get("detail") if isinstance(image, Mapping) else None
        return (IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH), 0
    if kind == "input_audio":
        audio = part.get("input_audio")
        data = audio.get("data") if isinstance(audio, Mapping) else None
        size = len(data) * 3 // 4 if isinstance(data, str) else 0
        sound = max(1, size // AUDIO_BYTES_PER_TOKEN)
        return sound, sound
    if kind == "file":
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, Mapping) else None
        size = len(data) * 3 // 4 if isinstance(data, str) else 0
        return max(1, size // FILE_BYTES_PER_TOKEN), 0
    return 0, 0


# --- hashing ----------------------------------------------------------------------------


def _digest(pairs: Iterable[tuple[str, str]]) -> bytes:
    h = hashlib.sha256()
    for role, text in pairs:
        h.update(role.encode())
        h.update(b"\x00")
        h.update(text.encode())
        h.update(b"\x1e")
    return h.digest()


def _seed_text(message: Message) -> str:
    text = strip_directives(content_text(message.get("content")))
    # Only messages that have them add these, so plain conversations keep their v1 seed.
    if message.get("tool_calls"):
        text += "\x1ftool_calls=" + json.dumps(message["tool_calls"], sort_keys=True, default=str)
    if message.get("tool_call_id"):
        text += f"\x1ftool_call_id={message['tool_call_id']}"
    return text


def text_seed(messages: Sequence[Message]) -> bytes:
    """The seed of the answer: directives do not change it."""
    return _digest((str(m.get("role", "")), _seed_text(m)) for m in messages)


def conversation_key(messages: Sequence[Message]) -> str:
    """The key calls are counted under: the raw messages, directives included."""
    raw = json.dumps(list(messages), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


# --- the answer -------------------------------------------------------------------------


def build_answer(
    messages: Sequence[Message],
    directives: Directives,
    *,
    max_tokens: int | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> Answer:
    """What the model answers to ``messages``: a pure function of its arguments."""
    seed = text_seed(messages)
    reasoning = [Piece("reasoning", t) for t in reasoning_tokens(seed, directives.reasoning)]
    tool_calls: tuple[ToolCall, ...] = ()
    if directives.refusal:
        body = [Piece("refusal", t) for t in word_pieces(REFUSAL_TEXT)]
        natural: FinishReason = "stop"
    elif directives.tools and not answers_tool_result(messages):
        tool_calls = tuple(
            ToolCall(i, tool_call_id(seed, i, tool.name), tool.name, tool.arguments)
            for i, tool in enumerate(directives.tools)
        )
        body = [Piece("arguments", t, c.index) for c in tool_calls for t in _arguments(c)]
        natural = "tool_calls"
    else:
        body = [Piece("content", t) for t in _content_pieces(seed, directives, response_format)]
        natural = "stop"
    pieces = reasoning + body
    finish = natural
    if max_tokens is not None and max_tokens < len(pieces):
        pieces, finish = pieces[:max_tokens], "length"
    return Answer(seed, tuple(pieces), tool_calls, finish, refusal=directives.refusal)


def _arguments(call: ToolCall) -> list[str]:
    # At least one fragment per call, so every call has a piece that opens it.
    return json_pieces(call.arguments) or [""]


def _content_pieces(
    seed: bytes, directives: Directives, response_format: Mapping[str, Any] | None
) -> list[str]:
    count = DEFAULT_TOKENS if directives.tokens is None else directives.tokens
    kind = response_format.get("type") if response_format else None
    if kind == "json_schema":
        spec = response_format.get("json_schema") if response_format else None
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return json_pieces(json_schema_text(schema or {}, seed))
    if kind == "json_object":
        return json_pieces(json_object_text(words(seed, count)))
    return as_tokens(words(seed, count))


def _answer_for(
    messages: Sequence[Message],
    max_tokens: int | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> Answer:
    directives = parse_directives(last_user_text(messages))
    return build_answer(
        messages, directives, max_tokens=max_tokens, response_format=response_format
    )


# --- what tests expect ------------------------------------------------------------------


def expected_tokens(
    messages: Sequence[Message],
    max_tokens: int | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> list[str]:
    """The exact content deltas the simulator streams for ``messages``.

    Honors the directives in the last user message, the ``max_tokens`` cap (pass
    ``max_tokens`` or ``max_completion_tokens``, whichever the request sets; reasoning
    tokens count against it) and the request's ``response_format``.
    """
    answer = _answer_for(messages, max_tokens, response_format)
    return [piece.text for piece in answer.pieces if piece.kind == "content"]


def expected_text(
    messages: Sequence[Message],
    max_tokens: int | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> str:
    """The full content the simulator answers (``""`` for a tool call or a refusal)."""
    return "".join(expected_tokens(messages, max_tokens, response_format))


def expected_tool_calls(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The assembled ``tool_calls`` of the answer (``[]`` when it is not a tool call)."""
    return [call.wire() for call in _answer_for(messages).tool_calls]


def expected_refusal(messages: Sequence[Message]) -> str | None:
    """The refusal text of the answer, or None when the model does not refuse."""
    return _answer_for(messages).refusal_text


def expected_reasoning(messages: Sequence[Message], max_tokens: int | None = None) -> str:
    """The ``reasoning_content`` streamed before the answer (``""`` without ``reasoning=``)."""
    return _answer_for(messages, max_tokens).reasoning


# --- one call ---------------------------------------------------------------------------


def plan_call(
    messages: Sequence[Message],
    directives: Directives,
    *,
    call_index: int,
    max_tokens: int | None,
    ttft_ms: float,
    tokens_per_s: float,
    response_format: Mapping[str, Any] | None = None,
) -> CallPlan:
    """Decide what call number ``call_index`` (0-based) of this conversation does."""
    answer = build_answer(
        messages, directives, max_tokens=max_tokens, response_format=response_format
    )
    failing = _failing(directives, call_index)
    stream_index = call_index - (directives.fail_times or 0)
    stalling = directives.stall_after is not None and stream_index < directives.stall_times
    retry_after = directives.retry_after_s
    if retry_after is None and directives.fail_status == 429:
        retry_after = 1.0
    return CallPlan(
        call_index=call_index,
        answer=answer,
        ttft_s=(directives.ttft_ms if directives.ttft_ms is not None else ttft_ms) / 1000,
        tps=directives.tps if directives.tps is not None else tokens_per_s,
        fail_status=directives.fail_status if failing else None,
        retry_after_s=retry_after if failing else None,
        cut_after=directives.cut_after if stream_index < directives.cut_times else None,
        stall_after=directives.stall_after if stalling else None,
        stall_s=directives.stall_s if stalling else 0.0,
    )


def _failing(directives: Directives, call_index: int) -> bool:
    if directives.fail_status is None:
        return False
    return directives.fail_times is None or call_index < directives.fail_times


class CallCounter:
    """Calls seen per conversation key, least recently used keys forgotten first."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._max_keys = max_keys
        self._counts: OrderedDict[str, int] = OrderedDict()

    def next(self, key: str) -> int:
        """The 0-based index of this call, counting it."""
        index = self._counts.pop(key, 0)
        self._counts[key] = index + 1
        if len(self._counts) > self._max_keys:
            self._counts.popitem(last=False)
        return index

    def __len__(self) -> int:
        return len(self._counts)
