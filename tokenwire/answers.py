"""Folding session events into answers, exactly as a client must.

Per request: ``start`` or ``retry`` opens an attempt and discards the text of the attempt before
(a ``retry`` means "drop this request's partial text"); ``token`` appends; ``done``/``error`` ends
it. Used by tests, by the audit replay and mirrored by the chat page's JavaScript.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    request_id: str
    attempt: int = 0
    text: str = ""
    discarded: list[str] = field(default_factory=list)
    status: str = "streaming"  # streaming | done | error
    finish_reason: str | None = None
    error_code: str | None = None
    retries: int = 0

    @property
    def finished(self) -> bool:
        return self.status != "streaming"


def apply(answers: dict[str, Answer], event: Mapping[str, Any]) -> Answer:
    """Apply one event (as a JSON mapping) to the answers of a session."""
    request_id = str(event["request_id"])
    answer = answers.setdefault(request_id, Answer(request_id))
    kind = event["type"]
    if kind in ("start", "retry"):
        if kind == "retry":
            answer.retries += 1
            if answer.text:
                answer.discarded.append(answer.text)
        answer.attempt, answer.text, answer.status = int(event["attempt"]), "", "streaming"
    elif kind == "token":
        answer.text += str(event["text"])
    elif kind == "done":
        answer.status, answer.finish_reason = "done", event.get("finish_reason")
    elif kind == "error":
        answer.status, answer.error_code = "error", event.get("code")
    return answer


def fold(events: Iterable[Mapping[str, Any]]) -> dict[str, Answer]:
    answers: dict[str, Answer] = {}
    for event in events:
        apply(answers, event)
    return answers
