"""What the topics say, decoded with the contracts: requests, session events, outcomes, DLQ.

Where a session's events are read from depends on the layout: ``session_logs`` reads them.

Requests are decoded by the worker's own ``decode_request``, so "accepted" and the request id a
direct producer's record gets (``p<partition>-o<offset>``) mean exactly what they mean live.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from agents.chat.request_intake import Rejection, decode_request
from schemas.dead_letter import (
    ERROR_HEADER,
    REASON_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
)
from schemas.lifecycle import Completed, Failed, parse_lifecycle_event
from schemas.requests import ChatRequest
from schemas.session_events import SessionEvent, parse_session_event
from tokenwire.replay.log_reader import (
    LogReader,
    Record,
    ReplayError,
    Span,
    TimeRange,
    Where,
    header,
    ordered,
    text_key,
)

log = logging.getLogger(__name__)

LOOKBACK_STEP_S = 3600.0


@dataclass(frozen=True)
class LoggedRequest:
    """A valid record of the requests topic: an accepted request (its id filled as the worker's)."""

    request: ChatRequest
    where: Where

    @property
    def request_id(self) -> str:
        return self.request.request_id or ""


@dataclass(frozen=True)
class RejectedRecord:
    """A record of the requests topic the worker dead-letters instead of answering."""

    key: str | None
    reason: str
    detail: str
    where: Where


@dataclass(frozen=True)
class RequestLog:
    accepted: list[LoggedRequest]
    rejected: list[RejectedRecord]
    spans: list[Span]

    def covers(self, partition: int, offset: int) -> bool:
        return any(
            s.partition.partition == partition and s.start <= offset < s.end for s in self.spans
        )


@dataclass(frozen=True)
class LoggedEvent:
    event: SessionEvent
    where: Where


@dataclass(frozen=True)
class BadRecord:
    where: Where
    error: str


@dataclass(frozen=True)
class SessionLog:
    """One session's events as read, wherever its layout keeps them (``session_logs``).

    ``label`` names the place in messages (its own topic, or its key in a shared partition);
    ``exists`` is False when that place is gone, and ``gone`` says how. ``trimmed``: retention
    deleted records where the read began, so the first of the session's records read may be the
    tail of a request whose beginning is gone.
    """

    session_id: str
    label: str
    exists: bool
    trimmed: bool
    events: list[LoggedEvent]
    bad: list[BadRecord]
    gone: str = ""

    @property
    def first_offset(self) -> int | None:
        """The offset of the session's first record read (event or undecodable)."""
        firsts = [logged[0].where.offset for logged in (self.events, self.bad) if logged]
        return min(firsts, default=None)

    def cut_by_retention(self, events: list[LoggedEvent]) -> bool:
        """Whether retention may have deleted the beginning of these (one request's) events.

        Retention deletes a prefix of the partition, and a session's requests follow each other:
        only the session's first request read can have lost its beginning, and not if that
        beginning, its ``start``, is there. Offsets are not compared to the log start, since a
        shared partition interleaves other sessions' records.
        """
        if not self.exists:
            return True
        if not self.trimmed:
            return False
        if not events:
            return True
        first = events[0]
        return first.where.offset == self.first_offset and not _opens_request(first.event)

    def for_request(self, request_id: str) -> list[LoggedEvent]:
        return [e for e in self.events if e.event.request_id == request_id]


def _opens_request(event: SessionEvent) -> bool:
    return event.type == "start" and event.attempt == 1 and event.seq == 0


def decode_session_records(records: Iterable[Record]) -> tuple[list[LoggedEvent], list[BadRecord]]:
    """Session events in the order given, and the records that are none."""
    events: list[LoggedEvent] = []
    bad: list[BadRecord] = []
    for record in records:
        try:
            events.append(LoggedEvent(parse_session_event(record.value or b""), Where.of(record)))
        except ValidationError as exc:
            bad.append(BadRecord(Where.of(record), _first_error(exc)))
    return events, bad


@dataclass(frozen=True)
class LoggedOutcome:
    """A ``completed`` or ``failed`` record of the lifecycle topic."""

    event: Completed | Failed
    where: Where


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    error: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    key: str | None
    size: int
    where: Where

    @property
    def source(self) -> str:
        return f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"


async def read_requests(
    reader: LogReader, topic: str, window: TimeRange, sessions: set[str] | None
) -> RequestLog:
    """Decode exactly as the worker does; ``sessions`` keeps only those sessions' records."""
    if not reader.exists(topic):
        raise ReplayError(f"the requests topic {topic} does not exist")
    accepted: list[LoggedRequest] = []
    rejected: list[RejectedRecord] = []
    spans = await reader.spans(topic, window)
    async for batch in reader.batches(topic, window):
        for record in batch:
            decoded = decode_request(record.value, partition=record.partition, offset=record.offset)
            if isinstance(decoded, Rejection):
                key = text_key(record)
                if sessions is None or key in sessions:
                    rejected.append(
                        RejectedRecord(key, decoded.reason, decoded.detail, Where.of(record))
                    )
            elif sessions is None or decoded.session_id in sessions:
                accepted.append(LoggedRequest(decoded, Where.of(record)))
    accepted.sort(key=lambda r: (r.where.timestamp_ms, r.where.partition, r.where.offset))
    return RequestLog(accepted, rejected, spans)


async def read_outcomes(
    reader: LogReader, topic: str, window: TimeRange, sessions: set[str] | None
) -> list[LoggedOutcome]:
    """The ``completed``/``failed`` records of the lifecycle topic (other types are skipped)."""
    outcomes: list[LoggedOutcome] = []
    async for batch in reader.batches(topic, window):
        for record in batch:
            try:
                event = parse_lifecycle_event(record.value or b"")
            except ValidationError:
                log.debug("skipping undecodable lifecycle record at=%s", Where.of(record))
                continue
            if isinstance(event, Completed | Failed) and (
                sessions is None or event.session_id in sessions
            ):
                outcomes.append(LoggedOutcome(event, Where.of(record)))
    outcomes.sort(key=lambda o: (o.where.timestamp_ms, o.where.partition, o.where.offset))
    return outcomes


async def read_dead_letters(reader: LogReader, topic: str, window: TimeRange) -> list[DeadLetter]:
    letters = []
    for record in ordered(await reader.read(topic, window)):
        partition = header(record, SOURCE_PARTITION_HEADER)
        offset = header(record, SOURCE_OFFSET_HEADER)
        letters.append(
            DeadLetter(
                reason=header(record, REASON_HEADER) or "(no reason header)",
                error=header(record, ERROR_HEADER) or "",
                source_topic=header(record, SOURCE_TOPIC_HEADER),
                source_partition=_int_or_none(partition),
                source_offset=_int_or_none(offset),
                key=text_key(record),
                size=len(record.value or b""),
                where=Where.of(record),
            )
        )
    return letters


async def find_request_ids(
    reader: LogReader, topic: str, wanted: set[str], window: TimeRange
) -> set[str]:
    """Which of ``wanted`` are on the requests topic outside ``window``.

    Looks after ``until`` first, then before ``since`` in doubling steps back, and stops as soon
    as every id is found: a request in flight when the window opened is found in the first step.
    """
    found: set[str] = set()

    async def scan(part: TimeRange) -> None:
        async with contextlib.aclosing(reader.batches(topic, part)) as batches:
            async for batch in batches:
                for record in batch:
                    decoded = decode_request(
                        record.value, partition=record.partition, offset=record.offset
                    )
                    if not isinstance(decoded, Rejection) and decoded.request_id in wanted:
                        found.add(decoded.request_id)
                if found >= wanted:
                    return

    if window.until is not None:
        await scan(TimeRange(window.until, None))
    if window.since is not None:
        high, step = window.since, LOOKBACK_STEP_S
        while not found >= wanted:
            low = high - step
            await scan(TimeRange(low, high))
            if all(s.start <= s.first for s in await reader.spans(topic, TimeRange(low, high))):
                break
            high, step = low, step * 2
    return found & wanted


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc)
    where = ".".join(str(loc) for loc in errors[0]["loc"]) or "(record)"
    return f"{where}: {errors[0]['msg']}"
