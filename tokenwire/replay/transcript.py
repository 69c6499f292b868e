"""A session's conversation rebuilt from the log: prompts, answers, attempts, timings, errors.

Answers are folded with ``tokenwire.answers.fold``, the rule every client applies, so a
transcript shows what the client was shown: a ``retry`` drops the partial text of the attempt
before it, and the transcript lists that text as discarded instead of merging it. When the
session topic is gone (deleted by the janitor, or past retention) the answer comes from the
``completed``/``failed`` record on the lifecycle topic, and the transcript says so; a record
written twice (re-sent after a worker crash, schemas/lifecycle.py) shows once: the first copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from schemas.session_events import (
    DoneEvent,
    ErrorEvent,
    RetryEvent,
    StartEvent,
    Timings,
    TokenEvent,
)
from tokenwire.answers import fold
from tokenwire.replay.audit_log import (
    DeadLetter,
    LoggedEvent,
    LoggedOutcome,
    LoggedRequest,
    read_dead_letters,
    read_outcomes,
    read_requests,
    read_session_log,
)
from tokenwire.replay.log_reader import WHOLE_LOG, LogReader, TimeRange, format_time
from tokenwire.replay.progress import Progress
from tokenwire.settings import Settings

Source = Literal["session_topic", "lifecycle", "none"]


@dataclass
class AttemptView:
    attempt: int
    opened_by: str  # start | retry
    reason: str | None
    text: str = ""
    ended_by: str | None = None  # done | error | None: cut short, superseded by the next one


@dataclass(frozen=True)
class Exchange:
    """One request and what the model sent back for it."""

    request_id: str
    session_id: str
    user_id: str
    model: str | None
    requested_at: float
    where: str
    messages: list[dict[str, str]]
    source: Source
    status: str  # done | error | streaming | unknown
    answer: str = ""
    discarded: list[str] = field(default_factory=list)
    attempts: list[AttemptView] = field(default_factory=list)
    retries: int = 0
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Transcript:
    session_id: str
    topic: str
    window: TimeRange
    exchanges: list[Exchange]
    dead_letters: list[DeadLetter]
    notes: list[str]


def exchange_from_events(request: LoggedRequest, events: list[LoggedEvent]) -> Exchange:
    """An exchange as the session topic tells it (``events``: this request's, in log order)."""
    answer = fold(e.event.model_dump() for e in events)[request.request_id]
    attempts: list[AttemptView] = []
    done: DoneEvent | None = None
    error: ErrorEvent | None = None
    for logged in events:
        event = logged.event
        if isinstance(event, StartEvent | RetryEvent):
            reason = event.reason if isinstance(event, RetryEvent) else None
            attempts.append(AttemptView(event.attempt, event.type, reason))
        elif not attempts:
            continue  # the attempt's opening event is gone (retention)
        elif isinstance(event, TokenEvent):
            attempts[-1].text += event.text
        else:
            attempts[-1].ended_by = event.type
            done = event if isinstance(event, DoneEvent) else done
            error = event if isinstance(event, ErrorEvent) else error
    fields = _request_fields(request)
    started = next((e.event for e in events if isinstance(e.event, StartEvent)), None)
    if fields["model"] is None and started is not None:
        fields["model"] = started.model
    return Exchange(
        **fields,
        source="session_topic",
        status=answer.status,
        answer=answer.text,
        discarded=list(answer.discarded),
        attempts=attempts,
        retries=answer.retries,
        finish_reason=answer.finish_reason,
        usage=done.usage.model_dump() if done else None,
        timings=done.timings.model_dump() if done else _timings_of_error(started, events, error),
        error=(
            {"code": error.code, "message": error.message, "retryable": error.retryable}
            if error
            else None
        ),
    )


def _timings_of_error(
    started: StartEvent | None, events: list[LoggedEvent], error: ErrorEvent | None
) -> dict[str, Any] | None:
    """An error event carries no timings: the same fields, from the events' own times."""
    if error is None or started is None:
        return None
    first_token_at = next(
        (e.event.received_at for e in events if isinstance(e.event, TokenEvent)), None
    )
    return Timings(
        accepted_at=started.accepted_at,
        first_token_at=first_token_at,
        finished_at=error.emitted_at,
        ttft_s=None if first_token_at is None else first_token_at - started.accepted_at,
        duration_s=error.emitted_at - started.accepted_at,
    ).model_dump()


def exchange_from_outcome(request: LoggedRequest, outcome: LoggedOutcome | None) -> Exchange:
    """An exchange from the lifecycle topic alone (its session events are gone)."""
    if outcome is None:
        return Exchange(**_request_fields(request), source="none", status="unknown")
    event = outcome.event
    if event.type == "completed":
        return Exchange(
            **_request_fields(request),
            source="lifecycle",
            status="done",
            answer=event.answer,
            retries=event.retries,
            finish_reason=event.finish_reason,
            usage=event.usage.model_dump(),
            timings=event.timings.model_dump(),
        )
    return Exchange(
        **_request_fields(request),
        source="lifecycle",
        status="error",
        retries=event.retries,
        timings=event.timings.model_dump(),
        error={"code": event.code, "message": event.message, "retryable": False},
    )


def _request_fields(request: LoggedRequest) -> dict[str, Any]:
    chat = request.request
    return {
        "request_id": request.request_id,
        "session_id": chat.session_id,
        "user_id": chat.user_id,
        "model": chat.model,
        "requested_at": request.where.timestamp,
        "where": str(request.where),
        "messages": [{"role": m.role, "content": m.content} for m in chat.messages],
    }


async def load_transcript(
    settings: Settings,
    session_id: str,
    *,
    request_id: str | None = None,
    window: TimeRange = WHOLE_LOG,
    progress: Progress | None = None,
) -> Transcript:
    sessions = {session_id}
    async with LogReader(settings.kafka_connection, progress=progress) as reader:
        requests = await read_requests(reader, settings.requests_topic, window, sessions)
        accepted = [r for r in requests.accepted if request_id in (None, r.request_id)]
        session_log = await read_session_log(
            reader, settings.session_topic_prefix, session_id, window.onward
        )
        notes: list[str] = []
        if not session_log.exists:
            notes.append(
                f"session topic {session_log.topic} no longer exists (deleted by the session "
                f"janitor or never created): answers come from {settings.events_topic}; "
                "discarded partial attempts are not recorded there"
            )
        events_of = {r.request_id: session_log.for_request(r.request_id) for r in accepted}
        cut = {rid for rid, events in events_of.items() if session_log.cut_by_retention(events)}
        outcomes: dict[str, LoggedOutcome] = {}
        if cut or not all(events_of.values()):
            for outcome in await read_outcomes(
                reader, settings.events_topic, window.onward, sessions
            ):
                outcomes.setdefault(outcome.event.request_id, outcome)
        letters = [
            d
            for d in await read_dead_letters(reader, settings.dead_letter_topic, window.onward)
            if d.key == session_id and d.source_topic == settings.requests_topic
        ]
    exchanges = []
    for request in accepted:
        events = events_of[request.request_id]
        if events and request.request_id not in cut:
            exchanges.append(exchange_from_events(request, events))
        else:
            exchanges.append(exchange_from_outcome(request, outcomes.get(request.request_id)))
    if session_log.exists and cut:
        notes.append(
            f"retention deleted the oldest events of {session_log.topic}: the answers of "
            f"{len(cut)} request(s) come from {settings.events_topic}"
        )
    known = {r.request_id for r in requests.accepted}
    strays = sorted({e.event.request_id for e in session_log.events} - known)
    if strays and request_id is None and not window.bounded:
        notes.append(f"events for requests not on {settings.requests_topic}: {', '.join(strays)}")
    return Transcript(
        session_id, session_log.topic, window, exchanges, [] if request_id else letters, notes
    )


# --- rendering --------------------------------------------------------------------------------


def render_text(transcript: Transcript) -> str:
    t = transcript
    lines = [
        f"session {t.session_id} · {len(t.exchanges)} request(s) · {t.window.describe()}",
    ]
    lines += [f"note: {note}" for note in t.notes]
    for x in t.exchanges:
        lines.append("")
        lines.append(
            f"── request {x.request_id} · user {x.user_id} · model {x.model or '(default)'} · "
            f"{format_time(x.requested_at)} · {x.where}"
        )
        for message in x.messages:
            lines.append(_block(f"  {message['role']}: ", message["content"]))
        lines.append(_block(f"  assistant [{_status(x)}]: ", x.answer or "(no answer)"))
        for attempt in x.attempts:
            if len(x.attempts) > 1 or attempt.ended_by is None:
                lines.append(_attempt_line(attempt, final=attempt is x.attempts[-1]))
        if x.error:
            lines.append(f"  error: {x.error['code']}: {x.error['message']}")
        if x.usage:
            u = x.usage
            lines.append(
                f"  usage: prompt {u['prompt_tokens']} · completion {u['completion_tokens']} · "
                f"total {u['total_tokens']}"
            )
        if x.timings:
            lines.append(f"  timings: {_timings(x.timings)}")
        if x.source != "session_topic":
            lines.append(f"  source: {x.source}")
    if t.dead_letters:
        lines.append("")
        lines.append(f"dead letters ({len(t.dead_letters)}):")
        lines += [f"  {d.source} · {d.reason}: {d.error}" for d in t.dead_letters]
    return "\n".join(lines) + "\n"


def render_jsonl(transcript: Transcript) -> Iterator[str]:
    """One JSON object per line: ``kind`` is ``exchange`` or ``dead_letter``."""
    for x in transcript.exchanges:
        yield json.dumps({"kind": "exchange", **asdict(x)}, ensure_ascii=False)
    for d in transcript.dead_letters:
        record = {"kind": "dead_letter", "session_id": transcript.session_id, **asdict(d)}
        record["where"] = str(d.where)
        yield json.dumps(record, ensure_ascii=False)


def _status(x: Exchange) -> str:
    if x.status == "done":
        return f"done, {x.finish_reason}"
    return x.status


def _attempt_line(attempt: AttemptView, *, final: bool) -> str:
    opened = attempt.opened_by + (f" ({attempt.reason})" if attempt.reason else "")
    if final and attempt.ended_by is not None:
        return f"  attempt {attempt.attempt} · {opened} · final, ended by {attempt.ended_by}"
    state = "DISCARDED" if not final else "unfinished"
    return _block(f"  attempt {attempt.attempt} · {opened} · {state}: ", attempt.text)


def _timings(timings: dict[str, Any]) -> str:
    parts = [f"accepted {format_time(timings['accepted_at'])}"]
    if timings.get("ttft_s") is not None:
        parts.append(f"ttft {timings['ttft_s']:.3f} s")
    parts.append(f"duration {timings['duration_s']:.3f} s")
    return " · ".join(parts)


def _block(prefix: str, text: str) -> str:
    return prefix + text.replace("\n", "\n" + " " * len(prefix))
