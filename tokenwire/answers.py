"""Folding session events into answers, exactly as a client must.

Per request: ``start`` or ``retry`` opens an attempt and discards ALL output of the attempt
before (a ``retry`` means "drop this request's partial output": text, tool-call fragments,
refusal, reasoning); ``token``, ``tool_call``, ``refusal`` and ``reasoning`` add to it;
``done``/``error`` ends it. Tool calls are assembled by ``index``: the first fragment of an
index names the call's ``id`` and ``name``, every fragment appends to its ``arguments``.
``done`` also carries the calls as the worker assembled them (``reported_tool_calls``), so a
verifier can compare the two. Used by tests, by the audit replay and the worker's request ledger,
and mirrored by the chat page's JavaScript.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.lifecycle import FinalMessage
from schemas.messages import ToolCall
from schemas.session_events import CANCELLED

_tool_calls_adapter: TypeAdapter[list[ToolCall]] = TypeAdapter(list[ToolCall])


@dataclass
class ToolCallDraft:
    """One tool call as its fragments assembled it (``id``/``name`` None: never named)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def as_tool_call(self) -> ToolCall | None:
        """The call as a message carries it; None when the fragments never made a valid one."""
        if self.id is None or self.name is None:
            return None
        try:
            return ToolCall.model_validate(
                {"id": self.id, "function": {"name": self.name, "arguments": self.arguments}}
            )
        except ValidationError:
            return None


@dataclass
class Answer:
    request_id: str
    attempt: int = 0
    text: str = ""
    # The text of each attempt a retry dropped (its other output is dropped without a trace).
    discarded: list[str] = field(default_factory=list)
    status: str = "streaming"  # streaming | done | error
    finish_reason: str | None = None
    error_code: str | None = None
    retries: int = 0
    # Tool calls of the current attempt by index, as the fragments assembled them.
    drafts: dict[int, ToolCallDraft] = field(default_factory=dict)
    refusal: str | None = None
    reasoning: str | None = None
    # ``done.tool_calls``: the calls as the worker assembled them (None until ``done``).
    reported_tool_calls: list[ToolCall] | None = None

    @property
    def finished(self) -> bool:
        return self.status != "streaming"

    @property
    def cancelled(self) -> bool:
        """Stopped through the cancel endpoint: ``done`` (so status "done") with "cancelled"."""
        return self.status == "done" and self.finish_reason == CANCELLED

    @property
    def tool_call_drafts(self) -> list[ToolCallDraft]:
        """Every tool call the fragments opened, in index order (complete or not)."""
        return [self.drafts[index] for index in sorted(self.drafts)]

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The assembled tool calls in index order; a call never named (not OpenAI's protocol)
        is left out here and kept in ``tool_call_drafts``."""
        calls = (draft.as_tool_call() for draft in self.tool_call_drafts)
        return [call for call in calls if call is not None]

    def final_message(self) -> FinalMessage:
        """The assistant message as a client assembled it from the stream."""
        return FinalMessage(
            content=self.text,
            tool_calls=self.tool_calls,
            refusal=self.refusal,
            reasoning=self.reasoning,
        )

    def _open_attempt(self, attempt: int, *, retry: bool) -> None:
        if retry:
            self.retries += 1
            if self.text:
                self.discarded.append(self.text)
        self.attempt, self.status = attempt, "streaming"
        self.text, self.drafts, self.refusal, self.reasoning = "", {}, None, None
        self.reported_tool_calls = None

    def _add_tool_call(self, event: Mapping[str, Any]) -> None:
        index = int(event["index"])
        draft = self.drafts.get(index)
        if draft is None:
            draft = self.drafts[index] = ToolCallDraft(index)
        # The first fragment names the call; a later one that names it again changes nothing.
        draft.id = draft.id if draft.id is not None else event.get("id")
        draft.name = draft.name if draft.name is not None else event.get("name")
        draft.arguments += str(event.get("arguments") or "")


def apply(answers: dict[str, Answer], event: Mapping[str, Any]) -> Answer:
    """Apply one event (as a JSON mapping) to the answers of a session."""
    request_id = str(event["request_id"])
    answer = answers.setdefault(request_id, Answer(request_id))
    kind = event["type"]
    if kind in ("start", "retry"):
        answer._open_attempt(int(event["attempt"]), retry=kind == "retry")
    elif kind == "token":
        answer.text += str(event["text"])
    elif kind == "tool_call":
        answer._add_tool_call(event)
    elif kind == "refusal":
        answer.refusal = (answer.refusal or "") + str(event["text"])
    elif kind == "reasoning":
        answer.reasoning = (answer.reasoning or "") + str(event["text"])
    elif kind == "done":
        answer.status, answer.finish_reason = "done", event.get("finish_reason")
        answer.reported_tool_calls = _tool_calls_adapter.validate_python(
            event.get("tool_calls") or []
        )
    elif kind == "error":
        answer.status, answer.error_code = "error", event.get("code")
    return answer


def fold(events: Iterable[Mapping[str, Any]]) -> dict[str, Answer]:
    answers: dict[str, Answer] = {}
    for event in events:
        apply(answers, event)
    return answers
