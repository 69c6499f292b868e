"""A session's conversation rebuilt from the log: prompts, answers, attempts, timings, errors.

Answers are folded with ``tokenwire.answers.fold``, the rule every client applies, so a
transcript shows what the client was shown: text, tool calls (name and arguments), a refusal and
reasoning; a ``retry`` drops the partial output of the attempt before it, and the transcript
lists that attempt as discarded instead of merging it. A request stopped through the cancel
endpoint is marked cancelled (its answer is what was generated until then). The session's events
are read in its layout (``session_logs``): its own topic, or its key's records in its partition
of the shared topic. When they are gone (the topic deleted by the janitor, or past retention)
the answer comes from the ``completed``/``failed`` record on the lifecycle topic (its ``message``
in version 2), and the transcript says so; a record written twice (re-sent after a worker crash,
schemas/lifecycle.py) shows once: the first copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from schemas.lifecycle import Completed
from schemas.messages import ToolCall
from schemas.session_events import (
    DoneEvent,
    ErrorEvent,
    RetryEvent,
    StartEvent,
    Timings,
    TokenEvent,
)
from tokenwire.answers import Answer, ToolCallDraft, apply, fold
from tokenwire.replay.audit_log import (
    DeadLetter,
    LoggedEvent,
    LoggedOutcome,
    LoggedRequest,
    read_dead_letters,
    read_outcomes,
    read_requests,
)
from tokenwire.replay.log_reader import WHOLE_LOG, LogReader, TimeRange, format_time
from tokenwire.replay.progress import Progress
from tokenwire.replay.session_logs import session_logs
from tokenwire.settings import Settings

# "session_topic": from the session's events, whichever the layout (the name is kept for readers
# of the JSONL export).
Source = Literal["session_topic", "lifecycle", "none"]


@dataclass
class AttemptView:
    attempt: int
    opened_by: str  # start | retry
    reason: str | None
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # as in ``Exchange``
    refusal: str | None = None
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
    messages: list[dict[str, Any]]  # as OpenAI takes them (ChatMessage.wire)
    source: Source
    status: str  # done | error | streaming | unknown
    answer: str = ""
    # OpenAI's shape, {"id", "type", "function": {"name", "arguments"}}, in index order.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    refusal: str | None = None
    reasoning: str | None = None
    cancelled: bool = False
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
    events_from: str  # where the session's events were read (a topic, or a shared partition)
    window: TimeRange
    exchanges: list[Exchange]
    dead_letters: list[DeadLetter]
    notes: list[str]


def exchange_from_events(request: LoggedRequest, events: list[LoggedEvent]) -> Exchange:
    """An exchange as the session's events tell it (``events``: this request's, in log order)."""
    answer = fold(e.event.model_dump() for e in events)[request.request_id]
    attempts: list[AttemptView] = []
    # Each attempt folded on its own, so a discarded one shows what it had streamed.
    folded: list[dict[str, Answer]] = []
    done: DoneEvent | None = None
    error: ErrorEvent | None = None
    for logged in events:
        event = logged.event
        if isinstance(event, StartEvent | RetryEvent):
            reason = event.reason if isinstance(event, RetryEvent) else None
            attempts.append(AttemptView(event.attempt, event.type, reason))
            folded.append({})
        elif not attempts:
            continue  # the attempt's opening event is gone (retention)
        elif isinstance(event, DoneEvent | ErrorEvent):
            attempts[-1].ended_by = event.type
            done = event if isinstance(event, DoneEvent) else done
            error = event if isinstance(event, ErrorEvent) else error
        apply(folded[-1], event.model_dump())
    for view, of_attempt in zip(attempts, folded, strict=True):
        shown = of_attempt[request.request_id]
        view.text, view.refusal = shown.text, shown.refusal
        view.tool_calls = _wire_calls(shown.tool_call_drafts)
    fields = _request_fields(request)
    started = next((e.event for e in events if isinstance(e.event, StartEvent)), None)
    if fields["model"] is None and started is not None:
        fields["model"] = started.model
    return Exchange(
        **fields,
        source="session_topic",
        status=answer.status,
        answer=answer.text,
        tool_calls=_wire_calls(answer.tool_call_drafts),
        refusal=answer.refusal,
        reasoning=answer.reasoning,
        cancelled=answer.cancelled,
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
    if isinstance(event, Completed):
        message = event.message
        return Exchange(
            **_request_fields(request),
            source="lifecycle",
            status="done",
            answer=event.answer,
            tool_calls=_dumped_calls(message.tool_calls) if message else [],
            refusal=message.refusal if message else None,
            reasoning=message.reasoning if message else None,
            cancelled=event.cancelled,
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
        "messages": [m.wire() for m in chat.messages],
    }


def _wire_calls(drafts: list[ToolCallDraft]) -> list[dict[str, Any]]:
    """Folded calls in OpenAI's shape (``id``/``name`` None: the fragments never named it)."""
    return [
        {"id": d.id, "type": "function", "function": {"name": d.name, "arguments": d.arguments}}
        for d in drafts
    ]


def _dumped_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [call.model_dump() for call in calls]


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
        session_log = await session_logs(reader, settings).read(session_id, window)
        notes: list[str] = []
        if not session_log.exists:
            notes.append(
                f"{session_log.gone}: answers come from {settings.events_topic}; discarded "
                "partial attempts are not recorded there"
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
            f"retention deleted the oldest events of {session_log.label}: the answers of "
            f"{len(cut)} request(s) come from {settings.events_topic}"
        )
    known = {r.request_id for r in requests.accepted}
    strays = sorted({e.event.request_id for e in session_log.events} - known)
    if strays and request_id is None and not window.bounded:
        notes.append(f"events for requests not on {settings.requests_topic}: {', '.join(strays)}")
    return Transcript(
        session_id, session_log.label, window, exchanges, [] if request_id else letters, notes
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
            lines += _message_lines(message)
        lines += _answer_lines(x)
        for attempt in x.attempts:
            if len(x.attempts) > 1 or attempt.ended_by is None:
                lines += _attempt_lines(attempt, final=attempt is x.attempts[-1])
        if x.error:
            lines.append(f"  error: {x.error['code']}: {x.error['message']}")
        if x.usage:
            u = x.usage
            lines.append(
                f"  usage: prompt {u['prompt_tokens']} · completion {u['completion_tokens']} · "
                f"total {u['total_tokens']}"
                + (" · estimated (the stream ended before the usage chunk)"
                   if u.get("estimated") else "")
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
    if x.cancelled:
        return "CANCELLED, partial"
    if x.status == "done":
        return f"done, {x.finish_reason}"
    return x.status


def _message_lines(message: dict[str, Any]) -> list[str]:
    """A request message: its text (other content parts named), tool calls, the call it answers."""
    role = message["role"]
    if message.get("tool_call_id"):
        role += f" (for {message['tool_call_id']})"
    lines = []
    text = _content_text(message.get("content"))
    if text or not (message.get("tool_calls") or message.get("refusal") is not None):
        lines.append(_block(f"  {role}: ", text))
    if message.get("refusal") is not None:
        lines.append(_block(f"  {role} refusal: ", message["refusal"]))
    lines += [_tool_call_line(f"  {role} ", call) for call in message.get("tool_calls") or []]
    return lines


def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    shown = []
    for part in content:
        if part["type"] == "text":
            shown.append(part["text"])
        elif part["type"] == "refusal":
            shown.append(f"[refusal: {part['refusal']}]")
        else:
            shown.append(f"[{part['type']}]")  # an image, audio or file: named, not shown
    return " ".join(shown)


def _answer_lines(x: Exchange) -> list[str]:
    has_other = bool(x.tool_calls) or x.refusal is not None
    lines = [
        _block(
            f"  assistant [{_status(x)}]: ",
            x.answer or ("(no text)" if has_other else "(no answer)"),
        )
    ]
    if x.reasoning is not None:
        lines.append(_block("  assistant reasoning: ", x.reasoning))
    if x.refusal is not None:
        lines.append(_block("  assistant refusal: ", x.refusal))
    lines += [_tool_call_line("  assistant ", call) for call in x.tool_calls]
    if x.cancelled:
        lines.append("  cancelled: stopped through the cancel endpoint; the answer is the part "
                     "generated before the stop")  # fmt: skip
    return lines


def _tool_call_line(prefix: str, call: dict[str, Any]) -> str:
    function = call["function"]
    name = function["name"] or "(unnamed)"
    return _block(
        f"{prefix}tool call {name} · id {call['id'] or '(none)'}: ", function["arguments"]
    )


def _attempt_lines(attempt: AttemptView, *, final: bool) -> list[str]:
    opened = attempt.opened_by + (f" ({attempt.reason})" if attempt.reason else "")
    if final and attempt.ended_by is not None:
        return [f"  attempt {attempt.attempt} · {opened} · final, ended by {attempt.ended_by}"]
    state = "DISCARDED" if not final else "unfinished"
    prefix = f"  attempt {attempt.attempt} · {opened} · {state}"
    other = bool(attempt.tool_calls) or attempt.refusal is not None
    lines = [_block(f"{prefix}: ", attempt.text)] if attempt.text or not other else []
    if attempt.refusal is not None:
        lines.append(_block(f"{prefix} refusal: ", attempt.refusal))
    lines += [_tool_call_line(f"{prefix} ", call) for call in attempt.tool_calls]
    return lines


def _timings(timings: dict[str, Any]) -> str:
    parts = [f"accepted {format_time(timings['accepted_at'])}"]
    if timings.get("ttft_s") is not None:
        parts.append(f"ttft {timings['ttft_s']:.3f} s")
    parts.append(f"duration {timings['duration_s']:.3f} s")
    return " · ".join(parts)


def _block(prefix: str, text: str) -> str:
    return prefix + text.replace("\n", "\n" + " " * len(prefix))
