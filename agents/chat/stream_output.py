"""A stream's output, two ways: as coalesced session events, and as the assembled message.

Output comes in lanes: answer text, refusal, reasoning, and one lane per tool call index.
``PendingOutput`` coalesces consecutive chunks of one lane (coalescing.py decides when they
leave); a chunk of another lane makes the caller flush first, so events keep the order in
which the provider streamed them. ``MessageAssembly`` keeps everything an attempt produced, for
``done.tool_calls``, the ``completed`` record and a usage estimate when no usage chunk came.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agents.chat.coalescing import Coalescer
from agents.chat.llm_stream import Chunk
from schemas.lifecycle import FinalMessage
from schemas.messages import ToolCall
from schemas.session_events import Usage
from tokenwire.errors import GenerationError

TEXT, REFUSAL, REASONING, TOOL_CALL = "token", "refusal", "reasoning", "tool_call"
Lane = tuple[str, int]  # (event type, tool call index; 0 for the other lanes)
# A rough characters-per-token for estimates (OpenAI's own rule of thumb for English).
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Output:
    """One session event's worth of output."""

    lane: Lane
    text: str
    received_at: float
    tool_id: str | None = None
    tool_name: str | None = None
    logprobs: list[dict[str, Any]] | None = None


def lanes_of(chunk: Chunk) -> list[tuple[Lane, str, str | None, str | None]]:
    """(lane, text, tool id, tool name) of each part of a chunk, in stream order."""
    parts: list[tuple[Lane, str, str | None, str | None]] = []
    if chunk.reasoning:
        parts.append(((REASONING, 0), chunk.reasoning, None, None))
    if chunk.text:
        parts.append(((TEXT, 0), chunk.text, None, None))
    if chunk.refusal:
        parts.append(((REFUSAL, 0), chunk.refusal, None, None))
    for call in chunk.tool_calls:
        parts.append(((TOOL_CALL, call.index), call.arguments, call.id, call.name))
    return parts


@dataclass
class PendingOutput:
    coalescer: Coalescer
    lane: Lane = (TEXT, 0)
    tool_id: str | None = None
    tool_name: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    header_at: float = 0.0

    @property
    def empty(self) -> bool:
        # A tool call's first fragment may name it with no arguments yet: still something.
        return self.coalescer.empty and self.tool_id is None and self.tool_name is None

    def must_flush_for(self, lane: Lane) -> bool:
        return lane != self.lane and not self.empty

    def add(
        self,
        lane: Lane,
        text: str,
        received_at: float,
        *,
        tool_id: str | None = None,
        tool_name: str | None = None,
        logprobs: list[dict[str, Any]] | None = None,
    ) -> None:
        """Buffer a part; the caller has flushed first if ``must_flush_for(lane)``."""
        self.lane = lane
        self.tool_id = self.tool_id or tool_id
        self.tool_name = self.tool_name or tool_name
        if logprobs:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(logprobs)
        self.coalescer.add(text, received_at)
        if self.coalescer.empty:  # a header without arguments: it still has a time
            self.header_at = received_at

    def due(self, now: float, *, behind: bool = False) -> bool:
        return self.coalescer.due(now, behind=behind)

    def deadline(self) -> float:
        return self.coalescer.deadline()

    def drain(self) -> Output:
        if self.coalescer.empty:
            text, received_at = "", self.header_at
        else:
            text, received_at = self.coalescer.drain()
        output = Output(
            self.lane, text, received_at, self.tool_id, self.tool_name, self.logprobs
        )
        self.tool_id = self.tool_name = None
        self.logprobs = None
        return output


@dataclass
class _ToolCallParts:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


@dataclass
class MessageAssembly:
    """Everything one attempt produced, assembled as a client would."""

    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    output_chunks: int = 0

    def add(self, chunk: Chunk) -> None:
        if not chunk.has_output:
            return
        self.output_chunks += 1
        if chunk.text:
            self.content.append(chunk.text)
        if chunk.refusal:
            self.refusal.append(chunk.refusal)
        if chunk.reasoning:
            self.reasoning.append(chunk.reasoning)
        for delta in chunk.tool_calls:
            parts = self.calls.setdefault(delta.index, _ToolCallParts())
            parts.id = parts.id or delta.id
            parts.name = parts.name or delta.name
            parts.arguments.append(delta.arguments)

    @property
    def text(self) -> str:
        return "".join(self.content)

    def tool_calls(self, *, lenient: bool = False) -> list[ToolCall]:
        """The calls by index; a call the provider never named is its error, retried (with
        ``lenient``, left out: the client's fold leaves it out too)."""
        if lenient:
            return [c for c in (self._call(p) for _, p in sorted(self.calls.items())) if c]
        try:
            return [
                ToolCall.model_validate(
                    {"id": parts.id, "function": {"name": parts.name,
                                                  "arguments": "".join(parts.arguments)}}
                )
                for _, parts in sorted(self.calls.items())
            ]  # fmt: skip
        except ValidationError as exc:
            raise GenerationError(
                "bad_chunk", f"a streamed tool call is incomplete: {exc.errors()[0]['msg']}",
                retryable=True,
            ) from None  # fmt: skip

    @staticmethod
    def _call(parts: _ToolCallParts) -> ToolCall | None:
        try:
            return ToolCall.model_validate(
                {"id": parts.id, "function": {"name": parts.name,
                                              "arguments": "".join(parts.arguments)}}
            )  # fmt: skip
        except ValidationError:
            return None

    def message(self, *, lenient: bool = False) -> FinalMessage:
        return FinalMessage(
            content=self.text,
            tool_calls=self.tool_calls(lenient=lenient),
            refusal="".join(self.refusal) if self.refusal else None,
            reasoning="".join(self.reasoning) if self.reasoning else None,
        )

    def estimated_usage(self, prompt_chars: int) -> Usage:
        """What the stream cost as far as it can be counted here: one token per output chunk
        (providers stream a token per chunk), the prompt by characters."""
        prompt = max(1, prompt_chars // CHARS_PER_TOKEN)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.output_chunks,
            total_tokens=prompt + self.output_chunks,
            estimated=True,
        )
