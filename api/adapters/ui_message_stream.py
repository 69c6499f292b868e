"""One tokenwire request as the AI SDK's UI message stream (``ai`` v5 and later), pure.

Chunks are the SDK's ``uiMessageChunkSchema`` shapes with no field beyond them (the SDK's own
schemas are loose in v5 and v7, but the protocol is what they declare)::

    start {messageId}  start-step
    reasoning-start / reasoning-delta / reasoning-end    (one part per run of reasoning)
    text-start / text-delta / text-end                   (one part per run of text)
    tool-input-start / tool-input-delta                  (per tool call, as it streams)
    tool-input-available {input}                         (at done, the parsed arguments)
    finish-step  finish {finishReason}                   (done)
    finish-step  abort                                   (done with finish_reason cancelled)
    error {errorText}                                    (error, or a retry that diverged)

then ``data: [DONE]``. Choices:

- a ``refusal`` is a text part of its own (the SDK has no refusal part; a chat UI shows it);
- tool arguments that are not valid JSON end as ``tool-input-error`` (``input`` the raw text),
  which the SDK accepts and shows as the tool part's ``output-error``, as ``streamText`` does
  for an invalid tool call;
- a cancelled request ends with ``abort`` and no ``finish``, as ``streamText`` ends on abort;
- a part is always closed before the next one opens and before the stream ends, so
  start → delta → end is never broken, whatever ends the stream.

Retries go through ``api.adapters.attempts``: a cut-and-retry continues the same parts.
"""

from __future__ import annotations

import json
from typing import Any

from api.adapters.attempts import AttemptFilter, Diverged
from schemas.session_events import (
    CANCELLED,
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    RefusalEvent,
    SessionEvent,
    TokenEvent,
    ToolCallEvent,
)

Chunk = dict[str, Any]
DONE_LINE = b"data: [DONE]\n\n"
RESTARTED = "answer_restarted"
# tokenwire's (OpenAI's) finish reasons as the SDK names them; anything else is "other". Only
# names both v5 and v7 accept (v5 adds "unknown", v7 "interrupted").
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}


def message_id(request_id: str) -> str:
    """The assistant message's id: the same on every stream of the request, so a resumed
    stream replaces the message the client already holds instead of adding one."""
    return f"msg-{request_id}"


def encode(chunk: Chunk) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def finish_reason(reason: str) -> str:
    return FINISH_REASONS.get(reason, "other")


class UIMessageStream:
    """Turns one request's session events into UI message chunks, in order."""

    def __init__(self, request_id: str, continues: str | None = None) -> None:
        # ``continues``: the assistant message this answer adds to (after a tool result).
        self.message_id = continues or message_id(request_id)
        self.ended = False
        self._filter = AttemptFilter()
        self._open: tuple[str, str] | None = None  # (part kind, part id)
        self._parts = 0
        self._tool_ids: dict[int, str] = {}

    def opening(self) -> list[Chunk]:
        return [{"type": "start", "messageId": self.message_id}, {"type": "start-step"}]

    def feed(self, event: SessionEvent) -> list[Chunk]:
        """The chunks ``event`` adds; after the request's last one, ``ended`` is true."""
        if self.ended:
            return []
        accepted = self._filter.accept(event)
        if isinstance(accepted, Diverged):
            return self.fail(
                RESTARTED,
                f"the answer was restarted ({accepted.reason}); resume the stream to get it",
            )
        chunks: list[Chunk] = []
        for item in accepted:
            chunks.extend(self._output(item))
        return chunks

    def fail(self, code: str, message: str) -> list[Chunk]:
        """End the message with an error (the parts open are closed first)."""
        self.ended = True
        return [*self._close(), {"type": "error", "errorText": f"{code}: {message}"}]

    def _output(self, event: SessionEvent) -> list[Chunk]:
        if isinstance(event, TokenEvent | RefusalEvent):
            return self._delta("text", event.text)
        if isinstance(event, ReasoningEvent):
            return self._delta("reasoning", event.text)
        if isinstance(event, ToolCallEvent):
            return self._tool_call(event)
        if isinstance(event, DoneEvent):
            return self._done(event)
        if isinstance(event, ErrorEvent):
            return self.fail(event.code, event.message)
        return []

    def _delta(self, kind: str, text: str) -> list[Chunk]:
        if not text:
            return []
        chunks: list[Chunk] = []
        if self._open is None or self._open[0] != kind:
            chunks.extend(self._close())
            self._parts += 1
            self._open = (kind, f"{kind}-{self._parts}")
            chunks.append({"type": f"{kind}-start", "id": self._open[1]})
        chunks.append({"type": f"{kind}-delta", "id": self._open[1], "delta": text})
        return chunks

    def _close(self) -> list[Chunk]:
        if self._open is None:
            return []
        kind, part_id = self._open
        self._open = None
        return [{"type": f"{kind}-end", "id": part_id}]

    def _tool_call(self, event: ToolCallEvent) -> list[Chunk]:
        chunks = self._close()
        call_id = self._tool_ids.get(event.index)
        if call_id is None:
            if event.id is None:  # a fragment before its call's header: nothing to attach to
                return chunks
            call_id = self._tool_ids[event.index] = event.id
            chunks.append(
                {"type": "tool-input-start", "toolCallId": call_id, "toolName": event.name or ""}
            )
        if event.arguments:
            chunks.append(
                {"type": "tool-input-delta", "toolCallId": call_id,
                 "inputTextDelta": event.arguments}
            )  # fmt: skip
        return chunks

    def _done(self, event: DoneEvent) -> list[Chunk]:
        self.ended = True
        chunks = self._close()
        if event.finish_reason == CANCELLED:
            return [*chunks, {"type": "finish-step"}, {"type": "abort"}]
        for tool in self._filter.sent_tools():
            if tool.id is not None and tool.index in self._tool_ids:
                chunks.append(_tool_input(tool.id, tool.name or "", tool.arguments))
        return [
            *chunks,
            {"type": "finish-step"},
            {"type": "finish", "finishReason": finish_reason(event.finish_reason)},
        ]


def _tool_input(call_id: str, name: str, arguments: str) -> Chunk:
    """The call's arguments parsed; as ``tool-input-error`` when they are not JSON."""
    try:
        parsed = json.loads(arguments or "{}")
    except (ValueError, RecursionError):
        return {
            "type": "tool-input-error", "toolCallId": call_id, "toolName": name,
            "input": arguments, "errorText": "the tool call's arguments are not valid JSON",
        }  # fmt: skip
    return {"type": "tool-input-available", "toolCallId": call_id, "toolName": name,
            "input": parsed}  # fmt: skip
