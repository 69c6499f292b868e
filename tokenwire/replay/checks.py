"""The integrity checks of ``replay verify``: pure functions over what the log says.

In scope are the requests accepted on the requests topic (decoded as the worker decodes them)
for the given sessions and/or time range. Errors (any one fails the run):

- ``terminal``: a request has no terminal event, more than one, or events after it;
- ``attempt``: attempts go backwards, or the final attempt does not open with start/retry;
- ``seq``: the final attempt's ``seq`` is not exactly 0, 1, 2, ... in log order;
- ``unknown_request``: events of a session for a request not on the requests topic;
- ``wrong_session``: an event in another session's stream (on its topic, or keyed by it in the
  shared topic); ``bad_record``: undecodable event;
- ``misplaced`` (shared layout): a record of the shared topic its session's readers never see:
  no key, or in another partition than its key's;
- ``lifecycle``: no ``completed``/``failed`` record on the lifecycle topic, both a ``completed``
  and a ``failed`` one, copies of one that disagree, or one that contradicts the session's
  events (other status, other answer text; for a version-2 record, a ``message`` whose content,
  tool calls or refusal differ from what the stream folds to);
- ``tool_calls``: ``done.tool_calls`` (assembled by the worker) differ from the request's
  ``tool_call`` fragments;
- ``duplicate_request``: one request id accepted more than once;
- ``dead_letter``: a record the worker rejects that is not on the dead-letter topic.

Requests whose events are gone (the session topic deleted by the janitor; retention, in either
layout) are checked against the lifecycle topic only, and the report says so. Dead letters in
scope are summarised, not counted as errors. Lifecycle records are counted once per
``(type, request_id)``: a worker re-sends a request's record when it cannot know whether a crash
cut it off (schemas/lifecycle.py), so identical copies are a note (``lifecycle_copies``), not an
error.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from schemas.lifecycle import Completed
from schemas.messages import ToolCall
from schemas.session_events import TERMINAL_TYPES
from tokenwire.answers import Answer, fold
from tokenwire.replay.audit_log import (
    DeadLetter,
    LoggedEvent,
    LoggedOutcome,
    LoggedRequest,
    RequestLog,
    SessionLog,
)
from tokenwire.replay.session_logs import Misplaced
from tokenwire.session_log import partition_of
from tokenwire.settings import Settings

Severity = Literal["error", "note"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str
    message: str
    session_id: str | None = None
    request_id: str | None = None

    def __str__(self) -> str:
        subject = " ".join(
            part
            for part in (
                f"session {self.session_id}" if self.session_id else "",
                f"request {self.request_id}" if self.request_id else "",
            )
            if part
        )
        return f"[{self.check}] {subject + ': ' if subject else ''}{self.message}"


def describe(logged: LoggedEvent) -> str:
    e = logged.event
    return f"{e.type} (attempt {e.attempt}, seq {e.seq}) at {logged.where}"


def check_events(request_id: str, session_id: str, events: list[LoggedEvent]) -> list[Finding]:
    """One request's events (log order): one terminal, attempts forward, final seq gap-free."""

    def error(check: str, message: str) -> Finding:
        return Finding("error", check, message, session_id, request_id)

    terminals = [e for e in events if e.event.type in TERMINAL_TYPES]
    if not terminals:
        last = f", the last is {describe(events[-1])}" if events else ""
        return [error("terminal", f"no terminal event ({len(events)} event(s){last})")]
    findings = []
    if len(terminals) > 1:
        listed = "; ".join(describe(t) for t in terminals)
        findings.append(error("terminal", f"{len(terminals)} terminal events: {listed}"))
    after = [
        e for e in events[events.index(terminals[0]) + 1 :] if e.event.type not in TERMINAL_TYPES
    ]
    if after:
        findings.append(
            error("terminal", f"{len(after)} event(s) after the terminal: {describe(after[0])}")
        )
    highest = 0
    for logged in events:
        if logged.event.attempt < highest:
            findings.append(error("attempt", f"{describe(logged)} after attempt {highest} began"))
        highest = max(highest, logged.event.attempt)
    final = [e for e in events if e.event.attempt == highest]
    opener = "start" if highest == 1 else "retry"
    if final[0].event.type != opener:
        findings.append(
            error("attempt", f"attempt {highest} opens with {describe(final[0])}, not {opener}")
        )
    seqs = [e.event.seq for e in final]
    if seqs != list(range(len(seqs))):
        findings.append(error("seq", f"attempt {highest}: {_seq_problem(seqs)}"))
    return findings


def _seq_problem(seqs: list[int]) -> str:
    parts = []
    missing = sorted(set(range(max(seqs) + 1)) - set(seqs))
    duplicated = sorted(s for s, n in Counter(seqs).items() if n > 1)
    if missing:
        parts.append(f"missing seq {_short(missing)}")
    if duplicated:
        parts.append(f"duplicated seq {_short(duplicated)}")
    if not parts or sorted(seqs) != seqs:
        parts.append("out of order")
    return f"seq not gap-free ({', '.join(parts)}; {len(seqs)} event(s))"


def _short(values: list[int]) -> str:
    return ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def check_outcomes(
    request_id: str,
    session_id: str,
    events: list[LoggedEvent] | None,
    outcomes: list[LoggedOutcome],
    events_topic: str,
) -> list[Finding]:
    """The lifecycle record against the session's events (``events=None``: they are gone)."""

    def error(check: str, message: str) -> Finding:
        return Finding("error", check, message, session_id, request_id)

    terminals = [e for e in events or [] if e.event.type in TERMINAL_TYPES]
    if not outcomes:
        if events is None:
            return [error("terminal", f"session events gone and nothing on {events_topic}")]
        if terminals:  # without a terminal the request is already reported unfinished
            return [error("lifecycle", f"no completed/failed record on {events_topic}")]
        return []
    if len({o.event.type for o in outcomes}) > 1:
        listed = "; ".join(f"{o.event.type} at {o.where}" for o in outcomes)
        return [error("lifecycle", f"{len(outcomes)} outcome records: {listed}")]
    outcome = outcomes[0]
    differing = [o for o in outcomes[1:] if _content(o) != _content(outcome)]
    if differing:
        listed = "; ".join(str(o.where) for o in [outcome, *differing])
        return [
            error(
                "lifecycle",
                f"{len(differing) + 1} differing copies of the {outcome.event.type} record: "
                f"{listed}",
            )
        ]
    if events is None or len(terminals) != 1:
        return []
    expected = "completed" if terminals[0].event.type == "done" else "failed"
    if outcome.event.type != expected:
        return [
            error(
                "lifecycle",
                f"{outcome.event.type} at {outcome.where} but the session's events end with "
                f"{describe(terminals[0])}",
            )
        ]
    if not isinstance(outcome.event, Completed):
        return []
    answer = fold(e.event.model_dump() for e in events)[request_id]
    return [
        error("lifecycle", f"{subject} at {outcome.where} {difference}")
        for subject, difference in _message_problems(outcome.event, answer)
    ]


def _message_problems(completed: Completed, answer: Answer) -> list[tuple[str, str]]:
    """How the ``completed`` record differs from the stream as a client folded it.

    Version 1 records only have ``answer`` (the text); version 2 ones also have ``message``,
    whose content, tool calls and refusal must be what the stream carried.
    """
    problems = []
    if completed.answer != answer.text:
        problems.append(("the answer", _text_difference(completed.answer, answer.text)))
    message = completed.message
    if message is None:
        return problems
    if message.content != answer.text:
        problems.append(("message.content", _text_difference(message.content, answer.text)))
    recorded, streamed = _fields(message.tool_calls), _streamed_fields(answer)
    if recorded != streamed:
        problems.append(("message.tool_calls", _calls_difference(recorded, streamed)))
    if message.refusal != answer.refusal:
        difference = _text_difference(message.refusal, answer.refusal, "refusal")
        problems.append(("message.refusal", difference))
    return problems


def _text_difference(recorded: str | None, streamed: str | None, what: str = "text") -> str:
    if recorded is None or streamed is None:
        return f"is {_none_or_size(recorded)} but the streamed {what} is {_none_or_size(streamed)}"
    at = _first_difference(streamed, recorded)
    return (
        f"differs from the streamed {what} at character {at} "
        f"({len(recorded)} vs {len(streamed)} characters)"
    )


def _none_or_size(text: str | None) -> str:
    return "absent" if text is None else f"{len(text)} characters"


# (id, name, arguments) of a tool call: a fragment stream may leave id and name unset.
CallFields = tuple[str | None, str | None, str]


def _fields(calls: list[ToolCall]) -> list[CallFields]:
    return [(c.id, c.function.name, c.function.arguments) for c in calls]


def _streamed_fields(answer: Answer) -> list[CallFields]:
    return [(d.id, d.name, d.arguments) for d in answer.tool_call_drafts]


def _describe_call(index: int, call: CallFields) -> str:
    return f"call {index} ({call[1]}, id {call[0]})"


def _calls_difference(recorded: list[CallFields], streamed: list[CallFields]) -> str:
    """The first tool call that differs, named by its index in the message."""
    for index, (mine, theirs) in enumerate(zip(recorded, streamed, strict=False)):
        if mine[:2] != theirs[:2]:
            return (
                f"differ from the streamed ones: {_describe_call(index, mine)} vs "
                f"{_describe_call(index, theirs)}"
            )
        if mine[2] != theirs[2]:
            at = _first_difference(theirs[2], mine[2])
            return (
                f"differ from the streamed ones: {_describe_call(index, mine)} arguments "
                f"differ at character {at} ({len(mine[2])} vs {len(theirs[2])} characters)"
            )
    return (
        f"hold {len(recorded)} call(s) but the session's tool_call events assemble {len(streamed)}"
    )


def check_reported_tool_calls(
    request_id: str, session_id: str, events: list[LoggedEvent]
) -> list[Finding]:
    """``done.tool_calls`` (assembled by the worker) against the fragments before it."""
    done = next((e for e in events if e.event.type == "done"), None)
    if done is None:
        return []
    answer = fold(e.event.model_dump() for e in events[: events.index(done) + 1])[request_id]
    reported, streamed = _fields(answer.reported_tool_calls or []), _streamed_fields(answer)
    if reported == streamed:
        return []
    return [
        Finding(
            "error",
            "tool_calls",
            f"the tool calls of {describe(done)} {_calls_difference(reported, streamed)}",
            session_id,
            request_id,
        )
    ]


def _content(outcome: LoggedOutcome) -> tuple[object, ...]:
    """What a copy sent again must repeat: the outcome, not the moment it was logged."""
    e = outcome.event
    if isinstance(e, Completed):
        return (e.type, e.attempt, e.answer, e.finish_reason, e.usage, e.message)
    return (e.type, e.attempt, e.code, e.message)


def check_lifecycle_copies(
    outcomes_of: Mapping[str, list[LoggedOutcome]], request_ids: set[str]
) -> list[Finding]:
    """A note counting the outcome records of in-scope requests that are on the log twice."""
    extra = sum(
        len(outcomes) - len({o.event.type for o in outcomes})
        for request_id, outcomes in outcomes_of.items()
        if request_id in request_ids
    )
    if not extra:
        return []
    return [
        Finding(
            "note",
            "lifecycle_copies",
            f"{extra} completed/failed record(s) were written again (a worker re-sends the "
            "record of a request it finds finished after a restart); each request counted once",
        )
    ]


def check_duplicates(accepted: list[LoggedRequest]) -> list[Finding]:
    copies: dict[str, list[LoggedRequest]] = defaultdict(list)
    for request in accepted:
        copies[request.request_id].append(request)
    return [
        Finding(
            "error",
            "duplicate_request",
            f"accepted {len(same)} times: {', '.join(str(r.where) for r in same)}",
            same[0].request.session_id,
            request_id,
        )
        for request_id, same in copies.items()
        if len(same) > 1
    ]


def check_session(
    settings: Settings,
    log: SessionLog,
    requests: list[LoggedRequest],
    outcomes_of: Mapping[str, list[LoggedOutcome]],
) -> list[Finding]:
    """The requests of one session (one per id) against its events, or the lifecycle topic."""
    findings: list[Finding] = []
    session, fallback = log.session_id, 0
    for request in requests:
        request_id = request.request_id
        events = log.for_request(request_id)
        mine = outcomes_of.get(request_id, [])
        if log.cut_by_retention(events):
            fallback += 1
            findings += check_outcomes(request_id, session, None, mine, settings.events_topic)
        elif events:
            findings += check_events(request_id, session, events)
            findings += check_reported_tool_calls(request_id, session, events)
            findings += check_outcomes(request_id, session, events, mine, settings.events_topic)
        else:
            message = f"no events on {log.label}"
            if mine:
                message += f" (yet {mine[0].event.type} at {mine[0].where})"
            findings.append(Finding("error", "terminal", message, session, request_id))
    if fallback:
        state = "is truncated by retention" if log.exists else "is gone"
        findings.append(
            Finding(
                "note",
                "fallback",
                f"{log.label} {state}: {fallback} request(s) checked against "
                f"{settings.events_topic} only (one completed/failed each; no seq or attempt "
                "checks)",
                session,
            )
        )
    findings += [
        Finding("error", "bad_record", f"undecodable event at {bad.where}: {bad.error}", session)
        for bad in log.bad
    ]
    return findings


@dataclass(frozen=True)
class Strays:
    """A session's events for a request that is not in scope (yet): kept as a summary."""

    session_id: str
    count: int
    first: str


def check_placement(
    log: SessionLog, session_of: Mapping[str, str]
) -> tuple[list[Finding], dict[str, Strays]]:
    """Events in the wrong session's stream, and the strays (requests ``session_of`` lacks)."""
    findings: list[Finding] = []
    strays: dict[str, Strays] = {}
    session = log.session_id
    by_request: dict[str, list[LoggedEvent]] = defaultdict(list)
    for logged in log.events:
        by_request[logged.event.request_id].append(logged)
    for request_id, events in by_request.items():
        owners = {e.event.session_id for e in events} | {session_of.get(request_id, session)}
        if owners != {session}:
            findings.append(
                Finding(
                    "error",
                    "wrong_session",
                    f"{len(events)} event(s) of session(s) {sorted(owners - {session})} "
                    f"on {log.label}, first {describe(events[0])}",
                    session,
                    request_id,
                )
            )
        if request_id not in session_of:
            strays[request_id] = Strays(session, len(events), describe(events[0]))
    return findings, strays


def check_misplaced(settings: Settings, misplaced: list[Misplaced]) -> list[Finding]:
    """Records of the shared topic that no reader of their session finds."""
    findings = []
    for m in misplaced:
        if m.key is None:
            why = "without a key"
        else:
            home = partition_of(m.key, settings.requests_partitions)
            why = f"keyed {m.key!r} outside its partition {home}"
        named = "undecodable" if m.session_id is None else f"of session {m.session_id}"
        findings.append(
            Finding(
                "error",
                "misplaced",
                f"{m.count} record(s) {named} {why} in {settings.sessions_topic}, first at "
                f"{m.first}: no reader of the session sees them",
                m.session_id,
            )
        )
    return findings


def check_strays(
    settings: Settings, strays: Mapping[str, Strays], outside: set[str]
) -> list[Finding]:
    """Strays are errors unless their request is on the requests topic outside the time range."""
    findings = [
        Finding(
            "error",
            "unknown_request",
            f"{s.count} event(s) for a request not on {settings.requests_topic}, first {s.first}",
            s.session_id,
            request_id,
        )
        for request_id, s in strays.items()
        if request_id not in outside
    ]
    skipped = [s for request_id, s in strays.items() if request_id in outside]
    if skipped:
        findings.append(
            Finding(
                "note",
                "out_of_range",
                f"{sum(s.count for s in skipped)} event(s) of {len(skipped)} request(s) accepted "
                "outside the time range were not checked",
            )
        )
    return findings


def check_dead_letters(
    settings: Settings,
    requests: RequestLog,
    letters: list[DeadLetter],
    sessions: set[str] | None,
) -> tuple[list[DeadLetter], list[Finding]]:
    in_scope = [
        d
        for d in letters
        if d.source_topic == settings.requests_topic
        and d.source_partition is not None
        and d.source_offset is not None
        and requests.covers(d.source_partition, d.source_offset)
        and (sessions is None or d.key in sessions)
    ]
    by_source = Counter((d.source_partition, d.source_offset) for d in in_scope)
    findings = []
    for rejected in requests.rejected:
        copies = by_source[(rejected.where.partition, rejected.where.offset)]
        if copies == 0:
            findings.append(
                Finding(
                    "error",
                    "dead_letter",
                    f"{rejected.where} is rejected ({rejected.reason}: {rejected.detail}) "
                    f"but is not on {settings.dead_letter_topic}",
                    rejected.key,
                )
            )
        elif copies > 1:
            findings.append(
                Finding(
                    "note",
                    "dead_letter",
                    f"{rejected.where} was dead-lettered {copies} times",
                    rejected.key,
                )
            )
    return in_scope, findings
